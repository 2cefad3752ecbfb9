"""Printing API answers for people in a terminal (shared by the CLI and the demo)."""

from __future__ import annotations

from rich.console import Console
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

SEVERITY_COLORS = {"critical": "bold red", "error": "red", "warning": "yellow", "info": "blue"}


def add_text_row(table: Table, *cells: object) -> None:
    """A row of plain text: what the API answers (agent names, reasons) is never read as rich markup."""
    table.add_row(*(Text(str(cell)) for cell in cells))


def print_quarantine(console_: Console, page: dict) -> None:
    """The quarantined WAL segments (``GET /api/quarantine``), or that there are none."""
    if not page["items"]:
        console_.print("nothing is quarantined")
        return
    table = Table("segment", "spans", "bytes", "attempts", "quarantined at (UTC)", "reason",
                  title=f"{page['count']} quarantined segment{'s' if page['count'] != 1 else ''}")
    for item in page["items"]:
        add_text_row(table, item["segment"], f"{item['spans']:,}", f"{item['bytes']:,}", item["attempts"],
                     item["quarantined_at"][:19].replace("T", " "), item["reason"])
    console_.print(table)
    console_.print("Fix the cause, then: flightrec wal replay SEGMENT --actor NAME (or --all)", highlight=False)


def print_replayed(console_: Console, items: list[dict]) -> None:
    """What a replay queued for the writer again."""
    if not items:
        console_.print("nothing is quarantined: nothing to replay")
    for item in items:
        spans = f"{item['spans']:,} span{'s' if item['spans'] != 1 else ''}"
        console_.print(Text(f"{item['segment']}: {item['status']} ({spans})"))


def plural(count: int, noun: str) -> str:
    return f"{count:,} {noun}{'' if count == 1 else 's'}"


def flightrec_command() -> str:
    """How to run this very ``flightrec`` from the user's shell, as printed in hints.

    The bare name when PATH finds this executable; otherwise its path (relative to the working
    directory when it is below it, e.g. ``.venv/bin/flightrec``), so a printed command works on a
    machine where the venv is not activated.
    """
    import os
    import shlex
    import shutil
    import sys
    from pathlib import Path

    argv0 = Path(sys.argv[0]) if sys.argv and sys.argv[0] else None
    ours: Path | None = argv0 if argv0 is not None and argv0.name == "flightrec" and argv0.is_file() else None
    if ours is None and (beside := Path(sys.executable).with_name("flightrec")).is_file():
        ours = beside  # run as `python -m flightrec`: the venv's own script
    found = shutil.which("flightrec")
    if ours is None:
        return "flightrec" if found else f"{shlex.quote(sys.executable)} -m flightrec"
    if found and os.path.realpath(found) == os.path.realpath(ours):
        return "flightrec"
    absolute = os.path.abspath(ours)
    relative = os.path.relpath(absolute)
    shown = relative if not relative.startswith("..") else absolute
    return shlex.quote(shown if "/" in shown else f"./{shown}")


# --- systems of record ----------------------------------------------------------------------------

def _lines(values: object) -> str:
    return "\n".join(str(value) for value in values) if isinstance(values, list) and values else "-"


def system_credentials(system: dict) -> str:
    """The credentials' variable and whether the server has it set (never the value)."""
    env = system.get("credentials_env") or ""
    if not env:
        return "-" if system.get("auth", "none") == "none" else "none named"
    return f"{env} ({'set' if system.get('credentials_present') else 'not set on the server'})"


