"""A labeled scenario set made with the fleet: every injected regression found, no page from clean runs.

Each scenario is one seeded fleet run (``FleetConfig``) of ``WORKFLOWS`` workflows, 30 s apart
(~17 h, inside the detectors' 24 h window), loaded into its own store database in-process
(fleet spans -> OTLP request -> ``RowBuilder`` -> ``Store.insert_batch``, the collector's
path without the wire), then judged by ONE ``DetectorRunner.run_pass`` (no pager, no ``for``):

- one run per injection kind with only that injection (``inject=[kind]``), from workflow
  ``WORKFLOWS // 2`` on (the fleet's default), on the agent ``FleetReport.injections`` names;
- clean control runs (``no_regression=True``) with other seeds.

How a fired alert is counted:

- **found** (true positive): in an injected run, on the injected agent, from the detector that
  owns that kind (``EXPECTED``: version -> version_regression, loop -> loops, cost -> budgets,
  drift -> baseline_drift, outlier -> unusual_traces);
- **related**: in an injected run, on the injected agent, from another detector whose signal
  that injection visibly moves (``RELATED``: e.g. a cost injection raises the agent's cost per
  run, which baseline drift also follows). These name the right agent and the right cause, so
  they are not false pages, but they are not what the scenario checks either;
- **false page**: everything else: any alert in a clean run, any alert on another agent (or
  on no agent) in an injected run, and an alert on the injected agent from a detector the
  injection does not plausibly move.

Recall = injections found / injections; precision = (found + related) / alerts fired. The test
asserts recall 100% and no false page, and prints the table (``pytest -s``), which every
assertion message carries too.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

from flightrec.collector.rows import RowBuilder
from tests.otlp_helpers import price_stored
from flightrec.detectors.models import Alert
from flightrec.detectors.runner import DetectorRunner, DetectorsConfig
from flightrec.demo.fleet import FleetConfig, FleetReport, FleetSimulation
from flightrec.store import SpanBatch, Store, StoreConfig, open_store

pytestmark = pytest.mark.slow

WORKFLOWS = 2000
SPACING_S = 30.0
SPANS_PER_INSERT = 25_000

EXPECTED = {
    "version": "version_regression",
    "loop": "loops",
    "cost": "budgets",
    "drift": "baseline_drift",
    "outlier": "unusual_traces",
}
RELATED = {
    "version": {"baseline_drift", "budgets"},  # worse rates over time; another model's prices
    "loop": {"baseline_drift", "budgets", "unusual_traces"},  # the repeated calls add latency, tokens, cost
    "cost": {"baseline_drift", "unusual_traces"},  # cost per run and tokens rise
    "drift": {"unusual_traces"},  # ever slower runs with more errors
    "outlier": {"baseline_drift", "budgets"},  # the outliers' swollen prompts cost money
}
INJECTED_SEEDS = {"version": 11, "loop": 12, "cost": 13, "drift": 14, "outlier": 15}
CLEAN_SEEDS = (21, 22, 23)


@dataclass
class Outcome:
    """One scenario: what was injected where, and what the pass fired, sorted by the counting rule."""

    name: str
    seed: int
    kind: str | None
    agent: str | None
    runs: int = 0
    spans: int = 0
    seconds: float = 0.0
    found: list[Alert] = field(default_factory=list)
    related: list[Alert] = field(default_factory=list)
    false: list[Alert] = field(default_factory=list)

    @property
    def fired(self) -> int:
        return len(self.found) + len(self.related) + len(self.false)


def load_fleet(store: Store, config: FleetConfig) -> tuple[FleetReport, int]:
    """Every span of the fleet run into the store, through the normalizer; the report and span count."""
    simulation = FleetSimulation(config)
    normalizer = RowBuilder()
    pending: list = []
    spans = 0

    def flush() -> None:
        batch = normalizer.request_rows(encode_spans(pending), SpanBatch())
        store.insert_batch(batch, dedup_token=uuid.uuid4().hex)
        pending.clear()

    for workflow in simulation:
        pending.extend(workflow)
        spans += len(workflow)
        if len(pending) >= SPANS_PER_INSERT:
            flush()
    if pending:
        flush()
    price_stored(store)
    assert simulation.report is not None
    return simulation.report, spans


def classify(outcome: Outcome, fired: list[Alert]) -> None:
    """Sort the fired alerts into found, related and false pages (the module docstring's rule)."""
    for alert in fired:
        if outcome.kind is None or alert.agent != outcome.agent:
            outcome.false.append(alert)
        elif alert.detector == EXPECTED[outcome.kind]:
            outcome.found.append(alert)
        elif alert.detector in RELATED[outcome.kind]:
            outcome.related.append(alert)
        else:
            outcome.false.append(alert)


def run_scenario(chdb_dir: Path, name: str, seed: int, kind: str | None, until: datetime) -> Outcome:
    start = until - timedelta(seconds=WORKFLOWS * SPACING_S)
    config = FleetConfig(
        workflows=WORKFLOWS, seed=seed, spacing_s=SPACING_S, start=start,
        **({"inject": [kind]} if kind else {"no_regression": True}),
    )
    database = f"scn_{name.replace('-', '_')}_{uuid.uuid4().hex[:8]}"
    store = open_store(StoreConfig(dsn=f"chdb://{chdb_dir}", database=database))
    try:
        report, spans = load_fleet(store, config)
        injections = report.injections
        if kind is None:
            assert injections == [], "a clean run must inject nothing"
            agent = None
        else:
            assert [injection.kind for injection in injections] == [kind]
            assert injections[0].workflows > 0, f"the {kind} injection changed no workflow"
            agent = injections[0].agent
        outcome = Outcome(name=name, seed=seed, kind=kind, agent=agent, spans=spans)
        result = DetectorRunner(store, DetectorsConfig()).run_pass(until=until)
        outcome.runs, outcome.seconds = result.runs, result.seconds
        assert result.resolved == []
        classify(outcome, result.fired)
        return outcome
    finally:
        store.engine.command("drop_scenario_database", f"DROP DATABASE IF EXISTS {store.db}")
        store.close()


def table(outcomes: list[Outcome]) -> str:
    """The per-scenario table, a per-detector summary, and recall and precision."""
    header = (
        f"{'scenario':10s} {'seed':>4s} {'injected agent':15s} {'expected detector':19s} {'found':5s} "
        f"{'fired':>5s} {'related':>7s} {'false':>5s} {'runs':>5s} {'spans':>6s} {'pass s':>6s}"
    )
    lines = [header]
    for o in outcomes:
        lines.append(
            f"{o.name:10s} {o.seed:4d} {o.agent or '-':15s} {EXPECTED.get(o.kind or '', '-'):19s} "
            f"{('yes' if o.found else 'NO') if o.kind else '-':5s} {o.fired:5d} {len(o.related):7d} "
            f"{len(o.false):5d} {o.runs:5d} {o.spans:6d} {o.seconds:6.2f}"
        )
    for o in outcomes:
        for label, alerts in (("found", o.found), ("related", o.related), ("FALSE PAGE", o.false)):
            for alert in alerts:
                lines.append(f"  {o.name}: {label}: {alert.detector} on {alert.agent or '-'}: {alert.summary[:160]}")
    injected = [o for o in outcomes if o.kind]
    clean = [o for o in outcomes if not o.kind]
    found = sum(bool(o.found) for o in injected)
    fired = sum(o.fired for o in outcomes)
    true = sum(len(o.found) + len(o.related) for o in outcomes)
    strict = sum(len(o.found) for o in outcomes)
    lines.append("per detector: found / related / false pages")
    for kind, detector in EXPECTED.items():
        counts = [sum(a.detector == detector for o in outcomes for a in getattr(o, group))
                  for group in ("found", "related", "false")]
        lines.append(f"  {detector:19s} (owns {kind:7s}) {counts[0]} / {counts[1]} / {counts[2]}")
    lines.append(
        f"recall {found}/{len(injected)} = {found / max(1, len(injected)):.0%}; "
        f"precision (found + related) {true}/{fired} = {true / max(1, fired):.0%}, "
        f"strict (found only) {strict}/{fired} = {strict / max(1, fired):.0%}; "
        f"pages on {len(clean)} clean runs: {sum(o.fired for o in clean)}"
    )
    return "\n".join(lines)


@pytest.fixture(scope="module")
def outcomes(chdb_dir: Path) -> Iterator[list[Outcome]]:
    until = datetime.now(tz=timezone.utc).replace(microsecond=0)
    results = [run_scenario(chdb_dir, kind, seed, kind, until) for kind, seed in INJECTED_SEEDS.items()]
    results += [run_scenario(chdb_dir, f"clean-{seed}", seed, None, until) for seed in CLEAN_SEEDS]
    print("\n" + table(results))
    yield results


@pytest.mark.parametrize("kind", list(EXPECTED))
def test_injected_regression_is_found_by_its_detector(outcomes: list[Outcome], kind: str) -> None:
    [outcome] = [o for o in outcomes if o.kind == kind]
    assert outcome.found, f"{EXPECTED[kind]} missed the {kind} injection on {outcome.agent}\n{table(outcomes)}"
    assert len(outcome.found) == 1, f"one alert per injected regression, deduplicated\n{table(outcomes)}"


def test_injected_runs_page_nobody_else(outcomes: list[Outcome]) -> None:
    false = [(o.name, a.detector, a.agent) for o in outcomes if o.kind for a in o.false]
    assert false == [], f"alerts outside the injected agent's regression: {false}\n{table(outcomes)}"


def test_clean_runs_page_nobody(outcomes: list[Outcome]) -> None:
    pages = [(o.name, a.detector, a.agent) for o in outcomes if not o.kind for a in o.false]
    assert pages == [], f"clean runs paged: {pages}\n{table(outcomes)}"


def test_recall_is_complete_and_precision_reported(outcomes: list[Outcome]) -> None:
    injected = [o for o in outcomes if o.kind]
    assert {o.kind for o in injected} == set(EXPECTED)
    assert len([o for o in outcomes if not o.kind]) >= 3
    recall = sum(bool(o.found) for o in injected) / len(injected)
    fired = sum(o.fired for o in outcomes)
    precision = sum(len(o.found) + len(o.related) for o in outcomes) / fired
    assert (recall, precision) == (1.0, 1.0), table(outcomes)
