"""Narration: an object's spans, time-ordered, into a story of plain sentences.

Deterministic, no I/O, no LLM. Each span kind has one small function that
writes its sentence; retries of one tool call collapse into one step.
"""

from __future__ import annotations

from collections.abc import Callable

from flightrec.stories import text as tx
from flightrec.stories.models import ObjectSummary, Severity, Story, StoryStep
from flightrec.store.models import INGEST_PRINCIPAL, ObjectActivity, ObjectRef, RunFlags, SpanRecord

HUMAN_VERBS = {"approve": "approved", "edit": "edited", "reject": "rejected", "override": "overrode"}
GUARDRAIL_VERBS = {"pass": "passed", "warn": "warned", "block": "blocked"}
RETRY_ATTR = "flightrec.retry.attempt"


def _error_message(span: SpanRecord) -> str:
    for event in span.events:
        if event.name == "exception" and event.attributes.get("exception.message"):
            kind = event.attributes.get("exception.type", "")
            message = event.attributes["exception.message"]
            return tx.shorten(message if not kind or kind in message else f"{kind}: {message}", 160)
    return tx.shorten(span.status_message, 160) if span.status_message else "no reason given"


def _failed(span: SpanRecord) -> bool:
    return span.status_code == "Error"


def _flow(span: SpanRecord) -> str:
    return span.name.replace("_", " ")


def _actor(span: SpanRecord) -> str:
    return span.agent or span.service or "an agent"


def _step(span: SpanRecord, kind: str, sentence: str, severity: Severity = "info", **details: str) -> StoryStep:
    facts = {key: value for key, value in details.items() if value}
    return StoryStep(
        time=span.start_time,
        agent=_actor(span),
        kind=kind,  # type: ignore[arg-type]
        sentence=sentence,
        severity=severity,
        trace_id=span.trace_id,
        span_id=span.span_id,
        details=facts,
    )


def agent_step(span: SpanRecord, _: list[SpanRecord]) -> StoryStep:
    about = tx.records(span.objects) or "its work"
    setup = ", ".join(
        part
        for part in (
            span.model,
            f"prompt {span.prompt_version}" if span.prompt_version else "",
            f"agent version {span.agent_version}" if span.agent_version else "",
        )
        if part
    )
    sentence = f"{_actor(span)} started “{_flow(span)}” on {about}" + (f" ({setup})." if setup else ".")
    severity: Severity = "info"
    if _failed(span):
        sentence += f" The run failed: {_error_message(span)}."
        severity = "critical"
    return _step(
        span, "agent", sentence, severity, flow=span.name, model=span.model, prompt_version=span.prompt_version,
        agent_version=span.agent_version, session=span.session_id,
    )


def llm_step(span: SpanRecord, _: list[SpanRecord]) -> StoryStep:
    model = span.model or "a language model"
    tokens = (
        f" ({span.input_tokens:,} tokens in, {span.output_tokens:,} out)" if span.input_tokens or span.output_tokens else ""
    )
    sentence = f"{_actor(span)} asked {model}{tokens}"
    conclusion, calls = tx.message_text(span.output_text), tx.tool_calls(span.output_text)
    if _failed(span):
        sentence += f", but the call failed: {_error_message(span)}."
    elif conclusion:
        sentence += f", which concluded: “{conclusion}”"
        sentence += "." if not sentence.endswith((".", "!", "?", "”")) else ""
    elif calls:
        sentence += f", which chose to call {tx.join_words(calls)}."
    else:
        sentence += "."
    return _step(
        span, "llm", sentence, "warning" if _failed(span) else "info", model=span.model,
        prompt_version=span.prompt_version, input_tokens=str(span.input_tokens or ""),
        output_tokens=str(span.output_tokens or ""),
        cost_usd=tx.usd(span.cost_usd, span.cost_known, span.model) if span.cost_usd or not span.cost_known else "",
        input=tx.message_text(span.input_text),
    )


