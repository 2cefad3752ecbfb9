"""Redaction at intake (issue 11, deliverable 7): each rule alone, the allow and deny lists, nested
values, the byte screen, user patterns and the ones refused; then through a real ``flightrec
serve`` on every intake path (OTLP/HTTP protobuf and JSON, gRPC, logs) with the real SDK exporters:
what is stored is redacted, nothing else about a span changes, and /api/stats counts it."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import httpx
import pytest
from opentelemetry._logs import LogRecord
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcSpanExporter
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter
from opentelemetry.trace import Link, Status, StatusCode
from pydantic import ValidationError

from flightrec.collector.redact import (
    RedactionConfig,
    RedactionError,
    Redactor,
    compile_pattern,
    item_ranges,
    link_keys,
    marker,
)
from flightrec.store.rules import LinkRule, RuleSet
from tests.conftest import ServerProcess, wait_for
from tests.otlp_helpers import any_value, kvs, make_request, make_span

EMAIL, CARD, IBAN, PHONE, DENY = (marker(rule) for rule in ("email", "card", "iban", "phone", "deny"))


def redact_one(text: str, config: RedactionConfig | None = None) -> tuple[str, dict[str, int]]:
    """One string attribute through a redactor: (what is stored, counts)."""
    request = make_request([make_span(attrs={"note": text})])
    tally = Redactor(config or RedactionConfig()).redact(request, request.SerializeToString(), "traces")
    return request.resource_spans[0].scope_spans[0].spans[0].attributes[0].value.string_value, dict(tally)


# --- each rule --------------------------------------------------------------------------------------


@pytest.mark.parametrize("card", [
    "4111111111111111", "4111 1111 1111 1111", "4111-1111-1111-1111", "378282246310005", "3782 822463 10005",
    "5555555555554444", "2223003122003222", "6011111111111117", "3530111333300000", "4222222222222",
])
def test_a_valid_card_number_is_redacted(card: str) -> None:
    assert redact_one(f"paid with {card}, thanks") == (f"paid with {CARD}, thanks", {"card": 1})


@pytest.mark.parametrize("kept", [
    "4111111111111112",            # Luhn fails
    "4111 1111 1111 1112",
    "1733100000000000008",         # a nanosecond timestamp that passes Luhn: no card network starts with 1
    "0.4111111111111111",          # part of a decimal number
    "41111111111111111111",        # 20 digits: longer than any card
    "TCK-1042 ORD-1042 INV-20261 CUS-77 1042.50 EUR 2026-12-02T01:05:42Z",
    "4bf92f3577b34da6a3ce929d0e0e4736",  # a trace id
])
def test_numbers_that_are_no_card_are_kept(kept: str) -> None:
    assert redact_one(kept) == (kept, {})


@pytest.mark.parametrize("iban", ["DE89 3704 0044 0532 0130 00", "DE89370400440532013000", "GB82WEST12345698765432",
                                  "NL91ABNA0417164300", "FR1420041010050500013M02606"])
def test_a_valid_iban_is_redacted(iban: str) -> None:
    assert redact_one(f"send to {iban} today") == (f"send to {IBAN} today", {"iban": 1})


def test_an_iban_ends_at_its_country_length() -> None:
    assert redact_one("IBAN DE89 3704 0044 0532 0130 00 EUR") == (f"IBAN {IBAN} EUR", {"iban": 1})


@pytest.mark.parametrize("kept", ["DE88 3704 0044 0532 0130 00", "GB82WEST12345698765433", "XX12ABCDEFGHIJKLMNOP"])
def test_an_iban_with_wrong_check_digits_is_kept(kept: str) -> None:
    assert redact_one(kept) == (kept, {})


def test_email_addresses_are_redacted_even_inside_json() -> None:
    text = '{"role": "user", "content": "I am jane.doe+refunds@mail.example.co.uk, write to bob@example.com"}'
    assert redact_one(text) == (
        f'{{"role": "user", "content": "I am {EMAIL}, write to {EMAIL}"}}', {"email": 2})


@pytest.mark.parametrize("kept", ["a@b", "user@localhost", "@handle says hi", "x" * 30 + "@" + "y" * 5000])
def test_what_is_no_email_address_is_kept(kept: str) -> None:
    assert redact_one(kept) == (kept, {})


@pytest.mark.parametrize("phone", ["+49 151 12345678", "+1 (415) 555-0100", "+442079460958", "+33.1.23.45.67.89"])
def test_international_phone_numbers_are_redacted(phone: str) -> None:
    assert redact_one(f"call {phone} now") == (f"call {PHONE} now", {"phone": 1})


@pytest.mark.parametrize("kept", [
    "415-555-0100",                # national notation: indistinguishable from ids at this level (README)
    "+1042 tickets",               # too few digits
    "2026-12-02T01:05:42+01:00",   # a time zone
    "1.2.3+20260102123456",        # build metadata
    "+1234567890123456789",        # longer than E.164 allows
])
def test_what_is_no_international_phone_number_is_kept(kept: str) -> None:
    assert redact_one(kept) == (kept, {})


def test_rules_can_be_switched_off_and_redaction_disabled() -> None:
    text = "jane@example.com paid 4111111111111111 from DE89370400440532013000, +49 151 12345678"
    assert redact_one(text, RedactionConfig(rules=["email"])) == (
        f"{EMAIL} paid 4111111111111111 from DE89370400440532013000, +49 151 12345678", {"email": 1})
    assert redact_one(text, RedactionConfig(enabled=False)) == (text, {})


# --- user patterns ----------------------------------------------------------------------------------


def test_a_user_pattern_redacts_under_its_own_name() -> None:
    config = RedactionConfig(patterns={"ssn": r"\b[0-9]{3}-[0-9]{2}-[0-9]{4}\b", "employee": r"EMP-[0-9]{6}"})
    assert redact_one("SSN 078-05-1120 for EMP-004211 and EMP-004212", config) == (
        "SSN [redacted:ssn] for [redacted:employee] and [redacted:employee]", {"ssn": 1, "employee": 2})


def test_a_case_insensitive_user_pattern_still_redacts() -> None:
    config = RedactionConfig(patterns={"project": r"(?i)project-x"})
    assert redact_one("about PROJECT-X", config) == ("about [redacted:project]", {"project": 1})


@pytest.mark.parametrize(("name", "pattern", "says"), [
    ("broken", "([0-9]", "not a valid regular expression"),
    ("nested", r"(a+)+$", "repeats a part that itself repeats"),
    ("words", r"(?:\w+\s?)+@", "repeats a part that itself repeats"),
    ("bounded", r"(?:[0-9]{1,4}-)+x", "repeats a part that itself repeats"),
    ("empty", r"x*", "matches the empty string"),
    ("email", r"x", "none of email"),
    ("Bad Name", r"x", "lowercase letters"),
])
def test_a_bad_user_pattern_is_refused_naming_it(name: str, pattern: str, says: str) -> None:
    with pytest.raises(RedactionError, match=says) as caught:
        compile_pattern(name, pattern)
    assert repr(name) in str(caught.value)
    with pytest.raises(ValidationError, match=says):
        RedactionConfig(patterns={"fine": "x", name: pattern})


def test_a_refused_nesting_is_slow_and_its_bounded_form_is_not() -> None:
    """What the nesting check refuses really backtracks (bounded inner repeats too); the forms its message
    suggests do not."""
    import re

    value = "a" * 22 + "!"
    for slow_form in (r"(a+)+$", r"(?:a{1,64})+$"):
        with pytest.raises(RedactionError):
            compile_pattern("slow", slow_form)
    started = time.process_time()
    re.search(r"(?:a{1,64})+$", value)
    slow = time.process_time() - started
    for fine in (r"(?:a{1,64}+)+$", r"(?:a++)+$", r"(?>a+)+$"):
        compile_pattern("fine", fine)
        started = time.process_time()
        re.search(fine, value)
        assert time.process_time() - started < slow / 10


# --- keys: allow and deny ---------------------------------------------------------------------------


def test_allowed_and_link_keys_are_never_redacted() -> None:
    rules = RuleSet(links=[LinkRule(attribute="crm.case", type="case")])
    attrs = {"flightrec.human.actor": "alice@example.com", "service.owner": "ops@example.com",
             "ticket.id": "TCK-4111111111111111", "crm.case": "jane@example.com", "note": "jane@example.com"}
    request = make_request([make_span(attrs=attrs)])
    redactor = Redactor(RedactionConfig())
    redactor.allow_also(link_keys(rules))
    assert redactor.redact(request, request.SerializeToString(), "traces") == {"email": 1}
    stored = {kv.key: kv.value.string_value for kv in request.resource_spans[0].scope_spans[0].spans[0].attributes}
    assert stored == {**attrs, "note": EMAIL}
    assert {"flightrec.object.id", "flightrec.objects", "order.id", "crm.case"} <= link_keys(rules)


def test_a_denied_key_loses_its_whole_value_of_any_type_and_the_allow_list_wins() -> None:
    config = RedactionConfig(deny_keys=["*password*", "http.request.header.authorization", "flightrec.secret"])
    attrs = {"db.PASSWORD": "hunter2", "user.password.hash": 12345, "http.request.header.authorization": ["Bearer x"],
             "flightrec.secret": "kept: flightrec.* is allowed", "password_hint": "see the wiki", "note": "fine"}
    request = make_request([make_span(attrs=attrs)])
    assert Redactor(config).redact(request, request.SerializeToString(), "traces") == {"deny": 4}
    values = {kv.key: kv.value for kv in request.resource_spans[0].scope_spans[0].spans[0].attributes}
    assert {key for key, value in values.items() if value.string_value == DENY} == {
        "db.PASSWORD", "user.password.hash", "http.request.header.authorization", "password_hint"}
    assert values["flightrec.secret"].string_value == "kept: flightrec.* is allowed"
    assert values["note"].string_value == "fine"


def test_a_deny_glob_without_a_literal_still_denies() -> None:
    """``[pP]?`` holds no literal the byte screen could look for: such a list walks every request instead."""
    request = make_request([make_span(attrs={"p": "x", "q": "y"}) for _ in range(3)])
    assert Redactor(RedactionConfig(deny_keys=["[pP]"])).redact(request, request.SerializeToString(), "traces") == {
        "deny": 3}


def test_nested_arrays_and_key_value_lists_are_redacted_at_any_depth() -> None:
    nested = AnyValue()
    inner = nested.kvlist_value.values.add(key="contact")
    inner.value.array_value.values.extend([any_value("jane@example.com"), any_value(7), any_value("ok")])
    nested.kvlist_value.values.add(key="api_password").value.CopyFrom(any_value("hunter2"))
    deeper = nested.kvlist_value.values.add(key="more").value.array_value.values.add()
    deeper.kvlist_value.values.add(key="card").value.CopyFrom(any_value("4111111111111111"))
    span = make_span(attrs={"list": ["a@example.com", "plain"], "count": 3})
    span.attributes.add(key="map").value.CopyFrom(nested)
    request = make_request([span])
    tally = Redactor(RedactionConfig(deny_keys=["*password*"])).redact(request, request.SerializeToString(), "traces")
    assert tally == {"email": 2, "card": 1, "deny": 1}
    attrs = {kv.key: kv.value for kv in request.resource_spans[0].scope_spans[0].spans[0].attributes}
    assert [v.string_value for v in attrs["list"].array_value.values] == [EMAIL, "plain"]
    assert attrs["count"].int_value == 3
    entries = {kv.key: kv.value for kv in attrs["map"].kvlist_value.values}
    assert [v.WhichOneof("value") for v in entries["contact"].array_value.values] == [
        "string_value", "int_value", "string_value"]
    assert entries["contact"].array_value.values[0].string_value == EMAIL
    assert entries["api_password"].string_value == DENY
    assert entries["more"].array_value.values[0].kvlist_value.values[0].value.string_value == CARD


def test_every_string_of_a_span_but_its_names_is_scanned() -> None:
    """Resource, scope, span, event and link attributes and the status message; span and event names are kept."""
    span = make_span("mail jane@example.com", {"note": "jane@example.com"})
    span.status.message = "no account for jane@example.com"
    event = span.events.add(name="sent to jane@example.com", time_unix_nano=span.start_time_unix_nano)
    event.attributes.extend(kvs({"to": "jane@example.com"}))
    link = span.links.add(trace_id=os.urandom(16), span_id=os.urandom(8))
    link.attributes.extend(kvs({"from": "jane@example.com"}))
    request = make_request([span], resource={"service.name": "mailer", "deployment.owner": "jane@example.com"})
    request.resource_spans[0].scope_spans[0].scope.attributes.extend(kvs({"maintainer": "jane@example.com"}))
    before = request.SerializeToString()
    assert Redactor(RedactionConfig()).redact(request, before, "traces") == {"email": 6}
    stored = request.resource_spans[0].scope_spans[0].spans[0]
    assert stored.name == "mail jane@example.com" and stored.events[0].name == "sent to jane@example.com"
    assert stored.status.message == f"no account for {EMAIL}"
    assert stored.attributes[0].value.string_value == stored.events[0].attributes[0].value.string_value == EMAIL
    assert stored.links[0].attributes[0].value.string_value == EMAIL
    assert request.resource_spans[0].resource.attributes[1].value.string_value == EMAIL
    assert request.resource_spans[0].scope_spans[0].scope.attributes[0].value.string_value == EMAIL
    assert (stored.trace_id, stored.span_id, stored.start_time_unix_nano, stored.end_time_unix_nano) == (
        span.trace_id, span.span_id, span.start_time_unix_nano, span.end_time_unix_nano)


def test_log_bodies_and_attributes_are_redacted() -> None:
    request = ExportLogsServiceRequest()
    records = request.resource_logs.add().scope_logs.add().log_records
    records.add(time_unix_nano=time.time_ns(), body=any_value("reach me at jane@example.com"),
                attributes=kvs({"card": "4111 1111 1111 1111"}), event_name="gen_ai.user.message")
    structured = records.add(time_unix_nano=time.time_ns())
    structured.body.kvlist_value.values.add(key="content").value.CopyFrom(any_value("IBAN GB82WEST12345698765432"))
    assert Redactor(RedactionConfig()).redact(request, request.SerializeToString(), "logs") == {
        "email": 1, "card": 1, "iban": 1}
    assert records[0].body.string_value == f"reach me at {EMAIL}"
    assert records[0].attributes[0].value.string_value == CARD
    assert records[1].body.kvlist_value.values[0].value.string_value == f"IBAN {IBAN}"


# --- the screen ------------------------------------------------------------------------------------

SAMPLES = {"email": "jane@example.com", "card": "5555 5555 5555 4444", "iban": "NL91ABNA0417164300",
           "phone": "+44 20 7946 0958", "employee": "EMP-123456", "deny": "hunter2"}


def test_the_screen_finds_one_value_among_hundreds_of_clean_spans() -> None:
    """Whatever span of a large batch holds a match, in whatever attribute or nesting, it is found; a clean
    batch is left byte for byte."""
    rng = random.Random(11)
    redactor = Redactor(RedactionConfig(patterns={"employee": r"EMP-[0-9]{6}"}, deny_keys=["*secret*"]))
    for round_ in range(40):
        rule = list(SAMPLES)[round_ % len(SAMPLES)]
        spans = [make_span(f"step {i}", {"ticket.id": f"TCK-{i}", "amount": f"{rng.randint(1, 9999)}.50",
                                         "when": "2026-12-02T01:05:42+01:00", "n": i}) for i in range(300)]
        clean = make_request(spans)
        assert redactor.redact(clean, clean.SerializeToString(), "traces") == {}
        target = spans[rng.randrange(len(spans))]
        key, value = ("vault.secret", SAMPLES[rule]) if rule == "deny" else ("note", f"x {SAMPLES[rule]} y")
        target.attributes.extend(kvs({key: [value] if round_ % 2 else value}))
        request = make_request(spans)
        assert redactor.redact(request, request.SerializeToString(), "traces") == {rule: 1}, rule


def test_item_ranges_are_each_span_and_a_payload_they_cannot_read_is_walked_whole() -> None:
    spans = [make_span(f"s{i}", {"n": "x" * (i * 40)}) for i in range(6)]
    request = make_request(spans[:3])
    request.resource_spans.add().scope_spans.add().spans.extend(spans[3:])
    payload = request.SerializeToString()
    starts, ends = item_ranges(payload)
    assert [payload[start:end] for start, end in zip(starts, ends)] == [span.SerializeToString() for span in spans]
    assert item_ranges(payload[:-3]) is None  # truncated
    garbled = b"\x0b" + payload  # a group start: not a plain message
    assert item_ranges(garbled) is None
    spans[4].attributes.extend(kvs({"note": "jane@example.com"}))
    request = make_request(spans)
    assert Redactor(RedactionConfig()).redact(request, b"\x0b" + request.SerializeToString(), "traces") == {
        "email": 1}, "an unreadable layout walks every span"


# --- settings ----------------------------------------------------------------------------------------


def test_settings_from_the_environment_and_a_bad_file_pattern_is_refused(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from flightrec.settings import Settings

    for name in ("FLIGHTREC_CONFIG", "FLIGHTREC_REDACTION_RULES", "FLIGHTREC_REDACTION_DENY_KEYS"):
        monkeypatch.delenv(name, raising=False)
    assert Settings().redaction_config() == RedactionConfig(), "the settings' defaults are the component's"
    monkeypatch.setenv("FLIGHTREC_REDACTION_RULES", "email, card")
    monkeypatch.setenv("FLIGHTREC_REDACTION_DENY_KEYS", "*password*,*token_secret*")
    config = Settings().redaction_config()
    assert (config.rules, config.deny_keys, config.enabled) == (["email", "card"], ["*password*", "*token_secret*"],
                                                                True)
    monkeypatch.setenv("FLIGHTREC_REDACTION_RULES", "email,ssn")
    with pytest.raises(ValidationError, match="redaction_rules"):
        Settings()
    monkeypatch.delenv("FLIGHTREC_REDACTION_RULES")
    path = tmp_path / "flightrec.toml"
    path.write_text("[redaction_patterns]\nemployee = 'EMP-[0-9]{6}'\nslow = '(x+)+y'\n")
    monkeypatch.setenv("FLIGHTREC_CONFIG", str(path))
    with pytest.raises(ValidationError, match="redaction pattern 'slow'"):
        Settings()


# --- through a real server, on every intake path ---------------------------------------------------

SETTINGS = """\
redaction_deny_keys = ["*password*"]

