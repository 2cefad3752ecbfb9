"""Rules as data (issue 15, deliverables 1 and 2): every kind of rule on stored spans, history
re-derived after a change, bad files refused with the line and the reason, rule text that tries
to break out of the SQL it is compiled into, and the server's rules routes and CLI end to end."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

from flightrec.cli import app
from flightrec.collector.rows import RowBuilder
from flightrec.store import ObjectRef, Store
from flightrec.store.rules import FieldRule, LinkRule, RuleSet, RulesError, parse_rules
from tests.conftest import wait_for
from tests.otlp_helpers import make_request, make_span

ISSUE_EXAMPLE = textwrap.dedent('''
    [[links]]
    attribute = "business.object.id"
    type_from = "business.object.type"
    rename = { support_ticket = "ticket" }

    [[links]]
    attribute = "session.id"
    pattern = '^(?P<type>ticket|order|invoice):(?P<id>.+)$'

    [[links]]
    attribute = "traceloop.association.properties.ticket_id"
    type = "ticket"

    [[links]]
    attribute = "gen_ai.conversation.id"
    pattern = '^conv-(?P<id>.+)$'
    type = "ticket"

    [[links]]
    attribute = "metadata"
    json_path = "case.id"
    type = "case"

    [[links]]
    attribute = "crm.refs"
    split = true
    pattern = '^(?P<type>[a-z]+)/(?P<id>.+)$'

    [[links]]
    attribute = "deployment.account"
    source = "resource"
    type = "account"

    [[fields]]
    field = "guardrail_verdict"
    attribute = "guardrail.decision"
    values = { allow = "pass", deny = "block" }

    [[fields]]
    field = "action_name"
    attribute = "agent.action.name"

    [[fields]]
    field = "operation"
    attribute = "agent.action.name"
    value = "action"

    [[fields]]
    field = "action_amount"
    attribute = "agent.action.amount"
''')


@pytest.fixture
def rule_store(store: Store) -> Store:
    """conftest's store: a fresh database with the built-in rules installed."""
    return store


def put(store: Store, attrs: dict, resource: dict | None = None) -> str:
    span = make_span("step", attrs)
    store.insert_batch(RowBuilder().request_rows(make_request([span], resource or {"service.name": "svc"})),
                       os.urandom(8).hex())
    return span.span_id.hex()


def linked(store: Store, ref: str) -> set[str]:
    return {span.span_id for span in store.object_spans(obj=ObjectRef.parse(ref))}


def test_the_issue_example_parses_user_rules_first_with_lines() -> None:
    rules = parse_rules(ISSUE_EXAMPLE, "rules.toml")
    assert [rule.attribute for rule in rules.links][:2] == ["business.object.id", "session.id"]
    assert rules.links[0].line == 2 and rules.links[0].rename == {"support_ticket": "ticket"}
    assert all(rule.origin == "user" for rule in (*rules.links, *rules.fields))
    assert rules.links[1].groups == {"type": 1, "id": 2}


def test_every_kind_of_link_and_field_rule_on_stored_spans(rule_store: Store) -> None:
    store = rule_store
    store.meaning.install(parse_rules(ISSUE_EXAMPLE), "default")
    typed = put(store, {"business.object.type": "Support_Ticket", "business.object.id": " T-1 "})
    pattern = put(store, {"session.id": "order:O-9"})
    no_match = put(store, {"session.id": "ticket-without-colon"})
    association = put(store, {"traceloop.association.properties.ticket_id": "T-2"})
    conversation = put(store, {"gen_ai.conversation.id": "conv-T-3"})
    meta = put(store, {"metadata": '{"case": {"id": 77}, "tier": 2}'})
    listed = put(store, {"crm.refs": '["invoice/INV-1", "junk", "order/O-2"]'})
    commas = put(store, {"crm.refs": "invoice/INV-3, order/O-4"})
    from_resource = put(store, {}, {"service.name": "svc", "deployment.account": "ACC-5"})
    assert linked(store, "ticket:T-1") == {typed}
    assert linked(store, "order:O-9") == {pattern}
    assert no_match not in linked(store, "ticket:ticket-without-colon")
    assert linked(store, "ticket:T-2") == {association} and linked(store, "ticket:T-3") == {conversation}
    assert linked(store, "case:77") == {meta}
    assert linked(store, "invoice:INV-1") == {listed} and linked(store, "order:O-2") == {listed}
    assert linked(store, "invoice:INV-3") == {commas} and linked(store, "order:O-4") == {commas}
    assert linked(store, "account:ACC-5") == {from_resource}

    guard = put(store, {"guardrail.decision": "DENY"})
    allowed = put(store, {"guardrail.decision": "allow"})
    unknown = put(store, {"guardrail.decision": "maybe"})
    action = put(store, {"agent.action.name": "refund.issue", "agent.action.amount": "12.5"})
    rows = {s: store.engine.query("t", f"SELECT GuardrailVerdict, Operation, ActionName, ActionAmount FROM "
                                       f"{store.db}.otel_traces WHERE SpanId = {{s:String}}", {"s": s})[0]
            for s in (guard, allowed, unknown, action)}
    assert rows[guard][0] == "block" and rows[allowed][0] == "pass" and rows[unknown][0] == ""
    assert rows[action][1:] == ("action", "refund.issue", 12.5)