def tool_step(span: SpanRecord, attempts: list[SpanRecord]) -> StoryStep:
    last = attempts[-1]
    tool = span.tool or span.name
    arguments = tx.describe_fields(tx.call_payload(span.input_text))
    sentence = f"{_actor(span)} called {tool}" + (f" with {arguments}" if arguments else "")
    read = sorted({ref for attempt in attempts for ref in attempt.inputs})
    if read:
        sentence += f", reading {tx.records(read)}"
    failures = sum(1 for attempt in attempts if _failed(attempt))
    severity: Severity = "info"
    if _failed(last):
        retried = len(attempts) - 1
        sentence += (
            f"; retried {tx.count(retried, 'time')}, then failed: {_error_message(last)}."
            if retried
            else f", but it failed: {_error_message(last)}."
        )
        severity = "critical" if retried else "warning"
    else:
        result = tx.describe_fields(tx.call_payload(last.output_text))
        if failures:
            sentence += f"; it failed {tx.count(failures, 'time')} ({_error_message(attempts[0])}) and succeeded on retry"
            severity = "notice"
        sentence += f", and got {result}." if result else "."
    return _step(
        span, "tool", sentence, severity, tool=tool, arguments=arguments, attempts=str(len(attempts)),
        based_on=tx.records(read), result="" if _failed(last) else tx.describe_fields(tx.call_payload(last.output_text)),
    )


def retrieval_step(span: SpanRecord, _: list[SpanRecord]) -> StoryStep:
    what = tx.records(span.inputs) or span.name
    sentence = f"{_actor(span)} retrieved {what}."
    if _failed(span):
        sentence = f"{_actor(span)} tried to retrieve {what}, but it failed: {_error_message(span)}."
    return _step(span, "retrieval", sentence, "warning" if _failed(span) else "info", based_on=tx.records(span.inputs))


def guardrail_step(span: SpanRecord, _: list[SpanRecord]) -> StoryStep:
    name = span.attributes.get("flightrec.guardrail.name") or span.name
    verdict = span.guardrail_verdict
    reason = span.attributes.get("flightrec.guardrail.reason", "")
    verb = GUARDRAIL_VERBS.get(verdict, "checked")
    sentence = f"The {name.replace('_', ' ')} guardrail {verb}" + (f": {tx.shorten(reason, 160)}." if reason else ".")
    severity: Severity = {"block": "warning", "warn": "notice"}.get(verdict, "info")  # type: ignore[assignment]
    return _step(span, "guardrail", sentence, severity, guardrail=name, verdict=verdict, reason=reason)


def reporter(span: SpanRecord) -> str:
    """Who reported a span: its service, and the token it was sent with where the collector knows it."""
    service = span.service or "the agent"
    sender = span.resource_attributes.get(INGEST_PRINCIPAL, "")
    return f"{service}, sent with {sender}'s token" if sender else service


def human_step(span: SpanRecord, _: list[SpanRecord]) -> StoryStep:
    actor = span.attributes.get("flightrec.human.actor") or "a person"
    decision = span.human_decision
    reason = span.attributes.get("flightrec.human.reason", "")
    verb = HUMAN_VERBS.get(decision, "reviewed")
    field = span.attributes.get("flightrec.human.field", "")
    before, after = span.attributes.get("flightrec.human.before", ""), span.attributes.get("flightrec.human.after", "")
    change = f" ({field + ' ' if field else ''}{tx.shorten(before, 60)} → {tx.shorten(after, 60)})" if before and after else ""
    # A person's decision arrives as the agent's own telemetry: the story says whose word it is.
    source = reporter(span)
    sentence = (f"{actor} {verb} the agent's proposal{change}" + (f": “{tx.shorten(reason, 160)}”" if reason else "")
                + f" (as reported by {source}).")
    severity: Severity = "warning" if decision in ("reject", "override") else "notice"
    return _step(span, "human", sentence, severity, person=actor, decision=decision, reason=reason, field=field,
                 before=before, after=after, reported_by=source)


