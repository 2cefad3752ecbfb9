"""The batch writer on a real WAL and a real embedded store: it cannot be wedged, spans are insert-once.

Records are appended to the WAL directly here (as an older version or a validation gap
would have acknowledged them), so the writer's own defences are what is tested.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from flightrec.collector import BatchWriter, WalConfig, WriteAheadLog, WriterConfig
from flightrec.collector.health import HealthPolicy, assess
from flightrec.collector.pipeline import IngestPipeline, IntakeConfig
from flightrec.collector.wal import WalRecord
from flightrec.store import Store
from tests.conftest import wait_for
from tests.otlp_helpers import BASE_NS, make_request, make_span

DAY_NS = 86_400 * 10**9
MONTH_NS = 31 * DAY_NS


@pytest.fixture
def wal(tmp_path: Path) -> Iterator[WriteAheadLog]:
    log = WriteAheadLog(WalConfig(directory=tmp_path / "wal", seal_after_s=0.05, fsync=False))
    yield log
    log.close()


@pytest.fixture(params=["python", "engine"])
def parser(request: pytest.FixtureRequest) -> str:
    """Every writer test runs on both ingest parsers (FLIGHTREC_INGEST_PARSER)."""
    return request.param


@pytest.fixture
def writer(wal: WriteAheadLog, store: Store, parser: str) -> Iterator[BatchWriter]:
    batch_writer = BatchWriter(wal, store, config=WriterConfig(workers=0, retry_initial_s=0.05, quarantine_after=2,
                                                               parser=parser))
    batch_writer.start()
    yield batch_writer
    batch_writer.shutdown()


def append(wal: WriteAheadLog, spans: list) -> None:
    wal.append(make_request(spans).SerializeToString(), len(spans))


def stored_ids(store: Store) -> set[str]:
    rows = store.engine.query("test_ids", f"SELECT SpanId FROM {store.db}.otel_traces")
    return {row[0] for row in rows}


def drained(wal: WriteAheadLog) -> Callable[[], bool]:
    return lambda: wal.backlog_spans == 0


def test_poisoned_record_is_quarantined_and_the_rest_of_its_segment_stored(
    wal: WriteAheadLog, writer: BatchWriter, store: Store
) -> None:
    good_before, good_after = make_span("before"), make_span("after")
    poison = make_span("poison", start_ns=2**63 + 5)  # beyond DateTime64(9): the engine refuses the insert
    wal.seal_now()
    append(wal, [good_before])
    append(wal, [poison])
    append(wal, [good_after])
    wait_for(drained(wal), what="the writer to move past the poisoned segment")
    assert stored_ids(store) == {good_before.span_id.hex(), good_after.span_id.hex()}
    [entry] = writer.quarantine.entries()
    assert entry.spans == 1 and entry.attempts == 2 and "record 1" in entry.reason
    assert writer.metrics.quarantined_segments == 1 and writer.metrics.failing_since == 0

    later = make_span("later")
    append(wal, [later])
    wait_for(lambda: later.span_id.hex() in stored_ids(store), what="a later span to be stored")


def test_undecodable_record_is_quarantined(wal: WriteAheadLog, writer: BatchWriter, store: Store) -> None:
    wal.append(b"\xff\xff not protobuf", 1)
    good = make_span("good")
    append(wal, [good])
    wait_for(drained(wal), what="the writer to move on")
    assert good.span_id.hex() in stored_ids(store)
    [entry] = writer.quarantine.entries()
    assert ("ExportTraceServiceRequest" in entry.reason or "Error parsing" in entry.reason
            or "Protobuf messages are corrupted" in entry.reason)  # the engine parser's words


def test_replay_queues_a_quarantined_segment_again(wal: WriteAheadLog, writer: BatchWriter, store: Store) -> None:
    span = make_span("kept aside")
    payload = make_request([span]).SerializeToString()
    writer.quarantine.add("00000000000000000001-feedbeef0000", [WalRecord(spans=1, payload=payload)],
                          "store was being rebuilt", attempts=3)
    assert [e.segment for e in writer.quarantine.entries()] == ["00000000000000000001-feedbeef0000"]
    queued = writer.replay("00000000000000000001-feedbeef0000")
    assert queued.spans == 1
    wait_for(lambda: span.span_id.hex() in stored_ids(store), what="the replayed span")
    assert writer.quarantine.entries() == []
    with pytest.raises(KeyError):
        writer.replay("00000000000000000001-feedbeef0000")
    with pytest.raises(KeyError):
        writer.replay("../wal/anything")


def test_spans_over_more_days_than_one_insert_allows_are_all_stored(
    wal: WriteAheadLog, writer: BatchWriter, store: Store
) -> None:
    """150 days (five months) and 150 months: one insert may create 100 daily partitions."""
    store.apply_retention(0)  # keep history forever: 150 months are all inside retention
    spans = [make_span(f"d{day}", start_ns=BASE_NS - day * DAY_NS) for day in range(150)]
    spans += [make_span(f"m{month}", start_ns=BASE_NS - month * MONTH_NS) for month in range(1, 150)]
    append(wal, spans)
    wait_for(drained(wal), what="a batch over 150 days and 150 months")
    assert stored_ids(store) == {span.span_id.hex() for span in spans}
    assert writer.quarantine.entries() == []


def test_identical_resend_is_a_no_op_and_a_different_copy_is_refused(
    wal: WriteAheadLog, writer: BatchWriter, store: Store
) -> None:
    first = make_span("refund", {"flightrec.cost.usd": 3.0})
    append(wal, [first])
    wait_for(drained(wal))
    append(wal, [first])  # an exporter's retry
    changed = make_span("refund", {"flightrec.cost.usd": 300.0}, trace_id=first.trace_id, span_id=first.span_id)
    append(wal, [changed])
    wait_for(drained(wal))
    assert store.span_copies() == 1  # before any merge
    [(cost,)] = store.engine.query("test_cost", f"SELECT sum(CostUsd) FROM {store.db}.otel_traces")
    assert cost == pytest.approx(3.0)
    assert writer.metrics.duplicate_spans == 1 and writer.metrics.conflicting_spans == 1
    assert store.stats().rejected_spans == 1


def test_duplicates_inside_one_segment_keep_the_first_copy(
    wal: WriteAheadLog, writer: BatchWriter, store: Store
) -> None:
    span = make_span("a", {"x": "first"})
    twin = make_span("a", {"x": "second"}, trace_id=span.trace_id, span_id=span.span_id)
    wal.seal_now()
    append(wal, [span, span])
    append(wal, [twin])
    wait_for(drained(wal))
    rows = store.engine.query("test_attrs", f"SELECT SpanAttributes['x'] FROM {store.db}.otel_traces")
    assert rows == [("first",)]
    assert writer.metrics.duplicate_spans == 1 and writer.metrics.conflicting_spans == 1


def test_health_says_failing_for_a_dead_writer_and_degraded_for_a_growing_quarantine(
    wal: WriteAheadLog, store: Store
) -> None:
    stopped = BatchWriter(wal, store, config=WriterConfig(workers=0))
    pipeline = IngestPipeline(IntakeConfig(), wal, store)
    judged = assess(pipeline, wal, stopped)
    assert judged.status == "failing" and "writer is not running" in judged.problems[0]

    stopped.start()
    try:
        wait_for(lambda: stopped.alive)
        assert assess(pipeline, wal, stopped).status == "ok"
        for number in range(2):
            stopped.quarantine.add(f"0000000000000000000{number}-aaaaaaaaaaaa", [WalRecord(spans=1, payload=b"x")],
                                   "bad", attempts=3)
        judged = assess(pipeline, wal, stopped, HealthPolicy(quarantine_alarm_segments=2))
        assert judged.status == "degraded" and "2 segments quarantined" in judged.problems[0]
        assert judged.quarantine.segments == 2 and judged.quarantine.spans == 2
        assert assess(pipeline, wal, stopped, HealthPolicy(quarantine_alarm_segments=3)).status == "ok"
    finally:
        stopped.shutdown()


def test_a_segment_stored_again_after_a_crash_adds_no_log_record_link_or_span(
    wal: WriteAheadLog, writer: BatchWriter, store: Store
) -> None:
    """kill -9 after the insert but before the WAL forgot the segment replays it: nothing may double,
    log records included (otel_logs never merges copies away)."""
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

    span = make_span("chat", {"ticket.id": "TCK-LOGS"})
    logs = ExportLogsServiceRequest()
    logs.resource_logs.add().scope_logs.add().log_records.add(
        time_unix_nano=span.start_time_unix_nano, trace_id=span.trace_id, span_id=span.span_id,
        event_name="gen_ai.choice", body={"string_value": "done"})
    records = [WalRecord(spans=1, payload=make_request([span]).SerializeToString()),
               WalRecord(spans=1, payload=logs.SerializeToString(), signal="logs")]
    wal.adopt(records)
    wait_for(drained(wal), what="the first copy")
    wal.adopt(records)  # the same records again, as a replay would queue them
    wait_for(drained(wal), what="the replay")
    counts = {table: store.engine.query("test_count", f"SELECT count() FROM {store.db}.{table}")[0][0]
              for table in ("otel_traces", "otel_logs", "object_links")}
    assert counts == {"otel_traces": 1, "otel_logs": 1, "object_links": 1}


def test_a_replay_restores_the_links_a_crash_lost_between_the_spans_and_their_views(
    wal: WriteAheadLog, writer: BatchWriter, store: Store
) -> None:
    """A view's insert is not atomic with its source's: kill -9 after the spans' part was committed
    and before the link view's was leaves spans without links (seen in the crash test: 407 objects for
    457 traces). The replay finds the spans stored and skips them, so the views never see them again;
    the writer must derive what they lost, once. Simulated exactly: the views are detached for the
    first insert, as if the process died between the two parts."""
    root = make_span("invoke_agent", {"ticket.id": "TCK-LOST"})
    spans = [root, make_span("chat", {"order.id": "ORD-LOST"}, trace_id=root.trace_id, parent=root.span_id)]
    records = [WalRecord(spans=2, payload=make_request(spans).SerializeToString())]
    views = ("object_links_derived", "otel_traces_trace_id_ts_mv", "object_recency_view")
    tables = ("otel_traces", "object_links", "otel_traces_trace_id_ts", "object_recency")
    for table in tables:  # no merge may hide a duplicate from the counts below
        store.engine.command("test_stop_merges", f"SYSTEM STOP MERGES {store.db}.{table}")
    for view in views:
        store.engine.command("test_detach_view", f"DETACH TABLE {store.db}.{view}")
    try:
        wal.adopt(records)
        wait_for(drained(wal), what="the insert that loses its views' rows")
    finally:
        for view in views:
            store.engine.command("test_attach_view", f"ATTACH TABLE {store.db}.{view}")

    def counts() -> dict[str, int]:
        return {table: store.engine.query("test_count", f"SELECT count() FROM {store.db}.{table}")[0][0]
                for table in tables[:3]}

    def recency() -> list[tuple]:
        return sorted(store.engine.query("test_recency", "SELECT ObjectType, ObjectId, toUnixTimestamp64Nano(max(LastSeen)) "
                                         f"FROM {store.db}.object_recency GROUP BY ObjectType, ObjectId"))

    assert counts() == {"otel_traces": 2, "object_links": 0, "otel_traces_trace_id_ts": 0}  # the crash's damage
    assert recency() == []
    wal.adopt(records)  # the replay after the restart
    wait_for(drained(wal), what="the replay")
    assert counts() == {"otel_traces": 2, "object_links": 2, "otel_traces_trace_id_ts": 1}
    assert recency() == [("order", "ORD-LOST", spans[1].start_time_unix_nano),  # each object when its span was
                         ("ticket", "TCK-LOST", spans[0].start_time_unix_nano)]
    assert store.stats().objects == 2
    links = store.engine.query("test_links", f"SELECT ObjectType, ObjectId, SpanId FROM {store.db}.object_links")
    assert sorted(links) == sorted([("ticket", "TCK-LOST", spans[0].span_id.hex()),
                                    ("order", "ORD-LOST", spans[1].span_id.hex())])
    wal.adopt(records)  # a second replay (or a client's resend) adds nothing
    wait_for(drained(wal), what="the second replay")
    assert counts() == {"otel_traces": 2, "object_links": 2, "otel_traces_trace_id_ts": 1}
