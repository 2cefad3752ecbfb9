"""Cost you can trust (issue 15, deliverable 4): package prices, overrides, reported costs,
unknown prices kept unknown through the store, rollups and detectors, no double counting."""

from __future__ import annotations

import os
from datetime import datetime, timedelta, timezone

import pytest

from flightrec.collector.rows import RowBuilder
from flightrec.collector.prices import ModelPrice, Pricer
from flightrec.detectors.budgets import BudgetConfig, BudgetDetector
from flightrec.detectors.context import PassContext, Runs
from flightrec.detectors.drift import BaselineDriftDetector
from flightrec.detectors.version import VersionRegressionDetector
from flightrec.store import SpanBatch, Store
from tests.otlp_helpers import make_request, make_span, price_stored

NOW = datetime.now(tz=timezone.utc).replace(microsecond=0)
DAY_2025 = int(datetime(2025, 6, 1, tzinfo=timezone.utc).timestamp() * 1e9)


_store: Store | None = None


@pytest.fixture(autouse=True)
def _pricing_store(store: Store) -> None:
    """Calls dated 2025 (dated prices): kept, not dropped by the default retention."""
    global _store
    store.apply_retention(0)
    _store = store


def row(attrs: dict, prices: dict[str, ModelPrice] | None = None, start_ns: int = DAY_2025) -> dict:
    """One LLM call stored as received, priced the way the server's rate resolver does, read back."""
    assert _store is not None
    span = make_span("chat", {"gen_ai.operation.name": "chat", **attrs}, start_ns=start_ns)
    _store.insert_batch(RowBuilder().request_rows(make_request([span])), os.urandom(8).hex())
    price_stored(_store, prices)
    [record] = _store.trace_spans(trace_id=span.trace_id.hex())
    return {"CostUsd": record.cost_usd, "CostKnown": int(record.cost_known)}


@pytest.mark.parametrize(
    ("provider", "model", "usd_per_mtok"),
    [
        ("anthropic", "claude-3-5-sonnet-20241022", (3.0, 15.0)),
        ("", "claude-3-5-haiku-20241022", (0.8, 4.0)),
        ("gcp.gemini", "gemini-1.5-pro", (1.25, 5.0)),
        ("gcp.vertex_ai", "gemini-2.0-flash", (0.1, 0.4)),
        ("", "gemini-1.5-flash", (0.075, 0.3)),
    ],
)
def test_claude_3_5_and_gemini_calls_get_real_prices(provider: str, model: str, usd_per_mtok: tuple) -> None:
    attrs = {"gen_ai.request.model": model, "gen_ai.usage.input_tokens": 1_000_000, "gen_ai.usage.output_tokens": 0}
    if provider:
        attrs["gen_ai.provider.name"] = provider
    priced_in = row(attrs)
    priced_out = row({**attrs, "gen_ai.usage.input_tokens": 0, "gen_ai.usage.output_tokens": 1_000_000})
    assert (priced_in["CostKnown"], priced_out["CostKnown"]) == (1, 1)
    assert (priced_in["CostUsd"], priced_out["CostUsd"]) == pytest.approx(usd_per_mtok)


def test_cache_tokens_are_priced_at_their_own_rates() -> None:
    attrs = {"gen_ai.provider.name": "anthropic", "gen_ai.request.model": "claude-3-5-sonnet-20241022",
             "gen_ai.usage.input_tokens": 1000, "gen_ai.usage.output_tokens": 0}
    plain = row(attrs)["CostUsd"]
    cached = row({**attrs, "gen_ai.usage.cache_read.input_tokens": 1000})["CostUsd"]
    written = row({**attrs, "gen_ai.usage.cache_creation.input_tokens": 1000})["CostUsd"]
    assert plain == pytest.approx(0.003) and cached == pytest.approx(0.0003) and written == pytest.approx(0.00375)


def test_unknown_model_cost_is_unknown_not_zero() -> None:
    unknown = row({"gen_ai.request.model": "acme-llm-9", "gen_ai.usage.input_tokens": 500})
    assert (unknown["CostUsd"], unknown["CostKnown"]) == (0.0, 0)
    nothing_used = row({"gen_ai.request.model": "acme-llm-9"})
    assert nothing_used["CostKnown"] == 1  # no tokens, nothing to price
    assert Pricer().cost("acme-llm-9", 10, 10) is None