def action_step(span: SpanRecord, _: list[SpanRecord]) -> StoryStep:
    base, past = tx.action_phrase(span.action_name or span.name)
    amount = f" of {tx.money(span.action_amount, span.action_currency)}" if span.action_amount else ""
    on = f" for {tx.records(span.objects)}" if span.objects else ""
    system = f" in {span.action_system}" if span.action_system else ""
    what = f"{amount}{on}{system}"
    actor = _actor(span)
    severity: Severity = "notice" if span.action_risk == "high" else "info"
    if _failed(span):
        sentence = f"{actor} tried to {base}{what}, but it failed: {_error_message(span)}."
        severity = "critical"
    elif span.mode == "observe":
        sentence = f"{actor} would have {past}{what} (observe mode: nothing was changed)."
    elif span.mode == "assist":
        sentence = f"{actor} suggested to {base}{what}, for a person to carry out."
    else:
        sentence = f"{actor} {past}{what}."
    reversible = "yes" if span.attributes.get("flightrec.undo.kind") else "no"
    return _step(
        span, "action", sentence, severity, action=span.action_name, system=span.action_system, risk=span.action_risk,
        mode=span.mode or "auto", amount=tx.money(span.action_amount, span.action_currency) if span.action_amount else "",
        reversible=reversible,
    )


def undo_step(span: SpanRecord, _: list[SpanRecord]) -> StoryStep:
    person = span.attributes.get("flightrec.human.actor") or "a person"
    base, _past = tx.action_phrase(span.action_name or span.name.removeprefix("undo "))
    whose = f"{span.agent}'s" if span.agent and span.agent != span.service else "the"
    plan = span.attributes.get("flightrec.rollback.plan", "")
    amount = span.attributes.get("flightrec.rollback.amount", "")
    what = f"{whose} action to {base}" + (f" ({amount})" if amount else "")
    if _failed(span):
        sentence = f"{person} tried to undo {what}, but the undo failed: {_error_message(span)}."
        return _step(span, "undo", sentence, "critical", person=person, plan=plan)
    return _step(span, "undo", f"{person} undid {what} with a rollback plan.", "notice", person=person, plan=plan,
                 undone_action=span.attributes.get("flightrec.undo.of", ""))


def other_step(span: SpanRecord, _: list[SpanRecord]) -> StoryStep:
    if _failed(span):
        return _step(span, "other", f"{_actor(span)} ran {span.name}, which failed: {_error_message(span)}.", "warning")
    return _step(span, "other", f"{_actor(span)} ran {span.name}.")


STEP_WRITERS: dict[str, Callable[[SpanRecord, list[SpanRecord]], StoryStep]] = {
    "agent": agent_step,
    "llm": llm_step,
    "tool": tool_step,
    "retrieval": retrieval_step,
    "guardrail": guardrail_step,
    "human": human_step,
    "action": action_step,
    "undo": undo_step,
    "other": other_step,
}


def inherit_agents(spans: list[SpanRecord]) -> list[SpanRecord]:
    """Credit each span that names no agent of its own to the agent of its nearest agent ancestor.

    An LLM or tool call made inside ``invoke_agent`` often names no agent itself
    (only its service); the agent span above it does. A span whose agent differs from its
    service named that agent itself (``gen_ai.agent.name=refund_agent`` under another
    service's agent span) and keeps it.
    """
    by_key = {(span.trace_id, span.span_id): span for span in spans}
    # A span with no agent above it (a workflow root: traceloop's @workflow, invoke_workflow) is
    # a flow, not an agent: it is credited to the first agent that ran inside its trace.
    inner: dict[str, str] = {}
    for span in spans:
        if span.operation == "agent" and span.agent and span.trace_id not in inner:
            inner[span.trace_id] = span.agent
    resolved: list[SpanRecord] = []
    for span in spans:
        if span.agent and span.agent != span.service:  # the span names its own agent: that one wins
            resolved.append(span)
            continue
        node, seen = span, 0
        while node.operation != "agent" and node.parent_span_id and seen < 64:
            parent = by_key.get((node.trace_id, node.parent_span_id))
            if parent is None:
                break
            node, seen = parent, seen + 1
        agent = node.agent if node.operation == "agent" and node.agent else inner.get(span.trace_id, span.agent)
        resolved.append(span if agent == span.agent else span.model_copy(update={"agent": agent}))
    return resolved