def test_changing_the_rules_re_derives_history_and_keeps_manual_links(rule_store: Store) -> None:
    store = rule_store
    before = put(store, {"crm.case": "C-1", "gen_ai.agent.name": "triage"})
    also = put(store, {"crm.case": "C-2"})
    assert linked(store, "case:C-1") == set()
    span_id, start_ns, tenant, agent = store.runs.span_of(trace_id=_trace_of(store, also))
    store.runs.add_manual_link(object_type="case", object_id="C-9", trace_id=_trace_of(store, also),
                               span_id=span_id, start_ns=start_ns, tenant=tenant, agent=agent)
    state = store.meaning.state()
    assert state is not None and not state.stale

    rules = RuleSet(links=[LinkRule(attribute="crm.case", type="case")],
                    fields=[FieldRule(field="agent", attribute="crm.owner")])
    store.meaning.install(rules, "default")
    assert store.meaning.state().stale  # the stored rows were derived with other rules
    seen: list[tuple[int, int]] = []
    assert store.meaning.rederive(rules, "default", lambda done, total: seen.append((done, total))) == 2
    assert seen and seen[-1][0] == seen[-1][1] and not store.meaning.state().stale
    assert linked(store, "case:C-1") == {before} and linked(store, "case:C-2") == {also}
    after = put(store, {"crm.case": "C-3", "crm.owner": "case_bot"})  # new rows: the new rules at insert
    assert linked(store, "case:C-3") == {after}
    assert store.trace_spans(trace_id=_trace_of(store, after))[0].agent == "case_bot"

    store.meaning.rederive(RuleSet(), "default")  # the rule removed: its links go, the manual one stays
    assert linked(store, "case:C-1") == set() and linked(store, "case:C-3") == set()
    assert linked(store, "case:C-9") == {also}


def _trace_of(store: Store, span_id: str) -> str:
    return store.engine.query("t", f"SELECT TraceId FROM {store.db}.otel_traces WHERE SpanId = {{s:String}}",
                              {"s": span_id})[0][0]


@pytest.mark.parametrize(
    ("text", "line", "reason"),
    [
        ("[[links]]\nattribute = \"a\"\ntype = \"ticket\"\n[[links]\n", 4, "not valid TOML"),
        ("[[links]]\nattribute = \"a\"\n", 1, "exactly one of 'type', 'type_from'"),
        ("\n[[links]]\nattribute = \"a\"\ntype = \"ticket\"\npattern = '^x$'\n", 5, "named group (?P<id>"),
        ("[[links]]\nattribute = \"a\"\npattern = '^(?P<id>(x$'\ntype = \"t\"\n", 3, "does not compile"),
        ("[[links]]\nattribute = \"a\"\ntype = \"Ticket Type\"\n", 3, "must be lowercase"),
        ("[[links]]\nattribute = \"a\"\ntype = \"t\"\ncolour = \"red\"\n", 4, "Extra inputs are not permitted"),
        ("[[fields]]\nfield = \"mood\"\nattribute = \"a\"\n", 2, "unknown field 'mood'"),
        ("[[fields]]\nfield = \"guardrail_verdict\"\nattribute = \"g\"\nvalues = { ok = \"fine\" }\n", 1,
         "guardrail_verdict takes block, pass, warn; not fine"),
        ("[links]\nattribute = \"a\"\n", None, "must be an array of tables"),
        ("[[rules]]\nx = 1\n", None, "unknown table(s) rules"),
    ],
)
def test_a_bad_rules_file_is_refused_with_the_line_and_the_reason(tmp_path: Path, text: str, line: int | None,
                                                                  reason: str) -> None:
    with pytest.raises(RulesError) as caught:
        parse_rules(text, "bad.toml")
    assert (line, True) in [(found, reason in message) for found, message in caught.value.problems], \
        caught.value.problems
    path = tmp_path / "bad.toml"
    path.write_text(text)
    result = CliRunner().invoke(app, ["rules", "check", str(path), "--api", "http://127.0.0.1:9"])
    assert result.exit_code == 1
    # rich wraps at 80 columns, wherever the tmp path's length puts the break (a space or none): compare unspaced
    said = "".join(result.output.split())
    assert f"bad.toml:{line or '?'}:" in said and "".join(reason.split("(")[0][:20].split()) in said