def test_override_wins_over_the_package_by_longest_prefix() -> None:
    config = {"claude-3-5": ModelPrice(input_per_mtok=1, output_per_mtok=1),
              "claude-3-5-sonnet": ModelPrice(input_per_mtok=7, output_per_mtok=70),
              "acme-": ModelPrice(input_per_mtok=2, output_per_mtok=4)}
    sonnet = row({"gen_ai.request.model": "claude-3-5-sonnet-20241022", "gen_ai.usage.input_tokens": 1_000_000}, config)
    assert sonnet["CostUsd"] == pytest.approx(7.0)
    acme = row({"gen_ai.request.model": "ACME-llm-9", "gen_ai.usage.output_tokens": 1_000_000}, config)
    assert (acme["CostUsd"], acme["CostKnown"]) == (pytest.approx(4.0), 1)


@pytest.mark.parametrize(
    "reported",
    [{"flightrec.cost.usd": "0.42"}, {"llm.cost.total": "0.42"}, {"gen_ai.usage.cost": "0.42"},
     {"llm.cost.prompt": "0.40", "llm.cost.completion": "0.02"}],
)
def test_a_reported_cost_wins(reported: dict) -> None:
    attrs = {"gen_ai.request.model": "claude-3-5-sonnet-20241022", "gen_ai.usage.input_tokens": 1_000_000, **reported}
    assert row(attrs)["CostUsd"] == pytest.approx(0.42)
    assert row({**reported, "gen_ai.request.model": "acme-llm-9", "gen_ai.usage.input_tokens": 9})["CostKnown"] == 1


def test_prices_are_dated_and_cached_per_provider_model_and_day() -> None:
    pricer = Pricer()
    day = DAY_2025 // (86_400 * 10**9)
    first = pricer.rates("gpt-4o", "openai", day)
    assert first is pricer.rates("gpt-4o", "openai", day) and first.source == "genai-prices:openai/gpt-4o"
    assert pricer.rates("gpt-4o", "openai", day + 1) is not first
    assert first.input == pytest.approx(2.5e-6) and first.output == pytest.approx(10e-6)


# -- through the store, rollups and detectors ---------------------------------------------------


def run_spans(model: str, start: datetime, *, agent: str = "support", tokens: tuple[int, int] = (1000, 200),
              agent_totals: bool = False) -> list:
    trace_id, root_id = os.urandom(16), os.urandom(8)
    start_ns = int(start.timestamp() * 1e9)
    root_attrs = {"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": agent, "gen_ai.request.model": model}
    if agent_totals:  # the agent span carries the sum of its two LLM children, as some instrumentations do
        root_attrs |= {"gen_ai.usage.input_tokens": 2 * tokens[0], "gen_ai.usage.output_tokens": 2 * tokens[1]}
    spans = [make_span("handle", root_attrs, trace_id=trace_id, span_id=root_id, start_ns=start_ns,
                       duration_ns=2_000_000_000)]
    for index in range(2):
        spans.append(make_span("chat", {
            "gen_ai.operation.name": "chat", "gen_ai.request.model": model,
            "gen_ai.usage.input_tokens": tokens[0], "gen_ai.usage.output_tokens": tokens[1],
        }, trace_id=trace_id, parent=root_id, start_ns=start_ns + index * 1000, duration_ns=500_000_000))
    return spans


def insert(store: Store, spans: list) -> None:
    batch = RowBuilder().request_rows(make_request(spans, {"service.name": "svc"}), SpanBatch())
    store.insert_batch(batch, dedup_token=os.urandom(8).hex())
    price_stored(store)


def context(store: Store) -> PassContext:
    since = NOW - timedelta(hours=24)
    return PassContext(since=since, until=NOW + timedelta(minutes=1),
                       runs=Runs.from_features(store.signals.run_features(since=since, until=NOW + timedelta(minutes=1))))


def test_agent_totals_are_not_counted_again(store: Store) -> None:
    insert(store, run_spans("gpt-4o", NOW - timedelta(minutes=5), agent_totals=True))
    runs = context(store).runs
    assert (runs["tokens_in"][0], runs["tokens_out"][0]) == (2000, 400)  # the children's sum, not twice it
    assert runs["cost_usd"][0] == pytest.approx(2 * (1000 * 2.5 + 200 * 10) / 1e6)
    rows = store.engine.query("t", f"SELECT Operation, InputTokens, SpanAttributes['gen_ai.usage.input_tokens'] "
                                   f"FROM {store.db}.otel_traces ORDER BY Operation")
    assert rows[0] == ("agent", 0, "2000")  # the agent span's totals stay in its attributes


