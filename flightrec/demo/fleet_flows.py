"""One workflow of the simulated fleet: the business world, the span emitter and the flows.

`Run` emits the spans of one workflow on a simulated clock with the opentelemetry-sdk tracer it
is given, following the conventions in DESIGN.md: an `invoke_agent` root named after the flow,
LLM calls, tool calls (with transient retries), guardrail checks, human reviews and actions that
carry undo descriptors. `FLOWS` maps each flow name to the function that plays it on a `World`,
the bounded pool of business objects the agents share.

A `Twist` bends one run for the labeled injections of `flightrec.demo.fleet`: the version regression
(the caller passes the regressed behaviour), a tool loop, inflated input tokens, a slowdown with
a higher error rate, or an outlier trace. Draws made for an injection come from a separate RNG
(`Twist.side`), so the rest of the workflow draws what it would have drawn without it.
"""

from __future__ import annotations

import json
import random
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

import httpx
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace import Tracer
from opentelemetry.trace import SpanKind, Status, StatusCode

from flightrec.demo import fleet_catalog as cat

MS = 1_000_000
SECOND = 1_000 * MS
_ROOT_CONTEXT = Context()


class _WorkflowFailed(Exception):
    """Raised inside a flow when a step fails for good; the root span records it."""


class _Blocked(Exception):
    """Raised inside a flow when a kill switch refused an action; the workflow stops there."""


class Decision(Protocol):
    """What a kill-switch check answers."""

    allowed: bool
    state: str


class Controls(Protocol):
    """The kill-switch client the fleet asks before each action (`flightrec.sdk.ControlClient`)."""

    def check(self, agent: str, flow: str, starting: bool = False) -> Decision: ...


Answer = dict[str, Any]


@dataclass(frozen=True, slots=True)
class _Undo:
    """An undo descriptor: the record its path names, its args, the fields the action changed, its read-back."""

    record_id: str
    args: Answer
    fields: list[str]
    check_path: str
    expect: Answer


@dataclass(frozen=True, slots=True)
class _Call:
    """How the records service performs an action, and the undo descriptor built from its answer.

    `simulated` stands in for the answer when the action is not performed (no service, or not auto).
    """

    path: str
    body: Answer
    simulated: Answer
    undo: Callable[[Answer], _Undo]


@dataclass(frozen=True, slots=True)
class Proposal:
    """What a person reviewing a suggestion may edit: one value, how an edit changes it (and why),
    and what a person's override sets instead. `show` writes the value for the human span."""

    field: str
    value: Any
    edit: Callable[[random.Random], tuple[Any, str]]
    override: Callable[[], Any] | None = None
    show: Callable[[Any], str] = str


class Records:
    """Client of the demo system of record: one POST per performed action."""

    def __init__(self, url: str, timeout_s: float = 5.0) -> None:
        self.http = httpx.Client(base_url=url, timeout=timeout_s)

    def perform(self, path: str, body: Answer) -> tuple[Answer, tuple[str, str] | None]:
        """POST the action; its answer, or the (exception type, message) it failed with."""
        try:
            response = self.http.post(path, json=body, headers={"Idempotency-Key": f"fleet-{uuid.uuid4().hex}"})
        except httpx.HTTPError as exc:
            return {}, (type(exc).__name__, f"POST {path} failed: {exc}")
        if not response.is_success:
            return {}, ("RecordsError", f"POST {path} answered {response.status_code}: {response.text[:200]}")
        return response.json(), None

    def close(self) -> None:
        """Close the HTTP client."""
        self.http.close()


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def _money(amount: float) -> str:
    return f"{amount:.2f}"


def _mangle(object_ref: str) -> str:
    """Return the kind of wrong id a weaker model hallucinates (a letter O for a zero)."""
    return object_ref.replace("0", "O", 1) if "0" in object_ref else object_ref + "7"