def _tool_key(span: SpanRecord) -> tuple[str, str, str, str]:
    return (span.trace_id, span.parent_span_id, span.tool or span.name, span.attributes.get("gen_ai.tool.call.arguments", ""))


def group_attempts(spans: list[SpanRecord]) -> list[list[SpanRecord]]:
    """Spans as groups: a tool call and its retries (same call, marked or after a failure) are one group."""
    groups: list[list[SpanRecord]] = []
    open_tools: dict[tuple[str, str, str, str], list[SpanRecord]] = {}
    for span in spans:
        if span.operation == "tool":
            key = _tool_key(span)
            previous = open_tools.get(key)
            if previous is not None and (RETRY_ATTR in span.attributes or _failed(previous[-1])):
                previous.append(span)
                continue
            group = [span]
            open_tools[key] = group
            groups.append(group)
        else:
            groups.append([span])
    return groups


def run_flags(spans: list[SpanRecord]) -> RunFlags:
    """The same facts the store computes per trace, from spans in hand."""
    return RunFlags(
        failed=any(_failed(span) and (not span.parent_span_id or span.operation == "action") for span in spans),
        blocked=any(span.guardrail_verdict == "block" for span in spans),
        overridden=any(span.human_decision in ("reject", "override") for span in spans),
        assisted=any(span.operation == "action" and span.mode == "assist" for span in spans),
        reviewed=any(span.operation == "human" for span in spans),
    )


def status_of(flags: RunFlags) -> str:
    """How one run ended: failed, blocked, overridden, pending (a suggestion nobody reviewed) or completed."""
    if flags.failed:
        return "failed"
    if flags.blocked:
        return "blocked"
    if flags.overridden:
        return "overridden"
    if flags.assisted and not flags.reviewed:
        return "pending"
    return "completed"


def _summary(obj: ObjectRef, spans: list[SpanRecord], steps: list[StoryStep], traces: list[str]) -> str:
    agents = sorted({_actor(span) for span in spans})
    first, last = spans[0].start_time, spans[-1].start_time
    when = f"on {first:%Y-%m-%d} between {first:%H:%M} and {last:%H:%M} UTC" if first.date() == last.date() else (
        f"between {first:%Y-%m-%d %H:%M} and {last:%Y-%m-%d %H:%M} UTC"
    )
    parts = [
        f"{obj.type.capitalize()} {obj.id} was handled by {tx.count(len(agents), 'agent')} "
        f"({tx.join_words(agents)}) in {tx.count(len(traces), 'run')} {when}."
    ]
    actions = [span for span in spans if span.operation == "action" and not _failed(span)]
    done = [span for span in actions if span.mode not in ("observe", "assist")]
    suggested = [span for span in actions if span.mode == "assist"]
    observed = [span for span in actions if span.mode == "observe"]
    clauses = []
    if done:
        names = tx.join_words(sorted({tx.action_phrase(span.action_name)[1] for span in done}))
        clauses.append(f"took {tx.count(len(done), 'action')} themselves ({names})")
    if suggested:
        clauses.append(f"suggested {tx.count(len(suggested), 'action')} for people to carry out")
    if observed:
        clauses.append(f"would have taken {tx.count(len(observed), 'more action')} in observe mode")
    if clauses:
        parts.append(f"The agents {tx.join_words(clauses)}.")
    moved = sum(span.action_amount for span in done if span.action_amount)
    currencies = sorted({span.action_currency for span in done if span.action_amount})
    if moved and len(currencies) == 1:
        parts.append(f"Money moved by agents: {tx.money(moved, currencies[0])}.")
    humans = [span for span in spans if span.operation == "human"]
    if humans:
        decisions = [
            f"{span.attributes.get('flightrec.human.actor') or 'a person'} {HUMAN_VERBS.get(span.human_decision, 'reviewed')}"
            for span in humans
        ]
        parts.append(f"People stepped in {tx.count(len(humans), 'time')}: {tx.join_words(decisions)}.")
    blocks = sum(1 for span in spans if span.guardrail_verdict == "block")
    if blocks:
        parts.append(f"Guardrails blocked {tx.count(blocks, 'step')}.")
    failed_steps = [step for step in steps if step.severity == "critical" or (step.severity == "warning" and "fail" in step.sentence)]
    recovered = sum(1 for step in steps if "succeeded on retry" in step.sentence)
    if failed_steps or recovered:
        text = f"{tx.count(len(failed_steps), 'step')} failed" if failed_steps else "No step failed for good"
        parts.append(text + (f"; {recovered} recovered on retry." if recovered else "."))
    return " ".join(parts)