[redaction_patterns]
employee = 'EMP-[0-9]{6}'
"""
PII_ATTRS = {
    "gen_ai.input.messages": '[{"role": "user", "parts": [{"type": "text", "content": '
                             '"I am jane@example.com, card 4111 1111 1111 1111"}]}]',
    "payout.account": "IBAN DE89 3704 0044 0532 0130 00",
    "callback": "+49 151 12345678",
    "badge": "EMP-004211",
    "db.password": "hunter2",
    "contacts": ["bob@example.com", "ops"],
}
REDACTED_ATTRS = {
    "gen_ai.input.messages": '[{"role": "user", "parts": [{"type": "text", "content": '
                             f'"I am {EMAIL}, card {CARD}"}}]}}]',
    "payout.account": f"IBAN {IBAN}",
    "callback": PHONE,
    "badge": "[redacted:employee]",
    "db.password": DENY,
    "contacts": f'["{EMAIL}","ops"]',
}
PER_SPAN = {"email": 2, "card": 1, "iban": 1, "phone": 1, "employee": 1, "deny": 1}
KEPT_ATTRS = {"ticket.id": "TCK-1042", "order.id": "ORD-1042", "flightrec.human.actor": "alice@example.com",
              "flightrec.action.amount": "1042.50", "gen_ai.request.model": "gpt-4o-mini"}


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    root = tmp_path_factory.mktemp("redaction")
    (root / "flightrec.toml").write_text(SETTINGS)
    server = ServerProcess(root / "srv", env={"FLIGHTREC_CONFIG": str(root / "flightrec.toml")}).start(timeout_s=180)
    yield server
    server.stop()


def counts(server: ServerProcess) -> dict:
    with server.client() as client:
        response = client.get("/api/stats")
    assert response.status_code == 200, response.text
    body = response.json()
    assert {"spans", "traces", "objects", "rejected_spans"} <= set(body)  # the store's counts stay
    return body["redaction"]


def added(before: dict, after: dict, signal: str) -> dict[str, int]:
    return {rule: count - before[signal].get(rule, 0) for rule, count in after[signal].items()
            if count != before[signal].get(rule, 0)}


def stored_spans(server: ServerProcess, trace_id: str, count: int) -> list[dict]:
    with server.client() as client:
        def spans() -> list[dict]:
            found = client.get(f"/api/traces/{trace_id}").json().get("spans", [])
            return found if len(found) == count else []

        wait_for(spans, what=f"the {count} span(s) of trace {trace_id}")
        return spans()


class Keeping(SpanExporter):
    """Keeps what the SDK exported, to compare with what the server stored."""

    def __init__(self) -> None:
        self.spans: list[ReadableSpan] = []

    def export(self, spans):  # noqa: ANN001, ANN201 - the SDK's signature
        self.spans.extend(spans)
        from opentelemetry.sdk.trace.export import SpanExportResult

        return SpanExportResult.SUCCESS


def send_through_sdk(exporter: SpanExporter) -> tuple[str, list[ReadableSpan]]:
    """A root with a PII-laden child (an event and a link carry PII too) through a real SDK exporter."""
    provider = TracerProvider(resource=Resource.create({"service.name": "refund-agent",
                                                        "deployment.owner": "ops@example.com"}))
    kept = Keeping()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    provider.add_span_processor(SimpleSpanProcessor(kept))
    tracer = provider.get_tracer("tests.redaction")
    with tracer.start_as_current_span("refund ORD-1042", attributes=KEPT_ATTRS) as root:
        other = root.get_span_context()
        with tracer.start_as_current_span("chat gpt-4o-mini", links=[Link(other, {"from": "jane@example.com"})],
                                          attributes=PII_ATTRS) as child:
            child.add_event("mail", {"to": "jane@example.com"})
            child.set_status(Status(StatusCode.ERROR, "no account for jane@example.com"))
    provider.shutdown()
    return f"{other.trace_id:032x}", kept.spans


def assert_stored_redacted(server: ServerProcess, trace_id: str, sent: list[ReadableSpan]) -> None:
    """The child's PII is redacted; ids, times, names and every other attribute are as sent."""
    stored = {span["span_id"]: span for span in stored_spans(server, trace_id, len(sent))}
    for original in sent:
        span = stored[f"{original.context.span_id:016x}"]
        assert span["name"] == original.name
        assert span["parent_span_id"] == (f"{original.parent.span_id:016x}" if original.parent else "")
        assert datetime.fromisoformat(span["start_time"]).timestamp() == pytest.approx(original.start_time / 1e9,
                                                                                       abs=1e-6)
        assert span["duration_ms"] == pytest.approx((original.end_time - original.start_time) / 1e6, abs=1e-3)
        assert span["resource_attributes"]["deployment.owner"] == EMAIL
        assert span["resource_attributes"]["service.name"] == "refund-agent"
        if original.name.startswith("refund"):
            assert {key: span["attributes"][key] for key in KEPT_ATTRS} == KEPT_ATTRS
            assert "ticket:TCK-1042" in span["objects"]
            continue
        assert {key: span["attributes"][key] for key in PII_ATTRS} == REDACTED_ATTRS
        assert span["status_message"] == f"no account for {EMAIL}"
        assert span["events"][0]["attributes"] == {"to": EMAIL}