class World:
    """The bounded pool of business objects and their mutable state."""

    def __init__(self, workflows: int, rng: random.Random) -> None:
        self.accounts = [f"ACC-{50 + k}" for k in range(max(3, workflows // 12))]
        self.customers = [f"CUS-{300 + k}" for k in range(max(4, workflows // 8))]
        self.tickets = [f"TCK-{1000 + k}" for k in range(max(6, workflows // 3))]
        self.orders = [f"ORD-{20000 + 3 * k + rng.randrange(3)}" for k in range(max(6, workflows // 3))]
        self.invoices = [f"INV-{7700 + k}" for k in range(max(5, workflows // 4))]
        plans = list(cat.PLANS)
        self.plan = {a: rng.choice(plans) for a in self.accounts}
        self.currency = {a: "EUR" if rng.random() < 0.7 else "USD" for a in self.accounts}
        self.account_of = {c: self.accounts[k % len(self.accounts)] for k, c in enumerate(self.customers)}
        self.customers_of: dict[str, list[str]] = {a: [] for a in self.accounts}
        for customer, account in self.account_of.items():
            self.customers_of[account].append(customer)
        self.customer_of = self._spread(self.tickets, self.customers, rng) | self._spread(
            self.orders, self.customers, rng
        )
        self.orders_of: dict[str, list[str]] = {c: [] for c in self.customers}
        for order in self.orders:
            self.orders_of[self.customer_of[order]].append(order)
        self.invoice_account = self._spread(self.invoices, self.accounts, rng)
        self.invoices_of: dict[str, list[str]] = {a: [] for a in self.accounts}
        for invoice, account in self.invoice_account.items():
            self.invoices_of[account].append(invoice)
        self.total = {o: round(rng.uniform(12, 480), 2) for o in self.orders + self.invoices}
        self.status = dict.fromkeys(self.tickets, "new")
        self.assignee = dict.fromkeys(self.tickets, "unassigned")
        self.refunded: Counter[str] = Counter()  # refunded so far per order or invoice (done or handed to a person)
        self.touched: Counter[str] = Counter()
        self._sequence = 0

    @staticmethod
    def _spread(items: list[str], owners: list[str], rng: random.Random) -> dict[str, str]:
        """Give every owner at least one item, the rest at random."""
        return {item: owners[k] if k < len(owners) else rng.choice(owners) for k, item in enumerate(items)}

    @staticmethod
    def pick(items: Sequence[str], rng: random.Random) -> str:
        """Pick an object, skewed so a few are hot (touched by many workflows)."""
        return items[int(len(items) * rng.random() ** 1.6)]

    def next_id(self, prefix: str) -> str:
        """Return a fresh id for a created record (refund, credit)."""
        self._sequence += 1
        return f"{prefix}-{50000 + self._sequence}"


@dataclass(frozen=True, slots=True)
class _Gate:
    """The outcome of a guardrail and review step: the mode to act in, the human decision, and the
    value to act with (the proposal's, or what the person edited it to)."""

    mode: str
    decision: str
    value: Any = None


@dataclass(frozen=True, slots=True)
class Twist:
    """How the injections bend one run; the default bends nothing.

    - `regressed` (version): regression error texts and hallucinated object ids; the caller also
      passes the regressed behaviour (model, prompt, rates).
    - `loop_calls` (loop): the workflow's first tool call is requested this many extra times with
      the same arguments before the real call (new call id each, no retry attribute, no error).
    - `token_factor` (cost): input tokens of every LLM call are multiplied.
    - `slowdown` (drift): every span duration and every gap between spans is multiplied.
    - `error_rate` (drift): replaces the behaviour's error rate.
    - `outlier` (outlier): before its decision the agent calls many distinct tools with a swelling
      prompt, slowly; then several guardrails block and the workflow stops.
    - `side`: the RNG for the injected spans, so the workflow's own draws stay as without them.
    """

    regressed: bool = False
    loop_calls: int = 0
    token_factor: int = 1
    slowdown: float = 1.0
    error_rate: float | None = None
    outlier: bool = False
    side: random.Random | None = None


NO_TWIST = Twist()


class Run:
    """Emits the spans of one workflow on a simulated clock.

    After the flow ran: `spans` counts them, `trace_id`, `root_start` and `root_end` place the
    trace, `applied` names the per-trace injections (loop, outlier) that really happened.
    """

    def __init__(
        self,
        tracer: Tracer,
        rng: random.Random,
        profile: cat.AgentProfile,
        behaviour: cat.Behaviour,
        records_url: str,
        start_ns: int,
        records: Records | None = None,
        controls: Controls | None = None,
        twist: Twist = NO_TWIST,
    ) -> None:
        self.tracer, self.rng, self.profile, self.behaviour = tracer, rng, profile, behaviour
        self.twist, self.regressed, self.slowdown = twist, twist.regressed, twist.slowdown
        self.records_url, self.cursor = records_url, start_ns
        self.records, self.controls, self.flow = records, controls, ""
        self.spans = 0
        self.calls = 0
        error_rate = behaviour.error_rate if twist.error_rate is None else twist.error_rate
        self.fail_at = rng.randint(1, 3) if rng.random() < error_rate else 0
        if twist.outlier:
            self.fail_at = 0  # an outlier always gets as far as its burst
        self.context_tokens = rng.randint(400, 1200)
        self.next_input = ""
        self.objects: set[str] = set()
        self.ctx = _ROOT_CONTEXT
        self.applied: set[str] = set()
        self.trace_id = self.root_start = self.root_end = 0

    def _scaled(self, ns: int) -> int:
        """A duration or gap, stretched by the drift slowdown."""
        return ns if self.slowdown == 1.0 else round(ns * self.slowdown)

    @contextmanager
    def _side(self) -> Iterator[None]:
        """Draw from the injection RNG inside the block."""
        main, self.rng = self.rng, self.twist.side or self.rng
        try:
            yield
        finally:
            self.rng = main

    def _emit(
        self,
        name: str,
        attrs: dict[str, Any],
        duration_ns: int,
        kind: SpanKind = SpanKind.INTERNAL,
        error: tuple[str, str] | None = None,
    ) -> None:
        start = self.cursor + self._scaled(self.rng.randint(1, 25) * MS)
        end = start + self._scaled(duration_ns)
        span = self.tracer.start_span(name, context=self.ctx, kind=kind, attributes=attrs, start_time=start)
        if error:
            span.add_event("exception", {"exception.type": error[0], "exception.message": error[1]}, timestamp=end)
            span.set_status(Status(StatusCode.ERROR, f"{error[0]}: {error[1]}"))
        span.end(end_time=end)
        self.cursor = end
        self.spans += 1

    def _link(self, attrs: dict[str, Any], link: tuple[str, str] | None, extra: Sequence[tuple[str, str]] = ()) -> None:
        """Add object links: the primary one, plus extras as `flightrec.objects` or aliases."""
        if link:
            attrs["flightrec.object.type"], attrs["flightrec.object.id"] = link
            self.objects.add(f"{link[0]}:{link[1]}")
        if not extra:
            return
        refs = [f"{kind}:{oid}" for kind, oid in extra]
        self.objects.update(refs)
        if self.rng.random() < 0.5:
            attrs["flightrec.objects"] = refs
        else:
            attrs.update({f"{kind}.id": oid for kind, oid in extra})

    def _failure(self, kind: str, **fields: str) -> tuple[str, str] | None:
        """Count a model/tool call and return its error if this is the workflow's failing call."""
        self.calls += 1
        if self.calls != self.fail_at:
            return None
        table = cat.REGRESSION_ERRORS if self.regressed else cat.BASE_ERRORS
        etype, message = self.rng.choice(table[kind])
        return etype, message.format(**fields)

    @contextmanager
    def workflow(
        self, flow: str, link: tuple[str, str] | None, extra: Sequence[tuple[str, str]] = ()
    ) -> Iterator[None]:
        """Open the `invoke_agent` root span; a failed step ends it with an ERROR status."""
        attrs: dict[str, Any] = {
            "gen_ai.operation.name": "invoke_agent",
            "gen_ai.agent.name": self.profile.name,
            "gen_ai.request.model": self.behaviour.model,
            "gen_ai.conversation.id": f"conv_{self.rng.getrandbits(48):012x}",
            "flightrec.agent.version": self.profile.version,
            "flightrec.prompt.version": self.behaviour.prompt_version,
        }
        self._link(attrs, link, extra)
        self.flow = flow
        root = self.tracer.start_span(flow, context=_ROOT_CONTEXT, attributes=attrs, start_time=self.cursor)
        self.trace_id, self.root_start = root.get_span_context().trace_id, self.cursor
        self.ctx = trace.set_span_in_context(root)
        try:
            yield
        except _WorkflowFailed as failed:
            root.set_status(Status(StatusCode.ERROR, f"workflow failed: {failed}"))
        except _Blocked:
            pass
        self.cursor += self._scaled(self.rng.randint(1, 30) * MS)
        root.end(end_time=self.cursor)
        self.root_end = self.cursor
        self.spans += 1

    @contextmanager
    def group(self, name: str, link: tuple[str, str]) -> Iterator[None]:
        """Open a sub-step span (one item of a batch) that links its own object."""
        attrs: dict[str, Any] = {}
        self._link(attrs, link)
        span = self.tracer.start_span(name, context=self.ctx, attributes=attrs, start_time=self.cursor)
        outer, self.ctx = self.ctx, trace.set_span_in_context(span)
        try:
            yield
        except _WorkflowFailed as failed:
            span.set_status(Status(StatusCode.ERROR, str(failed)))
            raise
        finally:
            self.ctx = outer
            self.cursor += self._scaled(self.rng.randint(1, 10) * MS)
            span.end(end_time=self.cursor)
            self.spans += 1

    def ask(self, text: str) -> None:
        """Set the user message the next LLM call answers."""
        self.next_input = _dumps([{"role": "user", "parts": [{"type": "text", "content": text}]}])

    def _chat(self, output: dict[str, Any], finish: str, output_tokens: int, fallible: bool = True) -> None:
        self.context_tokens += self.rng.randint(60, 260)
        attrs: dict[str, Any] = {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": self.profile.provider,
            "gen_ai.request.model": self.behaviour.model,
            "gen_ai.request.temperature": 0.2,
            "gen_ai.response.model": self.behaviour.response_model,
            "gen_ai.usage.input_tokens": self.context_tokens * self.twist.token_factor,
            "gen_ai.usage.output_tokens": output_tokens,
            "gen_ai.input.messages": self.next_input,
        }
        error = self._failure("chat", model=self.behaviour.model) if fallible else None
        if not error:
            attrs["gen_ai.output.messages"] = _dumps([{"role": "assistant", **output, "finish_reason": finish}])
            attrs["gen_ai.response.finish_reasons"] = [finish]
        duration = (250 + output_tokens * self.rng.randint(8, 20)) * MS
        self._emit(f"chat {self.behaviour.model}", attrs, duration, SpanKind.CLIENT, error)
        if error:
            raise _WorkflowFailed(f"{error[0]}: {error[1]}")

    def tool(self, name: str, args: dict[str, Any], result: dict[str, Any], inputs: Sequence[str] = ()) -> None:
        """An LLM call that requests a tool, then the tool call itself (with transient retries).

        The workflow's first tool call is where an injected loop happens: the same request, again
        and again, before the real one.
        """
        if self.twist.loop_calls and "loop" not in self.applied:
            self.applied.add("loop")
            with self._side():
                for _ in range(self.twist.loop_calls):
                    self._call_tool(name, args, result, inputs, fallible=False)
        self._call_tool(name, args, result, inputs)

    def _call_tool(
        self,
        name: str,
        args: dict[str, Any],
        result: dict[str, Any],
        inputs: Sequence[str] = (),
        fallible: bool = True,
        duration_ms: tuple[int, int] = (40, 600),
        retry_p: float = 0.02,
    ) -> None:
        """One request and call; `fallible=False` never fails (nor retries), `retry_p` is the first attempt's."""
        call_id = f"call_{self.rng.getrandbits(48):012x}"
        call = {"type": "tool_call", "id": call_id, "name": name, "arguments": args}
        self._chat({"parts": [call]}, "tool_call", self.rng.randint(15, 60), fallible)
        attrs: dict[str, Any] = {
            "gen_ai.operation.name": "execute_tool",
            "gen_ai.tool.name": name,
            "gen_ai.tool.call.id": call_id,
            "gen_ai.tool.type": "function",
            "gen_ai.tool.call.arguments": _dumps(args),
        }
        if inputs:
            attrs["flightrec.inputs"] = list(inputs)
        attempt = 0
        while fallible and attempt < 2 and self.rng.random() < (retry_p if attempt == 0 else 0.25):
            transient = (cat.TRANSIENT_ERROR[0], cat.TRANSIENT_ERROR[1].format(tool=name))
            retry = {"flightrec.retry.attempt": attempt} if attempt else {}
            self._emit(f"execute_tool {name}", attrs | retry, 2000 * MS, error=transient)
            attempt += 1
        if attempt:
            attrs["flightrec.retry.attempt"] = attempt
        subject = _mangle(inputs[0]) if self.regressed and inputs else (inputs[0] if inputs else name)
        error = self._failure("tool", tool=name, object=subject) if fallible else None
        if not error:
            attrs["gen_ai.tool.call.result"] = _dumps(result)
        self._emit(f"execute_tool {name}", attrs, self.rng.randint(*duration_ms) * MS, error=error)
        if error:
            raise _WorkflowFailed(f"{error[0]}: {error[1]}")
        response = {"type": "tool_call_response", "id": call_id, "response": result}
        self.next_input = _dumps([{"role": "tool", "parts": [response]}])

    def decide(self, text: str) -> None:
        """The LLM call that states the agent's decision and its rationale (after an outlier's burst)."""
        if self.twist.outlier and "outlier" not in self.applied:
            self.applied.add("outlier")
            with self._side():
                self._burst()
        self._chat({"parts": [{"type": "text", "content": text}]}, "stop", self.rng.randint(40, 220))

    def _burst(self) -> None:
        """An outlier's detour: many distinct tools, each answer swelling the prompt, each slow."""
        rng = self.rng
        tools = rng.sample(cat.OUTLIER_TOOLS, rng.randint(*cat.OUTLIER_TOOL_CALLS))
        for page, name in enumerate(tools, 1):
            self.context_tokens += rng.randint(*cat.OUTLIER_CONTEXT_GROWTH)
            args = {"scope": "all", "page": page, "limit": 1000}
            result = {"rows": rng.randint(200, 5000), "truncated": True}
            self._call_tool(name, args, result, duration_ms=cat.OUTLIER_TOOL_MS, retry_p=cat.OUTLIER_RETRY_P)

    def mode(self, flow: str) -> str:
        """Draw the autonomy mode (observe / assist / auto) for this flow."""
        return self.rng.choices(cat.MODES, cat.MODE_WEIGHTS[flow])[0]

    def _guardrail(self, name: str, verdict: str | None = None) -> str:
        verdict = verdict or self.rng.choices(cat.VERDICTS, self.behaviour.guardrail_weights)[0]
        attrs = {
            "flightrec.operation": "guardrail",
            "flightrec.guardrail.name": name,
            "flightrec.guardrail.verdict": verdict,
            "flightrec.guardrail.reason": cat.GUARDRAIL_REASONS[name][cat.VERDICTS.index(verdict)],
        }
        self._emit(f"guardrail {name}", attrs, self.rng.randint(5, 80) * MS)
        return verdict

    def _human(self, proposal: Proposal | None) -> tuple[str, Any]:
        """A person reviews the suggestion: (decision, value to act with).

        Only a proposal with something to edit can be edited (otherwise the person approves);
        an edit or override that changes the value records it before and after.
        """
        if self.rng.random() < self.behaviour.override_rate:
            decision = "reject" if self.rng.random() < 0.5 else "override"
        else:
            decision = "approve" if self.rng.random() < 0.8 else "edit"
        if decision == "edit" and proposal is None:
            decision = "approve"
        actor = self.rng.choice(self.profile.actors)
        value = proposal.value if proposal else None
        if decision == "edit":
            assert proposal is not None
            value, reason = proposal.edit(self.rng)
        else:
            reason = self.rng.choice(cat.HUMAN_REASONS[decision])
            if decision == "override" and proposal and proposal.override:
                value = proposal.override()
        attrs = {
            "flightrec.operation": "human",
            "flightrec.human.decision": decision,
            "flightrec.human.actor": actor,
            "flightrec.human.reason": reason,
        }
        if proposal and decision in ("edit", "override") and value != proposal.value:
            attrs["flightrec.human.field"] = proposal.field
            attrs["flightrec.human.before"] = proposal.show(proposal.value)
            attrs["flightrec.human.after"] = proposal.show(value)
        self._emit("human review", attrs, self.rng.randint(20, 360) * SECOND)
        return decision, value

    def gate(
        self, guardrails: Sequence[str], mode: str, risk: str, proposal: Proposal | None = None
    ) -> _Gate | None:
        """Run guardrails, then a human review when assisting, warned or high risk; None = stop.

        After an outlier's burst, several guardrails block instead. The gate's value is the
        proposal's, or what the reviewing person edited it to.
        """
        if "outlier" in self.applied:
            with self._side():
                names = self.rng.sample(sorted(cat.GUARDRAIL_REASONS), self.rng.randint(*cat.OUTLIER_BLOCKS))
                for name in names:
                    self._guardrail(name, "block")
            return None
        verdicts = [self._guardrail(name) for name in guardrails]
        if "block" in verdicts:
            return None
        value = proposal.value if proposal else None
        if mode == "observe":
            return _Gate(mode, "none", value)
        if mode == "auto" and ("warn" in verdicts or risk == "high"):
            mode = "assist"
        if mode == "auto":
            return _Gate(mode, "none", value)
        decision, value = self._human(proposal)
        return None if decision == "reject" else _Gate(mode, decision, value)

    def action(
        self,
        name: str,
        link: tuple[str, str],
        mode: str,
        risk: str,
        call: _Call | None = None,
        money: tuple[float, str] | None = None,
    ) -> bool:
        """A side effect in a system of record, with its undo descriptor unless irreversible (no `call`).

        The descriptor names the registered system (`records`) and a path or handler on it, the
        fields the action changed and how to read its undo back. A refused kill-switch check emits
        the span as blocked and stops the workflow; a failed records call emits it as an ERROR
        without undo descriptor and fails the workflow. True when it took effect (or was handed
        to a person: assist), False in observe mode.
        """
        attrs: dict[str, Any] = {
            "flightrec.operation": "action",
            "flightrec.action.name": name,
            "flightrec.action.system": cat.ACTION_SYSTEMS[name],
            "flightrec.action.risk": risk,
            "flightrec.mode": mode,
        }
        self._link(attrs, link)
        if money:
            attrs["flightrec.action.amount"], attrs["flightrec.action.currency"] = money
        duration = self.rng.randint(80, 900) * MS
        decision = self.controls.check(self.profile.name, self.flow) if self.controls else None
        if decision is not None and not decision.allowed:
            attrs["flightrec.action.status"], attrs["flightrec.control.state"] = "blocked", decision.state
            self._emit(name, attrs, duration, SpanKind.CLIENT)
            raise _Blocked(decision.state)
        answer, error = (call.simulated if call else {}), None
        if call and mode == "auto" and self.records:
            answer, error = self.records.perform(call.path, call.body)
        if call and not error:
            undo = call.undo(answer)
            attrs["flightrec.undo.system"] = cat.RECORDS_SYSTEM
            if name in cat.HTTP_UNDO_PATHS:
                attrs["flightrec.undo.kind"] = "http"
                attrs["flightrec.undo.target"] = cat.HTTP_UNDO_PATHS[name].format(id=undo.record_id)
            else:
                attrs["flightrec.undo.kind"] = "handler"
                attrs["flightrec.undo.target"] = cat.HANDLER_UNDO[name]
            attrs["flightrec.undo.args"] = _dumps(undo.args)
            attrs["flightrec.undo.check"] = _dumps({"path": undo.check_path, "expect": undo.expect})
            attrs["flightrec.action.fields"] = [] if answer.get("already") else undo.fields
        self._emit(name, attrs, duration, SpanKind.CLIENT, error)
        if error:
            raise _WorkflowFailed(f"{error[0]}: {error[1]}")
        return mode != "observe"


def _text(rng: random.Random, table: dict[str, tuple[str, ...]], flow: str, index: int | None = None, **kw: Any) -> str:
    options = table[flow]
    return (options[index] if index is not None else rng.choice(options)).format(**kw)


def _amount_proposal(amount: float, full: float, currency: str, kind: str = "refund") -> Proposal:
    """A proposed amount a person may edit: up to the full amount when less was proposed, else down to a
    part of it; an override applies the full amount. The reason names what the edit did."""
    def edit(rng: random.Random) -> tuple[float, str]:
        if amount < full:
            return round(full, 2), cat.EDIT_REASONS[f"{kind}_up"]
        return round(full * rng.uniform(0.5, 0.95), 2), cat.EDIT_REASONS[f"{kind}_down"]

    return Proposal("amount", amount, edit, lambda: round(full, 2), lambda value: f"{value:.2f} {currency}")


def _choice_proposal(field: str, value: str, alternatives: Sequence[str], reason: str) -> Proposal:
    """A proposed choice (a plan, an assignee) a person may edit to another; override also picks another."""
    others = [item for item in alternatives if item != value]
    return Proposal(field, value, lambda rng: (rng.choice(others), reason), lambda: others[0])


def _set_status(run: Run, w: World, ticket: str, status: str, mode: str) -> None:
    def undo(done: Answer) -> _Undo:
        previous = done["previous_status"]
        return _Undo(ticket, {"ticket_id": ticket, "status": status, "previous_status": previous},
                     [f"ticket:{ticket}#status"], f"/tickets/{ticket}", {"status": previous})

    call = _Call(f"/tickets/{ticket}/status", {"status": status}, {"previous_status": w.status[ticket]}, undo)
    run.action("ticket.status", ("ticket", ticket), mode, "low", call)
    if mode != "observe":
        w.status[ticket] = status


def _assign(run: Run, w: World, ticket: str, assignee: str, mode: str) -> None:
    def undo(done: Answer) -> _Undo:
        previous = done["previous_assignee"]
        return _Undo(ticket, {"ticket_id": ticket, "assignee": assignee, "previous_assignee": previous},
                     [f"ticket:{ticket}#assignee"], f"/tickets/{ticket}", {"assignee": previous})

    call = _Call(f"/tickets/{ticket}/assignee", {"assignee": assignee}, {"previous_assignee": w.assignee[ticket]},
                 undo)
    run.action("ticket.assign", ("ticket", ticket), mode, "low", call)
    if mode != "observe":
        w.assignee[ticket] = assignee


def _email(run: Run, customer: str, mode: str) -> None:
    run.action("email.send", ("customer", customer), mode, "low")


def _ledger_call(path: str, key: str, simulated_id: str, body: Answer) -> _Call:
    """A refund or credit creates an entry; its undo voids (reverses) that entry, re-checking its fields.

    The entry's status is the one field it changes: reversing it takes its amount off the running
    total, whatever other entries did to that total since, so later refunds are no conflict.
    """
    kind = key.removesuffix("_id")

    def undo(done: Answer) -> _Undo:
        ident = done[key]
        return _Undo(ident, {key: ident, **body}, [f"{kind}:{ident}#status"], f"{path}/{ident}",
                     {"status": "reversed"})

    return _Call(path, body, {key: simulated_id}, undo)


def _refund(run: Run, w: World, link: tuple[str, str], money: tuple[float, str], mode: str, risk: str) -> None:
    body = {f"{link[0]}_id": link[1], "amount": money[0], "currency": money[1]}
    call = _ledger_call("/refunds", "refund_id", w.next_id("RF"), body)
    if run.action("refund.issue", link, mode, risk, call, money=money):
        w.refunded[link[1]] += money[0]


def _credit(run: Run, w: World, account: str, money: tuple[float, str], mode: str, risk: str) -> None:
    body = {"account_id": account, "amount": money[0], "currency": money[1]}
    call = _ledger_call("/credits", "credit_id", w.next_id("CR"), body)
    run.action("credit.apply", ("account", account), mode, risk, call, money=money)


def _get_ticket(run: Run, w: World, ticket: str) -> None:
    result = {"status": w.status[ticket], "assignee": w.assignee[ticket], "customer": w.customer_of[ticket]}
    run.tool("get_ticket", {"ticket_id": ticket}, result, [f"ticket:{ticket}"])


def _get_invoice(run: Run, w: World, invoice: str, status: str) -> None:
    result = {"total": _money(w.total[invoice]), "currency": w.currency[w.invoice_account[invoice]], "status": status}
    run.tool("get_invoice", {"invoice_id": invoice}, result, [f"invoice:{invoice}"])


def _triage_ticket(run: Run, w: World) -> None:
    """Support: classify a ticket, open it and sometimes route it to a queue."""
    rng = run.rng
    ticket = w.pick(w.tickets, rng)
    customer = w.customer_of[ticket]
    account = w.account_of[customer]
    kb, queue = rng.choice(cat.KB_ARTICLES), rng.choice(cat.HELPDESK_QUEUES)
    with run.workflow("triage_ticket", ("ticket", ticket), [("customer", customer)]):
        run.ask(_text(rng, cat.COMPLAINTS, "triage_ticket", ticket=ticket))
        _get_ticket(run, w, ticket)
        run.tool("get_customer", {"customer_id": customer}, {"account": account, "plan": w.plan[account]},
                 [f"customer:{customer}", f"account:{account}"])
        run.tool("search_kb", {"query": f"{queue} issue"}, {"articles": [kb]})
        run.decide(_text(rng, cat.RATIONALES, "triage_ticket", plan=w.plan[account], kb=kb))
        gate = run.gate(("pii_redaction",), run.mode("triage_ticket"), "low")
        if gate is None:
            return
        _set_status(run, w, ticket, "open", gate.mode)
        if rng.random() < 0.5:
            _assign(run, w, ticket, f"queue:{queue}", gate.mode)


def _reply_customer(run: Run, w: World) -> None:
    """Support: draft and send a reply, then set the ticket pending."""
    rng = run.rng
    ticket = w.pick(w.tickets, rng)
    customer = w.customer_of[ticket]
    account = w.account_of[customer]
    order, invoice = rng.choice(w.orders_of[customer]), rng.choice(w.invoices_of[account])
    kb = rng.choice(cat.KB_ARTICLES)
    with run.workflow("reply_customer", ("ticket", ticket), [("customer", customer)]):
        run.ask(_text(rng, cat.COMPLAINTS, "reply_customer", ticket=ticket, order=order, invoice=invoice,
                      plan=w.plan[account]))
        _get_ticket(run, w, ticket)
        run.tool("get_order", {"order_id": order}, {"status": rng.choice(("packed", "shipped")), "eta_days": 3},
                 [f"order:{order}", f"customer:{customer}"])
        run.tool("search_kb", {"query": "order status"}, {"articles": [kb]})
        run.decide(_text(rng, cat.RATIONALES, "reply_customer", kb=kb))
        gate = run.gate(("tone_check", "pii_redaction"), run.mode("reply_customer"), "low")
        if gate is None:
            return
        _email(run, customer, gate.mode)
        _set_status(run, w, ticket, "pending", gate.mode)


def _issue_refund(run: Run, w: World) -> None:
    """Support: refund an order named in a ticket, tell the customer, solve the ticket."""
    rng = run.rng
    ticket = w.pick(w.tickets, rng)
    customer = w.customer_of[ticket]
    order = rng.choice(w.orders_of[customer])
    currency, total = w.currency[w.account_of[customer]], w.total[order]
    left = round(total - w.refunded[order], 2)  # what was charged and not refunded yet
    amount = left if rng.random() < 0.6 else round(left * rng.uniform(0.2, 0.8), 2)
    risk = "high" if amount > 150 else "medium"
    with run.workflow("issue_refund", ("ticket", ticket), [("order", order), ("customer", customer)]):
        run.ask(_text(rng, cat.COMPLAINTS, "issue_refund", ticket=ticket, order=order))
        _get_ticket(run, w, ticket)
        run.tool("get_order", {"order_id": order}, {"total": _money(total), "currency": currency}, [f"order:{order}"])
        run.tool("get_payments", {"order_id": order}, {"charges": rng.randint(1, 2), "captured": _money(total),
                                                       "refunded": _money(w.refunded[order])},
                 [f"order:{order}", f"customer:{customer}"])
        if left < 1:
            run.decide(cat.NOTHING_LEFT.format(record=f"Order {order}", total=_money(total), currency=currency))
            return
        run.decide(_text(rng, cat.RATIONALES, "issue_refund", amount=_money(amount), currency=currency))
        gate = run.gate(("refund_policy",), run.mode("issue_refund"), risk, _amount_proposal(amount, left, currency))
        if gate is None:
            return
        _refund(run, w, ("order", order), (gate.value, currency), gate.mode, risk)
        _email(run, customer, gate.mode)
        _set_status(run, w, ticket, "solved", gate.mode)


def _change_plan(run: Run, w: World) -> None:
    """Operations: move an account to another plan and confirm by email."""
    rng = run.rng
    account = w.pick(w.accounts, rng)
    customer, invoice = rng.choice(w.customers_of[account]), rng.choice(w.invoices_of[account])
    currency, old = w.currency[account], w.plan[account]
    new = rng.choice([plan for plan in cat.PLANS if plan != old])
    delta = abs(cat.PLANS[new] - cat.PLANS[old])
    risk = "high" if delta >= 200 else "medium"
    with run.workflow("change_plan", ("account", account), [("customer", customer)]):
        run.ask(_text(rng, cat.COMPLAINTS, "change_plan", customer=customer, account=account, old_plan=old,
                      new_plan=new))
        run.tool("get_account", {"account_id": account}, {"plan": old, "seats": rng.randint(3, 120)},
                 [f"account:{account}", f"customer:{customer}"])
        run.tool("get_usage", {"account_id": account, "days": 30},
                 {"active_seats": rng.randint(2, 110), "api_calls": rng.randint(1_000, 90_000)}, [f"account:{account}"])
        run.tool("get_invoices", {"account_id": account}, {"open": [invoice], "overdue": 0}, [f"invoice:{invoice}"])
        run.decide(_text(rng, cat.RATIONALES, "change_plan", new_plan=new, old_plan=old, amount=_money(delta),
                         currency=currency))
        proposal = _choice_proposal("plan", new, [plan for plan in cat.PLANS if plan != old], cat.EDIT_REASONS["plan"])
        gate = run.gate(("plan_eligibility",), run.mode("change_plan"), risk, proposal)
        if gate is None:
            return
        new = gate.value
        delta = abs(cat.PLANS[new] - cat.PLANS[old])

        def undo(done: Answer) -> _Undo:
            previous = done["previous_plan"]
            return _Undo(account, {"plan": previous, "expected_plan": new}, [f"account:{account}#plan"],
                         f"/accounts/{account}", {"plan": previous})

        call = _Call(f"/accounts/{account}/plan", {"plan": new}, {"previous_plan": old}, undo)
        run.action("plan.change", ("account", account), gate.mode, risk, call, money=(delta, currency))
        if gate.mode != "observe":
            w.plan[account] = new
        _email(run, customer, gate.mode)


def _route_ticket(run: Run, w: World) -> None:
    """Operations: pick an owner for one ticket."""
    rng = run.rng
    ticket = w.pick(w.tickets, rng)
    customer = w.customer_of[ticket]
    queue, candidates = rng.choice(cat.HELPDESK_QUEUES), rng.sample(cat.ASSIGNEES, 3)
    with run.workflow("route_ticket", ("ticket", ticket)):
        run.ask(_text(rng, cat.COMPLAINTS, "route_ticket", ticket=ticket, queue=queue))
        _get_ticket(run, w, ticket)
        run.tool("get_customer", {"customer_id": customer}, {"tier": rng.choice(("standard", "priority"))},
                 [f"customer:{customer}"])
        run.tool("list_assignees", {"queue": queue}, {"available": candidates})
        run.decide(_text(rng, cat.RATIONALES, "route_ticket", assignee=candidates[0]))
        proposal = _choice_proposal("assignee", candidates[0], candidates, cat.EDIT_REASONS["assignee"])
        gate = run.gate((), run.mode("route_ticket"), "low", proposal)
        if gate is None:
            return
        _assign(run, w, ticket, gate.value, gate.mode)
        if w.status[ticket] == "new":
            _set_status(run, w, ticket, "open", gate.mode)


_ORDER_CHANGES = (
    ("shipping_speed", "standard", "express"),
    ("shipping_address", "address_v1", "address_v2"),
    ("status", "processing", "on_hold"),
)


def _update_order(run: Run, w: World) -> None:
    """Operations: expedite, re-address or hold an order."""
    rng = run.rng
    order = w.pick(w.orders, rng)
    customer = w.customer_of[order]
    currency = w.currency[w.account_of[customer]]
    variant = rng.randrange(len(_ORDER_CHANGES))
    field, previous, value = _ORDER_CHANGES[variant]
    fee = round(rng.uniform(9.9, 29.9), 2) if variant == 0 else None
    with run.workflow("update_order", ("order", order), [("customer", customer)]):
        run.ask(_text(rng, cat.COMPLAINTS, "update_order", variant, customer=customer, order=order))
        run.tool("get_order", {"order_id": order}, {"status": "processing", "total": _money(w.total[order])},
                 [f"order:{order}", f"customer:{customer}"])
        run.tool("get_shipment", {"order_id": order}, {"carrier": rng.choice(("DHL", "UPS", "GLS")), "status": "label"},
                 [f"order:{order}"])
        run.tool("get_customer", {"customer_id": customer}, {"orders": len(w.orders_of[customer])},
                 [f"customer:{customer}"])
        run.decide(_text(rng, cat.RATIONALES, "update_order", variant, amount=_money(fee or 0), currency=currency))
        gate = run.gate(("address_verification",), run.mode("update_order"), "medium")
        if gate is None:
            return
        def undo(done: Answer) -> _Undo:
            before = done["previous_value"]
            return _Undo(order, {"field": field, "value": before, "expected_value": value}, [f"order:{order}#{field}"],
                         f"/orders/{order}", {field: before})

        call = _Call(f"/orders/{order}", {"field": field, "value": value}, {"previous_value": previous}, undo)
        money = (fee, currency) if fee else None
        run.action("order.update", ("order", order), gate.mode, "medium", call, money=money)
        _email(run, customer, gate.mode)


def _route_ticket_queue(run: Run, w: World) -> None:
    """Operations batch: route several tickets; the root links no object, each item links its ticket."""
    rng = run.rng
    queue = rng.choice(cat.HELPDESK_QUEUES)
    size, tickets = rng.randint(2, 4), []
    while len(tickets) < size:
        ticket = w.pick(w.tickets, rng)
        if ticket not in tickets:
            tickets.append(ticket)
    with run.workflow("route_ticket_queue", None):
        run.ask(_text(rng, cat.COMPLAINTS, "route_ticket_queue", queue=queue))
        run.tool("list_unassigned", {"queue": queue}, {"tickets": tickets}, [f"ticket:{t}" for t in tickets])
        for ticket in tickets:
            with run.group("route_ticket", ("ticket", ticket)):
                assignee = rng.choice(cat.ASSIGNEES)
                run.ask(f"Ticket {ticket}: pick an owner in queue {queue}.")
                run.decide(_text(rng, cat.RATIONALES, "route_ticket_queue", ticket=ticket, queue=queue,
                                 assignee=assignee))
                gate = run.gate((), run.mode("route_ticket_queue"), "low")
                if gate is not None:
                    _assign(run, w, ticket, assignee, gate.mode)


def _reconcile_invoice(run: Run, w: World) -> None:
    """Finance: match an invoice to payments; credit an overpayment to the account."""
    rng = run.rng
    invoice = w.pick(w.invoices, rng)
    account = w.invoice_account[invoice]
    currency, total = w.currency[account], w.total[invoice]
    overpaid = rng.random() < 0.6
    amount = round(rng.uniform(2, 120), 2) if overpaid else 0.0
    risk = "high" if amount > 100 else "medium"
    with run.workflow("reconcile_invoice", ("invoice", invoice), [("account", account)]):
        run.ask(_text(rng, cat.COMPLAINTS, "reconcile_invoice", invoice=invoice, account=account))
        _get_invoice(run, w, invoice, "open")
        run.tool("get_payments", {"invoice_id": invoice}, {"paid": _money(total + amount)},
                 [f"invoice:{invoice}", f"account:{account}"])
        run.tool("get_ledger", {"account_id": account, "period": "current"},
                 {"entries": rng.randint(3, 40), "balance": _money(-amount)}, [f"account:{account}"])
        run.decide(_text(rng, cat.RATIONALES, "reconcile_invoice", 0 if overpaid else 1, amount=_money(amount),
                         currency=currency))
        gate = run.gate(("ledger_balance",), run.mode("reconcile_invoice") if overpaid else "observe", risk)
        if gate is not None and overpaid:
            _credit(run, w, account, (amount, currency), gate.mode, risk)


def _apply_credit(run: Run, w: World) -> None:
    """Finance: compute and apply an account credit after an incident."""
    rng = run.rng
    account = w.pick(w.accounts, rng)
    customer, invoice = rng.choice(w.customers_of[account]), rng.choice(w.invoices_of[account])
    currency, total = w.currency[account], w.total[invoice]
    amount = round(total * rng.uniform(0.05, 0.3), 2)
    risk = "high" if amount > 80 else "medium"
    with run.workflow("apply_credit", ("account", account), [("invoice", invoice), ("customer", customer)]):
        run.ask(_text(rng, cat.COMPLAINTS, "apply_credit", account=account, invoice=invoice))
        run.tool("get_account", {"account_id": account}, {"plan": w.plan[account], "currency": currency},
                 [f"account:{account}", f"customer:{customer}"])
        _get_invoice(run, w, invoice, "paid")
        run.tool("get_incidents", {"account_id": account, "days": 30},
                 {"incidents": rng.randint(1, 3), "hours_down": rng.randint(1, 6)}, [f"account:{account}"])
        run.decide(_text(rng, cat.RATIONALES, "apply_credit", amount=_money(amount), currency=currency))
        proposal = _amount_proposal(amount, round(total * 0.3, 2), currency, "credit")
        gate = run.gate(("credit_limit",), run.mode("apply_credit"), risk, proposal)
        if gate is None:
            return
        _credit(run, w, account, (gate.value, currency), gate.mode, risk)
        _email(run, customer, gate.mode)


def _refund_invoice(run: Run, w: World) -> None:
    """Finance: refund a duplicate or disputed invoice payment."""
    rng = run.rng
    invoice = w.pick(w.invoices, rng)
    account = w.invoice_account[invoice]
    customer = rng.choice(w.customers_of[account])
    currency, total = w.currency[account], w.total[invoice]
    left = round(total - w.refunded[invoice], 2)
    amount = left if rng.random() < 0.5 else round(left * rng.uniform(0.1, 0.6), 2)
    risk = "high" if amount > 150 else "medium"
    with run.workflow("refund_invoice", ("invoice", invoice), [("customer", customer)]):
        run.ask(_text(rng, cat.COMPLAINTS, "refund_invoice", invoice=invoice, customer=customer))
        _get_invoice(run, w, invoice, "paid")
        run.tool("get_payments", {"invoice_id": invoice}, {"payments": 2, "paid": _money(total + amount),
                                                           "refunded": _money(w.refunded[invoice])},
                 [f"invoice:{invoice}", f"customer:{customer}"])
        run.tool("get_ledger", {"account_id": account, "period": "current"}, {"balance": _money(-amount)},
                 [f"account:{account}"])
        if left < 1:
            run.decide(cat.NOTHING_LEFT.format(record=f"Invoice {invoice}", total=_money(total), currency=currency))
            return
        run.decide(_text(rng, cat.RATIONALES, "refund_invoice", amount=_money(amount), currency=currency))
        gate = run.gate(("refund_policy",), run.mode("refund_invoice"), risk, _amount_proposal(amount, left, currency))
        if gate is None:
            return
        _refund(run, w, ("invoice", invoice), (gate.value, currency), gate.mode, risk)
        _email(run, customer, gate.mode)


FLOWS: dict[str, Callable[[Run, World], None]] = {
    "triage_ticket": _triage_ticket,
    "reply_customer": _reply_customer,
    "issue_refund": _issue_refund,
    "change_plan": _change_plan,
    "route_ticket": _route_ticket,
    "update_order": _update_order,
    "route_ticket_queue": _route_ticket_queue,
    "reconcile_invoice": _reconcile_invoice,
    "apply_credit": _apply_credit,
    "refund_invoice": _refund_invoice,
}