def _undo_summary(spans: list[SpanRecord]) -> str:
    """What rollbacks did to this object's actions: how many undone, which, by whom, money returned, failures."""
    undos = [span for span in spans if span.operation == "undo"]
    if not undos:
        return ""
    done = {span.attributes.get("flightrec.undo.of", ""): span for span in undos if not _failed(span)}
    failed = {span.attributes.get("flightrec.undo.of", "") for span in undos if _failed(span)} - set(done)
    parts = []
    if done:
        people = tx.join_words(sorted({span.attributes.get("flightrec.human.actor") or "a person" for span in done.values()}))
        names = tx.join_words(sorted({tx.action_phrase(span.action_name or span.name.removeprefix("undo "))[1]
                                      for span in done.values()}))
        plans = sorted({span.attributes.get("flightrec.rollback.plan", "") for span in done.values()} - {""})
        actions = {f"{span.trace_id}:{span.span_id}": span for span in spans if span.operation == "action"}
        undone = [actions[key] for key in done if key in actions]
        returned = sum(span.action_amount for span in undone if span.action_amount)
        currencies = sorted({span.action_currency for span in undone if span.action_amount})
        money = f", taking back {tx.money(returned, currencies[0])}" if returned and len(currencies) == 1 else ""
        with_plans = f" with {'plan' if len(plans) == 1 else 'plans'} {tx.join_words(plans)}" if plans else ""
        parts.append(f"{people} undid {tx.count(len(done), 'action')} ({names}){with_plans}{money}.")
    if failed:
        parts.append(f"{tx.count(len(failed), 'undo')} failed and left {'its action' if len(failed) == 1 else 'their actions'} "
                     "in place.")
    return "Rollback: " + " ".join(parts)


def _outcome(by_trace: dict[str, list[SpanRecord]], last_trace: str) -> tuple[str, str]:
    statuses = {trace: status_of(run_flags(spans)) for trace, spans in by_trace.items()}
    spans = by_trace[last_trace]
    root = next((span for span in spans if span.operation == "agent"), spans[0])
    status = statuses[last_trace]
    words = {
        "failed": "failed",
        "blocked": "was stopped by a guardrail",
        "overridden": "was overridden by a person",
        "pending": "left a suggestion waiting for a person",
        "completed": "completed",
    }
    text = f"The last run (“{_flow(root)}” by {_actor(root)} at {root.start_time:%Y-%m-%d %H:%M} UTC) {words[status]}."
    others = [value for trace, value in statuses.items() if trace != last_trace]
    if others:
        tally = {value: others.count(value) for value in sorted(set(others))}
        text += " Earlier runs: " + ", ".join(f"{n} {value}" for value, n in tally.items()) + "."
    return text, status


def _mark_undone(steps: list[StoryStep], spans: list[SpanRecord], verified: set[str] | None) -> None:
    """An action later undone says so, naming who undid it and when.

    With ``verified`` (the actions this server's own rollback plans undid), an undo record that
    arrived as ordinary telemetry for any other action is a claim: the step says it was claimed
    and is not counted as undone.
    """
    undos = {
        span.attributes.get("flightrec.undo.of", ""): span
        for span in spans
        if span.operation == "undo" and not _failed(span)
    }
    for step in steps:
        undo = undos.get(f"{step.trace_id}:{step.span_id}") if step.kind == "action" else None
        if undo is not None and verified is not None and f"{step.trace_id}:{step.span_id}" not in verified:
            step.sentence += " Telemetry claims it was undone, but no rollback of this server undid it."
            step.details["undo_claimed"] = "unverified"
        elif undo is not None:
            person = undo.attributes.get("flightrec.human.actor") or "a person"
            step.sentence += f" It was later undone by {person} at {undo.start_time:%Y-%m-%d %H:%M} UTC."
            step.details["undone_by"] = person