def test_a_pattern_python_accepts_but_the_engine_refuses_names_its_line(rule_store: Store) -> None:
    rules = parse_rules("[[links]]\nattribute = \"s\"\ntype = \"t\"\npattern = '^(?P<id>x)(?=y)'\n")
    [(line, reason)] = rule_store.meaning.check_patterns(rules)
    assert line == 1 and "RE2" in reason


def test_rule_text_cannot_break_out_of_the_compiled_sql(rule_store: Store) -> None:
    store = rule_store
    hostile = "x') , 1) ; DROP TABLE otel_traces; --\\'"
    rules = RuleSet(
        links=[LinkRule(attribute=hostile, type="ticket"),
               LinkRule(attribute="q", pattern="^(?P<id>[^']+)'\\\\$", type="quote")],
        fields=[FieldRule(field="agent", attribute="who", values={"a'b": "it's \\ me\n"})],
    )
    store.meaning.install(rules, "o'hare\\")
    span = put(store, {hostile: "T-'1", "q": "Q9'\\", "who": "A'B"})
    [row] = store.trace_spans(trace_id=_trace_of(store, span))
    assert linked(store, "ticket:T-'1") == {span} and linked(store, "quote:Q9") == {span}
    assert row.agent == "it's \\ me\n" and row.tenant == "o'hare\\"
    assert store.stats().spans == 1  # the table is still there


def test_rules_check_previews_counts_on_the_stored_spans(rule_store: Store, tmp_path: Path) -> None:
    store = rule_store
    for index in range(3):
        put(store, {"crm.case": f"C-{index % 2}"})
    put(store, {"guardrail.decision": "deny"})
    previews = store.meaning.preview(parse_rules(
        "[[links]]\nattribute = \"crm.case\"\ntype = \"case\"\n"
        "[[fields]]\nfield = \"guardrail_verdict\"\nattribute = \"guardrail.decision\"\nvalues = { deny = \"block\" }\n"))
    assert [(p.kind, p.line, p.spans, p.objects) for p in previews] == [("link", 1, 3, 2), ("field", 4, 1, 0)]
    assert sorted(previews[0].examples) == ["case:C-0", "case:C-1"]


def test_serve_with_a_rules_file_links_rule_only_spans_and_re_derives_after_a_change(make_server, tmp_path: Path
                                                                                     ) -> None:
    rules = tmp_path / "rules.toml"
    rules.write_text('[[links]]\nattribute = "crm.case"\ntype = "case"\n')
    server = make_server(args=["--rules", str(rules)])
    spans = [make_span("run", {"crm.case": "C-1", "crm.ticket": "T-1", "gen_ai.agent.name": "triage"})]
    with server.client() as client:
        body = make_request(spans, {"service.name": "svc"}).SerializeToString()
        assert client.post("/v1/traces", content=body,
                           headers={"content-type": "application/x-protobuf"}).status_code == 200
        wait_for(lambda: client.get("/api/objects/case/C-1/story").status_code == 200, 30, "rule-linked story")
        in_force = client.get("/api/rules").json()
        assert in_force["links"][0] == {**in_force["links"][0], "attribute": "crm.case", "origin": "user"}
        assert in_force["user_rules"] == 1 and in_force["links"][-1]["origin"] == "builtin"
        assert client.get("/api/objects/ticket/T-1/story").status_code == 404

        rules.write_text('[[links]]\nattribute = "crm.ticket"\ntype = "ticket"\n')
        result = CliRunner().invoke(app, ["rules", "apply", "--api", server.url])
        assert result.exit_code == 0, result.output
        assert "re-derived 1 stored spans" in result.output
        assert client.get("/api/objects/ticket/T-1/story").status_code == 200
        assert client.get("/api/objects/case/C-1/story").status_code == 404
        applied = [e for e in client.get("/api/audit").json()["items"] if e["act"] == "rules.apply"]
        assert len(applied) == 1 and applied[0]["details"]["user_rules"] == "1", applied

        rules.write_text('[[links]]\nattribute = "x"\n')
        refused = client.post("/api/rules/apply")
        assert refused.status_code == 422 and "rules.toml:1" in refused.json()["detail"]
        assert [e["act"] for e in client.get("/api/audit").json()["items"]].count("rules.apply") == 1
        checked = client.post("/api/rules/check", content=b'[[links]]\nattribute = "crm.ticket"\ntype = "ticket"\n',
                              headers={"content-type": "text/plain"}).json()
        assert checked["valid"] and checked["previews"][0]["spans"] == 1