def print_systems(console_: Console, page: dict, command: str = "flightrec", title: str = "") -> None:
    """The registered systems of record (``GET /api/systems``), or how to register one."""
    items = page.get("items") or []
    if not items:
        console_.print(Text("no systems of record are registered: undo calls nothing. Register one: "
                            f"{command} systems register NAME --base-url URL --path /refunds/{{id}}/undo --actor ME"),
                       soft_wrap=True)
        return
    table = Table(title=Text(title or plural(len(items), "system") + " of record undo may call"))
    for name in ("name", "source", "base URL", "auth", "undo paths (POST)", "check paths (GET)", "handlers",
                 "credentials env"):
        table.add_column(name, overflow="fold")
    for system in items:
        source = str(system.get("source", ""))
        if system.get("registered_by"):
            source += f"\nby {system['registered_by']}"
        add_text_row(table, system.get("name", ""), source, system.get("base_url", ""), system.get("auth", "none"),
                     _lines(system.get("paths")), _lines(system.get("read_paths")), _lines(system.get("handlers")),
                     system_credentials(system))
    console_.print(table)
    unset = [system["name"] for system in items if system.get("credentials_env") and not system.get("credentials_present")]
    if unset:
        console_.print(Text(f"Undo cannot call {', '.join(unset)} until the server has its credentials variable set.",
                            style="yellow"), soft_wrap=True)


# --- rollback plans -------------------------------------------------------------------------------

# PlanStep fields with a column of their own; any other field a plan step carries is shown under "more".
_STEP_COLUMNS = {"action_id", "status", "reason", "action", "agent", "time", "risk", "objects", "object", "amount",
                 "currency", "call", "system", "attempts", "finished_at", "risk_reason", "reported_risk", "restored",
                 "check_result"}
STATUS_STYLES = {"reversible": "green", "done": "green", "irreversible": "yellow", "conflicted": "yellow",
                 "already_undone": "dim", "running": "blue", "failed": "red"}
# A step's read-back after its undo ran: the "check" cell, its style, and its word in the tally.
CHECKS = {"yes": ("restored: yes", "green", "restored"), "no": ("restored: no", "bold red", "not restored"),
          "unchecked": ("not checked", "yellow", "not checked")}


def _cell(value: object) -> str:
    import json

    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False, separators=(", ", ": "), default=str)
    return str(value)


def _present(value: object) -> bool:
    return value is not None and value != "" and value != [] and value != {}


def step_objects(step: dict) -> str:
    objects = step.get("objects") or ([step["object"]] if step.get("object") else [])
    return ", ".join(str(ref) for ref in objects) if isinstance(objects, list) else str(objects)


def step_amount(step: dict) -> str:
    amount, currency = step.get("amount"), step.get("currency") or ""
    if isinstance(amount, (int, float)) and not isinstance(amount, bool):
        return f"{amount:,.2f} {currency}".strip() if amount else ""
    return f"{amount} {currency}".strip() if amount else ""


def step_system(step: dict) -> str:
    """The system of record a step's undo calls: the step's own ``system``, else what its call names."""
    from urllib.parse import urlsplit

    if step.get("system"):
        return _cell(step["system"])
    call = step.get("call") or {}
    if not isinstance(call, dict):
        return ""
    if call.get("system"):
        return _cell(call["system"])
    kind, target = call.get("kind", ""), str(call.get("target") or "")
    if kind == "http" and target:
        return urlsplit(target).netloc or target
    if kind == "handler" and target:
        return f"handler {target}"
    return ""


def step_call(step: dict) -> str:
    """What the undo calls, beyond the system column: an operation's name, or an http target's path."""
    from urllib.parse import urlsplit

    call = step.get("call") or {}
    if not isinstance(call, dict) or not call:
        return ""
    if call.get("operation"):
        return _cell(call["operation"])
    if call.get("kind") == "http" and call.get("target"):
        return urlsplit(str(call["target"])).path
    return ""


def step_risk(step: dict) -> str:
    """The risk the operator's policy gives a step, and the agent's own report when it says otherwise."""
    risk, reported = str(step.get("risk") or ""), str(step.get("reported_risk") or "")
    return f"{risk} (agent: {reported})" if reported and reported != risk else risk


def step_check(step: dict) -> str:
    """Whether the undo reads back as restored: yes, no, unchecked (done without a check); '' when not undone (yet)."""
    if step.get("restored") is True:
        return "yes"
    if step.get("restored") is False:
        return "no"
    return "unchecked" if step.get("status") == "done" else ""