def _foreign_claims(spans: list[SpanRecord], speakers: dict[str, set[str]] | None) -> dict[str, str]:
    """``trace:span`` -> why: spans sent with a token that does not speak for the agent they name."""
    if speakers is None:
        return {}
    out = {}
    for span in spans:
        sender = span.resource_attributes.get(INGEST_PRINCIPAL, "")
        if sender and span.agent not in speakers.get(sender, set()):
            out[f"{span.trace_id}:{span.span_id}"] = f"sent with {sender}'s token, which does not speak for {span.agent}"
    return out


def _mark_foreign(steps: list[StoryStep], foreign: dict[str, str]) -> None:
    for step in steps:
        why = foreign.get(f"{step.trace_id}:{step.span_id}")
        if why:
            step.sentence += f" Unverified: {why}."
            step.details["claim"] = why
            step.severity = "warning"


def narrate(obj: ObjectRef, spans: list[SpanRecord], runs_total: int | None = None,
            verified_undos: set[str] | None = None, speakers: dict[str, set[str]] | None = None) -> Story:
    """The story of one object from its spans: steps run by run, runs in the order they started.

    ``verified_undos``: the ``trace:span`` ids of actions this server's rollbacks undid; None trusts
    every undo record among the spans (for callers with no rollback record to check against).
    ``speakers``: the agent (and service) names each ingest token named on the spans speaks for;
    a span claiming another agent is shown as unverified (spans kept by ``foreign_spans = mark``).
    """
    if not spans:
        raise ValueError(f"no spans to narrate for {obj}")
    spans = inherit_agents(sorted(spans, key=lambda span: (span.start_time, span.trace_id, span.span_id)))
    foreign = _foreign_claims(spans, speakers)  # by the agent the story credits (a child of a foreign agent's span too)
    by_trace: dict[str, list[SpanRecord]] = {}
    for span in spans:
        by_trace.setdefault(span.trace_id, []).append(span)
    traces = sorted(by_trace, key=lambda trace: by_trace[trace][0].start_time)
    # Run by run (in the order they started), each run's steps in time order: runs that
    # overlap in time (a human review taking minutes) still read as one account each.
    steps = [
        STEP_WRITERS.get(group[0].operation, other_step)(group[0], group)
        for trace in traces
        for group in group_attempts(by_trace[trace])
    ]
    _mark_undone(steps, spans, verified_undos)
    _mark_foreign(steps, foreign)
    work = [trace for trace in traces if any(span.operation != "undo" for span in by_trace[trace])] or traces
    outcome, status = _outcome(
        {trace: by_trace[trace] for trace in work}, max(work, key=lambda trace: by_trace[trace][-1].end_time)
    )
    if any(step.details.get("undone_by") for step in steps):
        undone = sum(1 for step in steps if step.details.get("undone_by"))
        outcome += f" {tx.count(undone, 'action')} {'was' if undone == 1 else 'were'} later undone by a rollback."
        if status == "completed":
            status = "undone"
    summary = _summary(obj, [span for span in spans if span.operation != "undo"] or spans, steps, work)
    undo_summary = _undo_summary(spans)
    if undo_summary:
        summary += " " + undo_summary
    runs_total = max(runs_total or 0, len(traces))
    if runs_total > len(traces):
        summary = f"Showing the latest {len(traces)} of {runs_total:,} runs. " + summary
    return Story(
        object=obj,
        summary=summary,
        steps=steps,
        outcome=outcome,
        status=status,
        traces=traces,
        runs_total=runs_total,
        agents=sorted({_actor(span) for span in spans}),
        first_seen=spans[0].start_time,
        last_seen=max(span.end_time for span in spans),
    )


def object_summary(activity: ObjectActivity) -> ObjectSummary:
    """A list entry for an object, its status told the same way as in its story."""
    return ObjectSummary(
        type=activity.type,
        id=activity.id,
        last_seen=activity.last_seen,
        traces=activity.traces,
        agents=activity.agents,
        last_status=status_of(activity.last_run),
    )
