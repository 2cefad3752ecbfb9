"""Static catalog of the simulated fleet: agents, flows, texts, guardrails, undo routes, injections.

Pure data, no behaviour: `flightrec.demo.fleet` draws from these tables with a seeded RNG. The routes
below are the contract with the demo system of record (`flightrec records`, at `records_url`).
With `records_url` set, an `auto` action is performed by the POST listed below, and its
undo descriptor is built from the answer (the real refund or credit id, the real previous value).

An undo descriptor names the registered system `records` (`flightrec.undo.system`) and an
operation on it: an http undo is `POST <path>` with the args as JSON body, a handler undo is run
by the rollback executor's registered handler, which calls the ticket route with the previous
value. Where the server finds that system is its own registry (`records_url` in its settings),
never the span. Each performed action also says which fields it changed
(`flightrec.action.fields`, `type:id#field`; none when the service answered "already") and how
to read its undo back (`flightrec.undo.check`: a GET path and the values it should then show).

Per action: how it is performed, then its undo (http paths on the system `records`):

- `refund.issue`: `POST /refunds {order_id|invoice_id, amount, currency}`;
  http `/refunds/{refund_id}/undo` `{refund_id, order_id|invoice_id, amount, currency}`
- `credit.apply`: `POST /credits {account_id, amount, currency}`;
  http `/credits/{credit_id}/undo` `{credit_id, account_id, amount, currency}`
- `plan.change`: `POST /accounts/{id}/plan {plan}`;
  http `/accounts/{id}/plan/undo` `{plan: previous, expected_plan: new}`
- `order.update`: `POST /orders/{id} {field, value}`;
  http `/orders/{id}/undo` `{field, value: previous, expected_value: new}`
- `ticket.assign`: `POST /tickets/{id}/assignee {assignee}`;
  handler `helpdesk.reassign` `{ticket_id, assignee, previous_assignee}`
- `ticket.status`: `POST /tickets/{id}/status {status}`;
  handler `helpdesk.set_status` `{ticket_id, status, previous_status}`
- `email.send`: not performed; irreversible (no undo descriptor)
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_RECORDS_URL = "http://127.0.0.1:4400"
RECORDS_SYSTEM = "records"
DEFAULT_GRPC_ENDPOINT = "http://127.0.0.1:4317"
DEFAULT_API_URL = "http://127.0.0.1:4318"
WORKFLOW_SPACING_S = 30
ENVIRONMENT = "production"
SCOPE_NAME = "flightrec.fleet"
SCOPE_VERSION = "1.0.0"


@dataclass(frozen=True, slots=True)
class Behaviour:
    """What an agent runs and how reliably: model, prompt and failure rates."""

    model: str
    response_model: str
    prompt_version: str
    error_rate: float
    override_rate: float
    guardrail_weights: tuple[float, float, float]


@dataclass(frozen=True, slots=True)
class AgentProfile:
    """One agent of the fleet: identity, flow mix and baseline behaviour."""

    name: str
    version: str
    provider: str
    weight: float
    flows: tuple[tuple[str, float], ...]
    actors: tuple[str, ...]
    behaviour: Behaviour


AGENTS: tuple[AgentProfile, ...] = (
    AgentProfile(
        name="support-agent",
        version="2.3.1",
        provider="openai",
        weight=0.45,
        flows=(("triage_ticket", 0.35), ("reply_customer", 0.35), ("issue_refund", 0.30)),
        actors=("maria.lopez", "tom.becker", "aiko.tanaka"),
        behaviour=Behaviour("gpt-4o", "gpt-4o-2024-08-06", "support-v12", 0.03, 0.05, (0.90, 0.08, 0.02)),
    ),
    AgentProfile(
        name="ops-agent",
        version="1.8.0",
        provider="openai",
        weight=0.30,
        flows=(("change_plan", 0.30), ("route_ticket", 0.30), ("update_order", 0.20), ("route_ticket_queue", 0.20)),
        actors=("j.okafor", "lena.schmidt"),
        behaviour=Behaviour("gpt-4.1-mini", "gpt-4.1-mini-2025-04-14", "ops-v7", 0.02, 0.04, (0.92, 0.06, 0.02)),
    ),
    AgentProfile(
        name="finance-agent",
        version="3.0.2",
        provider="anthropic",
        weight=0.25,
        flows=(("reconcile_invoice", 0.40), ("apply_credit", 0.35), ("refund_invoice", 0.25)),
        actors=("priya.nair", "sam.chen"),
        behaviour=Behaviour(
            "claude-sonnet-4-5", "claude-sonnet-4-5-20250929", "finance-v4", 0.02, 0.04, (0.90, 0.08, 0.02)
        ),
    ),
)

REGRESSION_AGENT = "support-agent"
REGRESSED_BEHAVIOUR = Behaviour(
    "gpt-4o-mini-2026", "gpt-4o-mini-2026-01-15", "support-v13", 0.25, 0.35, (0.65, 0.25, 0.10)
)

# The regressed model is the demo's own invention, so no price package knows it: the demo server
# prices it with an override (USD per million tokens), as an operator would a private model.
DEMO_PRICES: dict[str, dict[str, float]] = {"gpt-4o-mini-2026": {"input_per_mtok": 0.15, "output_per_mtok": 0.6}}

# Labeled injections (`FleetConfig.inject`): the one agent each kind hits, and how hard.
INJECTION_AGENTS: dict[str, str] = {
    "version": REGRESSION_AGENT,
    "loop": "ops-agent",
    "cost": "finance-agent",
    "drift": "ops-agent",
    "outlier": "support-agent",
}
LOOP_SHARE = 0.30  # of the agent's workflows from regression_at on
LOOP_REPEATS = (8, 14)  # extra identical requests before the real call: 9-15 identical calls in all
COST_TOKEN_FACTOR = 8
DRIFT_SLOWDOWN = (1.0, 3.0)  # span durations, linear from regression_at to the last workflow
DRIFT_ERROR_RATE = 0.20  # the error rate reached at the last workflow (from the agent's own rate)
OUTLIER_TRACES = (5, 10)
OUTLIER_TOOL_CALLS = (26, 34)
OUTLIER_CONTEXT_GROWTH = (200, 600)  # prompt tokens each burst answer adds
OUTLIER_TOOL_MS = (10_000, 50_000)
OUTLIER_RETRY_P = 0.2
OUTLIER_BLOCKS = (3, 5)
OUTLIER_TOOLS = (
    "search_orders", "list_invoices", "get_refund_history", "get_audit_log", "list_customers",
    "export_ledger", "get_contract", "get_sla", "list_tickets", "get_payments_report",
    "get_chargebacks", "get_fraud_score", "get_shipping_history", "list_accounts", "get_usage_report",
    "get_discount_rules", "get_tax_rates", "get_exchange_rates", "search_emails", "get_call_notes",
    "get_crm_notes", "list_subscriptions", "get_feature_flags", "get_release_notes", "get_status_page",
    "list_incidents", "get_oncall", "search_chat_history", "get_policy_doc", "list_refunds",
    "get_credit_balance", "list_plan_changes", "get_risk_flags", "export_customer_data",
)

BATCH_FLOWS = frozenset({"route_ticket_queue"})
IRREVERSIBLE_ACTIONS = frozenset({"email.send"})

ACTION_SYSTEMS: dict[str, str] = {
    "refund.issue": "billing",
    "credit.apply": "billing",
    "plan.change": "billing",
    "order.update": "crm",
    "ticket.assign": "helpdesk",
    "ticket.status": "helpdesk",
    "email.send": "helpdesk",
}

HTTP_UNDO_PATHS: dict[str, str] = {
    "refund.issue": "/refunds/{id}/undo",
    "credit.apply": "/credits/{id}/undo",
    "plan.change": "/accounts/{id}/plan/undo",
    "order.update": "/orders/{id}/undo",
}

HANDLER_UNDO: dict[str, str] = {
    "ticket.assign": "helpdesk.reassign",
    "ticket.status": "helpdesk.set_status",
}

# What the registry lets undo do on the demo system of record: these POSTs, these GETs for checks.
RECORDS_UNDO_PATHS: tuple[str, ...] = (
    "/refunds/{id}/undo", "/credits/{id}/undo", "/accounts/{id}/plan/undo", "/orders/{id}/undo",
    "/tickets/{id}/status", "/tickets/{id}/assignee",
)
RECORDS_READ_PATHS: tuple[str, ...] = (
    "/refunds/{id}", "/credits/{id}", "/accounts/{id}", "/orders/{id}", "/tickets/{id}", "/invoices/{id}",
)

MODE_WEIGHTS: dict[str, tuple[float, float, float]] = {
    "triage_ticket": (0.60, 0.30, 0.10),
    "reply_customer": (0.30, 0.60, 0.10),
    "issue_refund": (0.35, 0.50, 0.15),
    "change_plan": (0.45, 0.40, 0.15),
    "route_ticket": (0.75, 0.15, 0.10),
    "update_order": (0.50, 0.35, 0.15),
    "route_ticket_queue": (0.80, 0.10, 0.10),
    "reconcile_invoice": (0.55, 0.30, 0.15),
    "apply_credit": (0.40, 0.45, 0.15),
    "refund_invoice": (0.35, 0.50, 0.15),
}
MODES = ("auto", "assist", "observe")
VERDICTS = ("pass", "warn", "block")

PLANS: dict[str, float] = {"starter": 29.0, "team": 99.0, "pro": 249.0, "enterprise": 899.0}
TICKET_STATUSES = ("new", "open", "pending", "solved")
HELPDESK_QUEUES = ("billing", "technical", "accounts")
ASSIGNEES = ("dana.ruiz", "alex.kim", "noah.berg", "mei.wong", "omar.haddad")
KB_ARTICLES = ("KB-12", "KB-40", "KB-77", "KB-103", "KB-131")

COMPLAINTS: dict[str, tuple[str, ...]] = {
    "triage_ticket": (
        "Ticket {ticket}: I was charged twice this month, please check.",
        "Ticket {ticket}: the export button fails since yesterday's update.",
        "Ticket {ticket}: how do I add two more seats to our workspace?",
        "Ticket {ticket}: cannot log in after resetting my password.",
    ),
    "reply_customer": (
        "Ticket {ticket}: customer asks when order {order} will ship.",
        "Ticket {ticket}: customer wants a copy of invoice {invoice}.",
        "Ticket {ticket}: customer asks why the {plan} plan price changed.",
    ),
    "issue_refund": (
        "Ticket {ticket}: double charge on order {order}, customer wants a refund.",
        "Ticket {ticket}: order {order} arrived damaged, customer asks for money back.",
        "Ticket {ticket}: cancelled order {order} was still charged.",
    ),
    "change_plan": (
        "Customer {customer} asks to move {account} from {old_plan} to {new_plan}.",
        "Usage review: {account} is on {old_plan}, seat count suggests {new_plan}.",
    ),
    "route_ticket": (
        "Ticket {ticket} is unassigned in queue {queue} for 3h.",
        "Ticket {ticket} was reopened by the customer; needs an owner.",
    ),
    "update_order": (
        "Customer {customer} asks to expedite order {order}.",
        "Customer {customer} changed the shipping address of order {order}.",
        "Payment check flagged order {order}; hold requested.",
    ),
    "route_ticket_queue": ("Route unassigned tickets in queue {queue}.",),
    "reconcile_invoice": (
        "Reconcile invoice {invoice} against payments for {account}.",
        "Month-end check: invoice {invoice} shows an open balance.",
    ),
    "apply_credit": (
        "Goodwill credit requested for {account} after the outage on invoice {invoice}.",
        "SLA breach on {account}: compute and apply the contractual credit.",
    ),
    "refund_invoice": (
        "Invoice {invoice} was paid twice by {customer}; refund the duplicate.",
        "Customer {customer} disputes a line on invoice {invoice}.",
    ),
}

RATIONALES: dict[str, tuple[str, ...]] = {
    "triage_ticket": (
        "Billing issue with a paying customer; priority high, route to billing.",
        "Product bug reported by a {plan} customer; priority normal, technical queue.",
        "Account question; known answer in {kb}; priority low.",
    ),
    "reply_customer": (
        "Customer asked for status; order data is current, a short factual reply fits.",
        "Answer covered by {kb}; reply with the steps and link the article.",
    ),
    "issue_refund": (
        "Customer was double charged; refund of {amount} {currency} is within policy.",
        "Damage confirmed by carrier scan; refund of {amount} {currency} matches the order total.",
        "Order was cancelled before shipping; refund {amount} {currency} per policy 4.2.",
    ),
    "change_plan": (
        "Seat usage fits {new_plan}; moving from {old_plan} changes the bill by {amount} {currency}/month.",
        "Customer request confirmed in ticket history; {new_plan} matches contract terms.",
    ),
    "route_ticket": (
        "Billing dispute; {assignee} owns billing escalations and has capacity.",
        "Technical issue with logs attached; {assignee} is on the platform rotation.",
    ),
    "update_order": (
        "Order not yet packed; expedited shipping costs {amount} {currency}, customer accepted.",
        "Address change requested before dispatch; carrier allows it without fee.",
        "Payment check flagged a card mismatch; hold the order until the customer confirms.",
    ),
    "route_ticket_queue": ("Ticket {ticket} is a {queue} question; assign to {assignee}.",),
    "reconcile_invoice": (
        "Payments exceed invoice by {amount} {currency}; apply as account credit.",
        "Payment matched; no discrepancy on the invoice.",
    ),
    "apply_credit": (
        "Outage lasted 4h, over the SLA; credit {amount} {currency} per contract.",
        "Goodwill credit of {amount} {currency} is below the 10% monthly cap.",
    ),
    "refund_invoice": (
        "Duplicate payment confirmed in ledger; refund {amount} {currency}.",
        "Disputed line was billed after cancellation; refund {amount} {currency}.",
    ),
}

GUARDRAIL_REASONS: dict[str, tuple[str, str, str]] = {
    "pii_redaction": ("No personal data in the output", "Email address found and masked", "Card number in the reply"),
    "tone_check": ("Tone is polite and factual", "Reply sounds defensive", "Reply blames the customer"),
    "refund_policy": (
        "Within auto-approval limit",
        "Amount above the 100.00 auto-approval limit",
        "Refund outside the 30-day window",
    ),
    "plan_eligibility": ("Plan change allowed", "Downgrade loses contracted seats", "Account has unpaid invoices"),
    "address_verification": ("Address verified", "Address unverified by carrier", "Address on the fraud list"),
    "ledger_balance": ("Ledger balances", "Small rounding difference", "Ledger does not balance"),
    "credit_limit": ("Within the monthly credit cap", "Close to the monthly credit cap", "Exceeds the credit cap"),
}

HUMAN_REASONS: dict[str, tuple[str, ...]] = {
    "approve": ("Matches policy and order history", "Checked the ledger, looks right", "Fine as proposed"),
    "edit": ("Changed the proposal",),  # an edit's reason names what it changed: EDIT_REASONS
    "reject": (
        "Not justified: the charge was valid",
        "Agent misread the ticket",
        "Wrong customer context in the decision",
    ),
    "override": (
        "Decision contradicts policy; applying the manual resolution",
        "Agent used a wrong record; corrected by hand",
        "Escalated case, handled by the team lead",
    ),
}

# Why a person edited a proposal, by what the edit did (the human span shows before and after).
EDIT_REASONS: dict[str, str] = {
    "refund_up": "Adjusted the amount to what is left of the charged total",
    "refund_down": "Lowered the amount to the disputed part",
    "credit_up": "Raised the credit to the contractual 30% of the invoice",
    "credit_down": "Lowered the credit below the contractual cap",
    "plan": "Picked the plan the contract names",
    "assignee": "Picked a closer match",
}
NOTHING_LEFT = "{record} was already refunded in full ({total} {currency}); there is nothing left to refund."

BASE_ERRORS: dict[str, tuple[tuple[str, str], ...]] = {
    "chat": (
        ("RateLimitError", "429 rate limit exceeded for {model}"),
        ("APITimeoutError", "request to {model} timed out after 30s"),
    ),
    "tool": (
        ("ServiceUnavailable", "{tool} returned 503"),
        ("PermissionDenied", "{tool} token lacks scope for {object}"),
    ),
}
REGRESSION_ERRORS: dict[str, tuple[tuple[str, str], ...]] = {
    "chat": (
        ("OutputParserError", "response is not valid JSON for the decision schema"),
        ("OutputParserError", "decision is missing required field 'object_id'"),
    ),
    "tool": (
        ("NotFoundError", "{object} does not exist"),
        ("ValidationError", "argument 'amount' must be a number, got 'forty-two'"),
    ),
}
TRANSIENT_ERROR = ("TimeoutError", "{tool} timed out after 2000 ms")