def assert_counted(before: dict, after: dict, signal: str, expected: dict[str, int]) -> None:
    assert added(before, after, signal) == expected
    assert after["total"] - before["total"] == sum(expected.values())


# The child's attributes, plus its event, link and status message and the resource of both spans (one request each).
SPAN_PATH_COUNTS = {**PER_SPAN, "email": PER_SPAN["email"] + 3 + 2}


@pytest.mark.parametrize("transport", ["http", "grpc"])
@pytest.mark.slow
def test_sdk_spans_are_stored_redacted_and_counted(srv: ServerProcess, transport: str) -> None:
    before = counts(srv)
    exporter = (OTLPSpanExporter(endpoint=f"{srv.url}/v1/traces") if transport == "http"
                else GrpcSpanExporter(endpoint=f"127.0.0.1:{srv.grpc_port}", insecure=True))
    trace_id, sent = send_through_sdk(exporter)
    assert_stored_redacted(srv, trace_id, sent)
    assert_counted(before, counts(srv), "traces", SPAN_PATH_COUNTS)
    with srv.client() as client:
        story = client.get("/api/objects/ticket/TCK-1042/story")
    assert story.status_code == 200 and "jane@example.com" not in story.text


@pytest.mark.slow
def test_otlp_json_spans_are_stored_redacted_with_nothing_else_changed(srv: ServerProcess) -> None:
    trace_id, span_id, start = os.urandom(16).hex(), os.urandom(8).hex(), time.time_ns() - 60_000_000_000
    body = {"resourceSpans": [{"resource": {"attributes": [
        {"key": "service.name", "value": {"stringValue": "json-agent"}}]},
        "scopeSpans": [{"scope": {"name": "json"}, "spans": [{
            "traceId": trace_id, "spanId": span_id, "name": "lookup", "kind": 1,
            "startTimeUnixNano": str(start), "endTimeUnixNano": str(start + 5_000_000),
            "attributes": [
                {"key": "customer.id", "value": {"stringValue": "CUS-4111111111111111"}},
                {"key": "profile", "value": {"kvlistValue": {"values": [
                    {"key": "mail", "value": {"stringValue": "jane@example.com"}},
                    {"key": "password", "value": {"intValue": "1234"}},
                    {"key": "cards", "value": {"arrayValue": {"values": [
                        {"stringValue": "4111-1111-1111-1111"}, {"stringValue": "4111-1111-1111-1112"}]}}}]}}},
                {"key": "amount", "value": {"doubleValue": 1042.5}},
            ]}]}]}]}
    before = counts(srv)
    response = httpx.post(f"{srv.url}/v1/traces", json=body, timeout=30)
    assert response.status_code == 200, response.text
    [span] = stored_spans(srv, trace_id, 1)
    assert (span["span_id"], span["name"], span["duration_ms"]) == (span_id, "lookup", 5.0)
    assert span["attributes"]["customer.id"] == "CUS-4111111111111111"  # a link key: never redacted
    assert span["attributes"]["amount"] == "1042.5"
    assert span["attributes"]["profile"] == (
        f'{{"mail":"{EMAIL}","password":"{DENY}","cards":["{CARD}","4111-1111-1111-1112"]}}')
    assert_counted(before, counts(srv), "traces", {"email": 1, "deny": 1, "card": 1})