def test_a_rules_file_with_too_many_rules_is_refused_at_the_first_extra_one() -> None:
    text = "".join(f'[[links]]\nattribute = "a{index}"\ntype = "t"\n' for index in range(101))
    with pytest.raises(RulesError) as caught:
        parse_rules(text, "big.toml")
    [(line, reason)] = caught.value.problems
    assert line == 101 * 3 - 2 and "more than 100 [[links]] rules (101)" in reason


def test_preview_counts_objects_when_every_span_links(rule_store: Store) -> None:
    put(rule_store, {"crm.case": "C-1"})
    put(rule_store, {"crm.case": "C-2"})
    [preview] = rule_store.meaning.preview(parse_rules('[[links]]\nattribute = "crm.case"\ntype = "case"\n'))
    assert (preview.spans, preview.objects, preview.examples) == (2, 2, ["case:C-1", "case:C-2"])


# -- found by review: each a way the engine's derivation could be broken ----------------------------


@pytest.mark.parametrize(("given", "stored"), [("nan", 0), ("inf", 0), ("-inf", 0), ("1e30", 4294967295),
                                               (" 12 ", 12), ("12.0", 12), ("12\n", 12), ("-5", 0), ("abc", 0)])
def test_any_token_count_text_stores_and_derives_sanely(rule_store: Store, given: str, stored: int) -> None:
    span = put(rule_store, {"gen_ai.operation.name": "chat", "gen_ai.usage.input_tokens": given})
    [record] = rule_store.trace_spans(trace_id=_trace_of(rule_store, span))
    assert record.input_tokens == stored
    rule_store.meaning.rederive(RuleSet(links=[LinkRule(attribute="x", type="t")]), "default")
    assert rule_store.trace_spans(trace_id=_trace_of(rule_store, span))[0].input_tokens == stored


def test_a_pattern_the_engine_refuses_is_never_installed(rule_store: Store) -> None:
    before = rule_store.meaning.state()
    rules = parse_rules("[[links]]\nattribute = \"s\"\ntype = \"t\"\npattern = '^(?P<id>x)(?=y)'\n", "r.toml")
    with pytest.raises(RulesError) as caught:
        rule_store.meaning.install(rules, "default")
    assert caught.value.problems[0][0] == 1 and "RE2" in caught.value.problems[0][1]
    assert rule_store.meaning.state() == before
    put(rule_store, {"s": "xy"})  # inserts still work: the old derivation stayed


def test_a_constant_value_is_for_text_fields_only() -> None:
    with pytest.raises(RulesError) as caught:
        parse_rules('[[fields]]\nfield = "input_tokens"\nattribute = "a"\nvalue = "12"\n')
    assert "'value' sets a text field" in str(caught.value)


def test_a_manual_link_survives_a_rule_that_derives_it_and_the_rule_s_removal(rule_store: Store) -> None:
    store = rule_store
    span = put(store, {"crm.case": "C-9"})
    trace = _trace_of(store, span)
    span_id, start_ns, tenant, agent = store.runs.span_of(trace_id=trace)
    store.runs.add_manual_link(object_type="case", object_id="C-9", trace_id=trace, span_id=span_id,
                               start_ns=start_ns, tenant=tenant, agent=agent)
    store.meaning.rederive(RuleSet(links=[LinkRule(attribute="crm.case", type="case")]), "default")
    store.optimize()  # the derived link replaces the manual one (same key) here
    store.meaning.rederive(RuleSet(), "default")
    store.optimize()
    assert linked(store, "case:C-9") == {span}