def test_unknown_cost_is_unknown_in_the_row_the_rollups_and_a_detector_pass(store: Store) -> None:
    insert(store, run_spans("acme-llm-9", NOW - timedelta(minutes=5)))
    insert(store, run_spans("gpt-4o", NOW - timedelta(minutes=4)))
    stored = store.engine.query("t", f"SELECT Model, CostUsd, CostKnown FROM {store.db}.otel_traces "
                                     "WHERE Operation = 'llm' ORDER BY Model")
    assert stored == [("acme-llm-9", 0.0, 0), ("acme-llm-9", 0.0, 0), ("gpt-4o", pytest.approx(0.0045), 1),
                      ("gpt-4o", pytest.approx(0.0045), 1)]
    runs = context(store).runs
    by_model = dict(zip(runs["model"], runs["unpriced_calls"]))
    assert by_model == {"acme-llm-9": 2, "gpt-4o": 0}
    rollups = store.signals.rollups(since=NOW - timedelta(hours=1), until=NOW + timedelta(minutes=1), bucket_s=3600)
    assert dict(zip(rollups["model"], rollups["unpriced_calls"])) == {"acme-llm-9": 2, "gpt-4o": 0}

    under = BudgetDetector(store, BudgetConfig(agent_usd={"support": 10.0}, run_usd=None, object_usd=None))
    assert under.detect(context(store)) == []  # under budget with unpriced calls: nobody is paged
    over = BudgetDetector(store, BudgetConfig(agent_usd={"support": 0.001}, run_usd=None, object_usd=None))
    [finding] = over.detect(context(store))
    assert "at least: cost unknown for 2 calls" in finding.summary
    assert finding.details["unpriced_calls"] == "2"


def test_a_switch_to_an_unpriced_model_is_not_a_cost_drop(store: Store) -> None:
    spans = []
    for i in range(40):
        spans += run_spans("gpt-4o", NOW - timedelta(hours=3) + i * timedelta(minutes=1), tokens=(20_000, 2000))
    for i in range(40):
        spans += run_spans("acme-llm-9", NOW - timedelta(minutes=45) + i * timedelta(minutes=1))
    insert(store, spans)
    ctx = context(store)
    [finding] = VersionRegressionDetector().detect(ctx)
    assert finding.severity == "info" and "cost unknown for 80 calls" in finding.summary
    assert "gpt-4o → acme-llm-9" in finding.summary
    assert finding.details["cost per run"].startswith("not compared")
    assert BaselineDriftDetector().detect(ctx) == []  # no cost reading at all, neither drop nor rise


def test_rates_are_rows_every_node_reads_and_a_later_price_applies_to_history(store: Store) -> None:
    """Rates live in a state table (replicated on a cluster) read through a dictionary (migration 0028)."""
    attrs = {"gen_ai.request.model": "acme-llm-9", "gen_ai.usage.input_tokens": 1_000_000}
    assert row(attrs)["CostKnown"] == 0
    tables = {name for (name,) in store.engine.query("t", "SELECT name FROM system.tables WHERE database = {db:String}",
                                                     {"db": store.db})}
    assert {"model_rates_table", "model_rates_dict"} <= tables and "model_rates" not in tables  # the Join is gone
    priced = row(attrs, {"acme-": ModelPrice(input_per_mtok=2, output_per_mtok=4)})
    assert (priced["CostUsd"], priced["CostKnown"]) == (pytest.approx(2.0), 1)  # both calls, without a rewrite
    assert store.engine.query("t", f"SELECT countIf(CostKnown = 0), sum(CostUsd) FROM {store.db}.otel_traces")[0] == (
        0, pytest.approx(4.0))


def test_a_release_that_changes_only_read_time_columns_keeps_history_derived(store: Store) -> None:
    """An upgrade that prices differently (the ALIAS cost columns) re-installs them and re-derives nothing."""
    row({"gen_ai.request.model": "gpt-4o", "gen_ai.usage.input_tokens": 10})
    rules, tenant = store.config.rules, store.config.default_tenant
    before = store.meaning.state()
    assert before is not None and not before.stale
    # What the previous release left: another cost expression, recorded as installed and as history.
    store.engine.command("t", f"ALTER TABLE {store.db}.otel_traces MODIFY COLUMN CostUsd Float64 ALIAS 0")
    store.meaning._record("install", "previous-release", before.version, rules)
    store.meaning._record("history", "previous-release", before.version, rules)
    after = store.meaning.install(rules, tenant)
    assert after.installed == before.installed and not after.stale  # re-installed, history still derived
    assert row({"gen_ai.request.model": "gpt-4o", "gen_ai.usage.input_tokens": 1_000_000})["CostUsd"] == pytest.approx(2.5)
    # A stored column changing still marks the history stale (test_rules re-derives it).
    store.engine.command("t", f"ALTER TABLE {store.db}.otel_traces MODIFY COLUMN Operation LowCardinality(String) "
                         "DEFAULT 'x'")
    store.meaning._record("install", "previous-release", after.version, rules)
    store.meaning._record("history", "previous-release", after.version, rules)
    assert store.meaning.install(rules, tenant).stale