@pytest.mark.slow
def test_sdk_log_records_are_stored_redacted_and_counted(srv: ServerProcess) -> None:
    before = counts(srv)
    tracer_provider = TracerProvider(resource=Resource.create({"service.name": "refund-agent"}))
    tracer_provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=f"{srv.url}/v1/traces")))
    logger_provider = LoggerProvider(resource=Resource.create({"service.name": "refund-agent"}))
    logger_provider.add_log_record_processor(SimpleLogRecordProcessor(OTLPLogExporter(endpoint=f"{srv.url}/v1/logs")))
    logger = logger_provider.get_logger("opentelemetry.instrumentation.openai_v2")
    with tracer_provider.get_tracer("tests").start_as_current_span("chat", attributes={"ticket.id": "TCK-2042"}) as span:
        trace_id = f"{span.get_span_context().trace_id:032x}"
        logger.emit(LogRecord(event_name="gen_ai.user.message",
                              body={"content": "I am jane@example.com, IBAN GB82 WEST 1234 5698 7654 32"},
                              attributes={"gen_ai.system": "openai", "user.password": "hunter2"}))
        logger.emit(LogRecord(event_name="gen_ai.choice", body="Refund sent to card 5555 5555 5555 4444.",
                              attributes={"badge": "EMP-000001"}))
    tracer_provider.shutdown()
    logger_provider.shutdown()
    with srv.client() as client:
        def events() -> list[dict]:
            spans = client.get(f"/api/traces/{trace_id}").json().get("spans", [])
            return spans[0]["events"] if spans and len(spans[0]["events"]) == 2 else []

        wait_for(events, what="the span's two log records")
        user, choice = events()
    assert user["attributes"]["body"] == f'{{"content":"I am {EMAIL}, IBAN {IBAN}"}}'
    assert user["attributes"]["user.password"] == DENY
    assert user["attributes"]["gen_ai.system"] == "openai"
    assert choice["attributes"] == {"badge": "[redacted:employee]", "body": f"Refund sent to card {CARD}."}
    assert_counted(before, counts(srv), "logs", {"email": 1, "iban": 1, "deny": 1, "card": 1, "employee": 1})