def test_whitespace_and_case_are_folded_like_text(rule_store: Store) -> None:
    span = put(rule_store, {"flightrec.object.type": " Ticket\t", "flightrec.object.id": "\tT-1\n",
                            "guardrail.decision": " DENY\n"})
    assert linked(rule_store, "ticket:T-1") == {span}
    rule_store.meaning.install(parse_rules(
        '[[fields]]\nfield = "guardrail_verdict"\nattribute = "guardrail.decision"\nvalues = { Deny = "block" }\n'), "d")
    other = put(rule_store, {"guardrail.decision": " DENY\n"})
    assert rule_store.engine.query("t", f"SELECT GuardrailVerdict FROM {rule_store.db}.otel_traces WHERE SpanId = "
                                        "{s:String}", {"s": other}) == [("block",)]


def test_what_a_span_did_is_its_own_not_its_resource_s(rule_store: Store) -> None:
    span = put(rule_store, {}, {"service.name": "svc", "flightrec.action.name": "refund.issue", "flightrec.mode": "auto"})
    [record] = rule_store.trace_spans(trace_id=_trace_of(rule_store, span))
    assert (record.action_name, record.mode, record.operation) == ("", "", "other")


def test_rule_text_that_looks_like_a_map_lookup_stays_text(rule_store: Store) -> None:
    text = "SpanAttributes['zz']"
    rule_store.meaning.install(RuleSet(fields=[FieldRule(field="agent", attribute="who", value=text)]), text)
    span = put(rule_store, {"who": "x", "zz": "not me"})
    [record] = rule_store.trace_spans(trace_id=_trace_of(rule_store, span))
    assert (record.agent, record.tenant) == (text, text)
    rule_store.meaning.rederive(RuleSet(fields=[FieldRule(field="agent", attribute="who", value=text)]), text)
    [record] = rule_store.trace_spans(trace_id=_trace_of(rule_store, span))
    assert (record.agent, record.tenant) == (text, text)


def test_the_rate_resolver_ends_on_a_model_name_that_is_not_utf8(rule_store: Store) -> None:
    from flightrec.collector.prices import Pricer
    from flightrec.collector.rates import resolve_rates

    rule_store.engine.command(
        "t", f"INSERT INTO {rule_store.db}.otel_traces (Timestamp, TraceId, SpanId, SpanAttributes) VALUES "
             "(now64(9), 'aa', 'bb', map('gen_ai.operation.name', 'chat', 'gen_ai.request.model', unhex('6770742dff'), "
             "'gen_ai.usage.input_tokens', '10'))")
    assert resolve_rates(rule_store, Pricer()) >= 1  # and it returns


def test_the_objects_list_reads_recency_and_is_confirmed_by_the_links(rule_store: Store) -> None:
    """The newest objects come from object_recency (one row per object and agent), their details from their
    links: ordered by the last touch by anyone, the agent filter keeps every agent listed, and objects whose
    links a rule change removed are gone from the list though their recency rows remain."""
    from tests.otlp_helpers import BASE_NS

    store = rule_store
    store.meaning.install(RuleSet(links=[LinkRule(attribute="crm.case", type="case")]), "default")
    for case, agent, minutes in (("C-1", "alpha", 0), ("C-2", "alpha", 1), ("C-1", "beta", 2)):
        span = make_span("step", {"crm.case": case, "gen_ai.agent.name": agent}, start_ns=BASE_NS + minutes * 60 * 10**9)
        store.insert_batch(RowBuilder().request_rows(make_request([span], {"service.name": agent})), os.urandom(8).hex())

    def listed(**filters) -> list[tuple[str, list[str], int]]:
        return [(item.id, item.agents, item.traces) for item in store.recent_objects(object_type="case", **filters)]

    assert listed() == [("C-1", ["alpha", "beta"], 2), ("C-2", ["alpha"], 1)]
    assert listed(agent="alpha") == [("C-1", ["alpha", "beta"], 2), ("C-2", ["alpha"], 1)]  # by anyone's last touch
    assert listed(agent="beta") == [("C-1", ["alpha", "beta"], 2)]
    assert listed(limit=1) == [("C-1", ["alpha", "beta"], 2)]
    assert listed(text="-2") == [("C-2", ["alpha"], 1)]
    store.meaning.rederive(RuleSet(), "default")  # the rule removed: its links go
    assert listed() == []