def step_why(step: dict) -> str:
    """Why a step has its status: the plan's reason, what undoing it does, or (done) what the read-back found."""
    status, reason = step.get("status", ""), str(step.get("reason") or "")
    if reason:
        return reason
    if status == "done" and step.get("check_result"):
        return f"undone; {step['check_result']}"
    return {
        "reversible": f"can be undone: {step_call(step)}" if step_call(step) else "can be undone: nothing changed it since",
        "done": "undone",
        "running": "being undone",
        "irreversible": "cannot be undone automatically",
        "conflicted": "changed since by someone else",
        "already_undone": "already undone",
    }.get(status, "")


def _step_more(step: dict) -> str:
    # The risk column shows the policy's risk (and the agent's own report where it differs); this says which rule.
    extra = [f"risk: {step['risk_reason']}"] if step.get("risk_reason") else []
    extra += [f"{key.replace('_', ' ')}: {_cell(value)}" for key, value in step.items()
              if key not in _STEP_COLUMNS and _present(value)]
    if step.get("attempts", 0) > 1:
        extra.append(f"attempts: {step['attempts']}")
    return "; ".join(extra)


def _step_cells(step: dict) -> dict[str, Text]:
    status = str(step.get("status", ""))
    return {"time (UTC)": Text(str(step.get("time", ""))[:19].replace("T", " ")),
            "agent": Text(str(step.get("agent", ""))), "action": Text(str(step.get("action", ""))),
            "object(s)": Text(step_objects(step)), "amount": Text(step_amount(step)), "system": Text(step_system(step)),
            "risk": Text(step_risk(step)),
            "status": Text(status.replace("_", " "), style=STATUS_STYLES.get(status, "")),
            "check": Text(*CHECKS[step_check(step)][:2]) if step_check(step) else Text(), "why": Text(step_why(step))}


def _steps_table(title: str, steps: list[dict], more: list[str], with_agent: bool, with_why: bool = True) -> Table:
    """One row per step; only "why" wraps (any further fields under it), so objects, amounts and systems are never cut.

    The "check" column (restored / not restored / unchecked) appears once a step has been undone.
    """
    table = Table(title=Text(title))
    table.add_column("#", no_wrap=True, justify="right")
    with_check = any(step_check(step) for step in steps)
    names = [name for name in _step_cells({}) if (with_agent or name != "agent") and (with_why or name != "why")
             and (with_check or name != "check")]
    for name in names:
        table.add_column(name, no_wrap=name != "why", overflow="fold")
    for number, (step, extra) in enumerate(zip(steps, more), start=1):
        cells = _step_cells(step)
        if extra:
            cells["why"].append(f"\n{extra}", style="dim")
        table.add_row(Text(str(number)), *(cells[name] for name in names))
    return table


def _print_steps_stacked(console_: Console, title: str, steps: list[dict], more: list[str]) -> None:
    console_.print(Text(title, style="bold"))
    for number, (step, extra) in enumerate(zip(steps, more), start=1):
        cells = _step_cells(step)
        grid = Table.grid(padding=(0, 1))
        grid.add_column(no_wrap=True, style="dim")
        grid.add_column(overflow="fold")
        head = Text.assemble(f"{number}. ", cells["action"], " on ", cells["object(s)"] or "-", " · ", cells["status"])
        console_.print(head)
        for name in ("why", "check", "amount", "system", "risk", "agent", "time (UTC)"):
            if cells[name].plain:
                grid.add_row(f"   {name}", cells[name])
        if extra:
            grid.add_row("   more", Text(extra))
        console_.print(grid)