@pytest.mark.slow
def test_the_counts_are_prometheus_counters(srv: ServerProcess) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    redacted = counts(srv)
    families = {family.name: family for family in text_string_to_metric_families(
        httpx.get(f"{srv.url}/metrics", timeout=30).text)}
    samples = {(s.labels["signal"], s.labels["rule"]): s.value for s in families["flightrec_intake_redactions"].samples
               if s.name.endswith("_total")}
    for signal in ("traces", "logs"):
        for rule in redacted["rules"]:
            assert samples[(signal, rule)] == redacted[signal].get(rule, 0)
    assert redacted["rules"] == ["email", "card", "iban", "phone", "employee", "deny"]


@pytest.mark.slow
def test_a_settings_file_with_a_bad_pattern_is_refused_at_start(tmp_path: Path) -> None:
    path = tmp_path / "flightrec.toml"
    path.write_text("[redaction_patterns]\nticket = 'TCK-[0-9]{4}'\nslow = '([a-z]+)*@'\n")
    result = subprocess.run([sys.executable, "-m", "flightrec", "serve", "--data", str(tmp_path / "data"),
                             "--http-port", "0", "--grpc-port", "0"],
                            env={**os.environ, "FLIGHTREC_CONFIG": str(path)}, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 2, result.stdout + result.stderr
    said = " ".join((result.stdout + result.stderr).split())
    assert "redaction pattern 'slow'" in said and "repeats" in said
    assert not (tmp_path / "data").exists() or not any((tmp_path / "data").iterdir())


@pytest.mark.slow
def test_the_triage_page_says_what_was_redacted(monkeypatch: pytest.MonkeyPatch, srv: ServerProcess) -> None:
    from flightrec.dashboards.safe_text import plain_text
    from flightrec.dashboards.ui import TRIAGE_PAGE
    from tests.test_dashboards_safety import open_page

    request = make_request([make_span(attrs={"note": "write to jane@example.com"}, start_ns=time.time_ns() - 10**9)])
    response = httpx.post(f"{srv.url}/v1/traces", content=request.SerializeToString(),
                          headers={"Content-Type": "application/x-protobuf"}, timeout=30)
    assert response.status_code == 200, response.text
    emails = counts(srv)["traces"]["email"]
    at = open_page(monkeypatch, srv.url, TRIAGE_PAGE)
    line = next(plain_text(caption.value) for caption in at.caption if "Redacted at intake" in caption.value)
    spans_part = line.split("in spans ", 1)[1].split(";")[0].split(" (rules")[0]
    assert f"{emails:,} email" in spans_part.split(" · "), line
    assert "rules: email, card, iban, phone, employee, deny" in line