def print_plan(console_: Console, plan: dict, command: str = "flightrec") -> None:
    """An undo plan, one row per step: object(s), amount, system, action, status and why."""
    steps = plan.get("steps") or []
    selector = {key: value for key, value in (plan.get("selector") or {}).items() if _present(value) and key != "last"}
    scope = ", ".join(f"{key} {value}" for key, value in selector.items()) or "the selection"
    if not steps:
        console_.print(Text(f"plan {plan['id']}: nothing to undo: no action that took effect matches {scope}"))
        return
    more = [_step_more(step) for step in steps]
    agents = {str(step.get("agent", "")) for step in steps}
    title = f"plan {plan['id']}: {plan['status']} · {plural(len(steps), 'step')} undoing {scope}"
    with_agent = len(agents) > 1 or not selector.get("agent")
    fixed = Measurement.get(console_, console_.options, _steps_table(title, steps, more, with_agent, False)).maximum
    if console_.width - fixed >= 32:  # the "why" column gets a readable width
        console_.print(_steps_table(title, steps, more, with_agent))
    else:  # a narrow terminal: one block per step rather than cells cut off
        _print_steps_stacked(console_, title, steps, more)
    counts: dict[str, int] = {}
    for step in steps:
        counts[str(step.get("status", ""))] = counts.get(str(step.get("status", "")), 0) + 1
    console_.print(Text(", ".join(f"{count} {status.replace('_', ' ')}" for status, count in counts.items())))
    checks: dict[str, int] = {}
    for step in steps:
        if step_check(step):
            checks[step_check(step)] = checks.get(step_check(step), 0) + 1
    if checks:
        console_.print(Text("read back: " + ", ".join(f"{count} {CHECKS[check][2]}" for check, count in checks.items())))
    if checks.get("no"):
        console_.print(Text(f"{plural(checks['no'], 'step')} undone but not reading back as the undo should "
                            "leave it: look at the system of record (why column)", style="red"), soft_wrap=True)
    plan_id = plan["id"]
    if plan.get("status") in ("ready", "awaiting_approval"):
        runnable = counts.get("reversible", 0) + counts.get("failed", 0)
        then = (f"To undo the {plural(runnable, 'step')} it can: {command} rollback --plan {plan_id} --execute --actor NAME"
                if runnable else "No step can be undone automatically.")
        console_.print(Text(f"Nothing was executed (a dry run). {then}"), soft_wrap=True)
    if plan.get("requires_approval") and not plan.get("approvals") and plan.get("status") == "awaiting_approval":
        console_.print(Text(f"High-risk steps: a second person must approve first: {command} approve {plan_id} --actor NAME"),
                       soft_wrap=True)
    if plan.get("error"):
        console_.print(Text(f"{plan['error']} — fix the cause, then resume: "
                            f"{command} rollback --plan {plan_id} --execute --actor NAME", style="red"), soft_wrap=True)


# --- detector passes in the demo ------------------------------------------------------------------

def _alert_line(console_: Console, label: str, alert: dict) -> None:
    color = SEVERITY_COLORS.get(alert["severity"], "") or "default"
    since = str(alert.get("started_at", ""))[:19].replace("T", " ")
    line = Text.assemble((label, color), f" [{alert['severity']}] {alert['summary']}")
    if label != "FIRED":
        line.append(f" (since {since} UTC)", style="dim")
    console_.print(line)


def print_detection(console_: Console, result: dict, active: list[dict], regression_agent: str | None = None) -> None:
    """What a detector pass found, read against the alerts already raised: never a bare "0 fired"."""
    fired_ids = {alert["id"] for alert in result["fired"]}
    earlier = [alert for alert in active if alert["id"] not in fired_ids]
    firing = [alert for alert in earlier if alert["status"] == "firing"]
    pending = [alert for alert in earlier if alert["status"] == "pending"]
    runs = plural(result["runs"], "run")
    if result["fired"]:
        console_.print(f"A detector pass over {runs} fired {plural(len(result['fired']), 'alert')}:")
        for alert in result["fired"]:
            _alert_line(console_, "FIRED", alert)
        if firing:
            console_.print(f"and {plural(len(firing), 'alert')} already firing:")
    elif firing:
        regressed = regression_agent and any(alert["agent"] == regression_agent for alert in firing)
        head = "the regression is already firing since an earlier pass" if regressed else "nothing new to page"
        console_.print(f"A detector pass over {runs}: {head}; {plural(len(firing), 'alert')} firing:")
    elif not pending:
        console_.print(f"A detector pass over {runs} found nothing out of the usual yet; passes run again while it "
                       "serves, and the alerts page shows what they raise.")
    for alert in firing:
        _alert_line(console_, "FIRING", alert)
    if pending:
        console_.print(f"{plural(len(pending), 'alert')} pending (each fires once it has held for its detector's time):")
        for alert in pending:
            _alert_line(console_, "PENDING", alert)
    for alert in result["resolved"]:
        _alert_line(console_, "RESOLVED", alert)

