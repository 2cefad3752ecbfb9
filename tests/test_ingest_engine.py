"""The engine parser (store/otlp.py, collector/engine_ingest.py) against the Python path, on real chDB.

Wire compatibility with opentelemetry-proto: a request holding every AnyValue kind, nested
values to the declared depth and past it, events, links, resource and scope attributes goes
through both paths; every stored column must match (ContentHash aside: each path has its own).
"""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue, KeyValueList

from flightrec.collector.engine_ingest import EngineSegmentWriter, frame
from flightrec.collector.prepare import SegmentPreparer
from flightrec.collector.wal import WalRecord
from flightrec.store import Store
from flightrec.store.models import SPAN_COLUMN_NAMES
from flightrec.store.otlp import (DEPTH, TRACE_SCHEMA, SegmentSource, format_settings, insert_statement, keys_query,
                                  spans_query)
from tests.otlp_helpers import BASE_NS, make_request, make_span


def _nested(depth: int) -> AnyValue:
    """An array holding a map holding an array ... ``depth`` levels deep, a string at the bottom."""
    value = AnyValue(string_value="bottom")
    for level in range(depth):
        if level % 2:
            value = AnyValue(kvlist_value={"values": [KeyValue(key=f"k{level}", value=value)]})
        else:
            value = AnyValue(array_value={"values": [value, AnyValue(int_value=level)]})
    return value


def _every_kind() -> list[KeyValue]:
    values = {
        "str": AnyValue(string_value="text with \"quotes\", a / slash, é and a\nnewline"),
        "empty_str": AnyValue(string_value=""),
        "unset": AnyValue(),
        "int": AnyValue(int_value=-42),
        "bool_true": AnyValue(bool_value=True),
        "bool_false": AnyValue(bool_value=False),
        "double": AnyValue(double_value=1.5),
        "double_integral": AnyValue(double_value=100.0),
        "double_nan": AnyValue(double_value=float("nan")),
        "bytes": AnyValue(bytes_value=b"\x00\x01binary"),
        "array": AnyValue(array_value={"values": [AnyValue(string_value="a"), AnyValue(int_value=3),
                                                  AnyValue(bool_value=False), AnyValue(double_value=0.25),
                                                  AnyValue(bytes_value=b"\xff"), AnyValue()]}),
        "kvlist": AnyValue(kvlist_value={"values": [KeyValue(key="a", value=AnyValue(string_value="1")),
                                                    KeyValue(key="b", value=AnyValue(double_value=2.0)),
                                                    KeyValue(key="a", value=AnyValue(string_value="last"))]}),
        "nested_at_depth": _nested(DEPTH),
    }
    pairs = [KeyValue(key=key, value=value) for key, value in values.items()]
    return [*pairs, KeyValue(key="str", value=AnyValue(string_value="a key twice: the last value wins"))]


def _request() -> bytes:
    span = make_span("every kind", attrs={"plain": "x"})
    span.attributes.extend(_every_kind())
    event = span.events.add(time_unix_nano=BASE_NS + 5, name="an event")
    event.attributes.extend(_every_kind())
    link = span.links.add(trace_id=os.urandom(16), span_id=os.urandom(8), trace_state="k=v")
    link.attributes.extend(_every_kind())
    span.status.code, span.status.message = 2, "failed"
    span.kind = 3
    request = make_request([span, make_span("second")], resource={"service.name": "svc", "deploy": 7})
    request.resource_spans[0].resource.attributes.extend(_every_kind())
    request.resource_spans[0].scope_spans[0].scope.attributes.extend(_every_kind())
    return request.SerializeToString()


def _engine_rows(store: Store, path: Path, payloads: list[bytes]) -> dict[str, tuple]:
    """The rows the engine's insert would store (the same SELECT), read back instead of inserted."""
    path.write_bytes(frame(payloads))
    rows = store.engine.query("test_engine_rows", spans_query(SegmentSource(path=str(path))),
                              {"path": str(path)}, settings=format_settings(TRACE_SCHEMA))
    return {row[SPAN_COLUMN_NAMES.index("SpanId")]: row for row in rows}


def _python_rows(store: Store, payloads: list[bytes]) -> dict[str, tuple]:
    preparer = SegmentPreparer(store.insert_types())
    batch = preparer.decode([WalRecord(spans=2, payload=payload) for payload in payloads])
    return {row[SPAN_COLUMN_NAMES.index("SpanId")]: row for row in batch.span_rows}


def test_engine_rows_match_the_python_path_column_by_column(store: Store, tmp_path: Path) -> None:
    payloads = [_request()]
    engine, python = _engine_rows(store, tmp_path / "seg.otlp", payloads), _python_rows(store, payloads)
    assert set(engine) == set(python) and len(engine) == 2
    for span_id, expected in python.items():
        got = dict(zip(SPAN_COLUMN_NAMES, engine[span_id]))
        for column, value in zip(SPAN_COLUMN_NAMES, expected):
            if column == "ContentHash":
                assert got[column] != 0
            elif column == "Timestamp":
                assert int(got[column].timestamp() * 1e6) == value // 1000
            elif column == "Events.Timestamp":
                assert [int(t.timestamp() * 1e6) for t in got[column]] == [t // 1000 for t in value]
            else:
                assert _plain(got[column]) == _plain(value), column


def _plain(value: object) -> object:
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    return value


def test_values_nested_past_the_declared_depth_keep_their_bytes(store: Store, tmp_path: Path) -> None:
    span = make_span("deep")
    deep = _nested(DEPTH + 2)
    span.attributes.append(KeyValue(key="deep", value=deep))
    payload = make_request([span]).SerializeToString()
    row = dict(zip(SPAN_COLUMN_NAMES, next(iter(_engine_rows(store, tmp_path / "deep.otlp", [payload]).values()))))
    text = row["SpanAttributes"]["deep"]
    assert text.startswith('{"k3":[{"otlp.protobuf.base64":')  # the levels above DEPTH are JSON, as in Python
    kept = json.loads(text)["k3"][0]["otlp.protobuf.base64"]  # the levels below: their protobuf bytes, whole
    assert KeyValueList.FromString(base64.b64decode(kept)).values[0].key == "k1"


def test_identical_copies_are_dropped_and_differing_ones_refused(store: Store, tmp_path: Path) -> None:
    writer = EngineSegmentWriter(store, tmp_path / "engine", SegmentPreparer(store.insert_types()))
    first = make_span("first")
    twin = make_span("twin", trace_id=first.trace_id, span_id=first.span_id)  # same ids, other content
    again = make_request([first]).SerializeToString()
    result = writer.write([WalRecord(spans=3, payload=make_request([first, first, twin]).SerializeToString())], "s1")
    assert (result.inserted, result.duplicates, len(result.conflicts)) == (1, 1, 1)
    replay = writer.write([WalRecord(spans=1, payload=again)], "s1")  # a crash before the WAL forgot it
    later = writer.write([WalRecord(spans=1, payload=make_request([twin]).SerializeToString())], "s2")
    assert (replay.inserted, replay.duplicates) == (0, 1)
    assert (later.inserted, len(later.conflicts)) == (0, 1)
    rows = store.engine.query("test_copies", f"SELECT SpanName FROM {store.db}.otel_traces")
    assert rows == [("first",)]


def test_segment_over_many_days_is_inserted_in_groups(store: Store, tmp_path: Path) -> None:
    """120 days (four months): one insert may create 100 daily partitions, so this takes two."""
    writer = EngineSegmentWriter(store, tmp_path / "engine", SegmentPreparer(store.insert_types()))
    day = 86_400 * 10**9
    spans = [make_span(f"d{i}", start_ns=BASE_NS - i * day) for i in range(120)]  # inside the 180-day TTL
    result = writer.write([WalRecord(spans=120, payload=make_request(spans).SerializeToString())], "days")
    assert result.inserted == 120
    assert store.engine.query("test_days", f"SELECT count(), uniqExact(toDate(Timestamp)) "
                              f"FROM {store.db}.otel_traces") == [(120, 120)]


def test_server_statements_read_the_insert_body_and_parse(store: Store) -> None:
    """No server runs here: the server's statements are rendered, then parsed by the engine (EXPLAIN AST)."""
    body = SegmentSource(body=b"bytes")
    sql, params = insert_statement(body, store.db, skip=[("a" * 32, "b" * 16)], days=[20261203], first_copies=True)
    assert sql.endswith("FORMAT Protobuf") and "FROM input('resource_spans Array(" in sql and "file(" not in sql
    assert set(params) == {"skip", "days"}
    assert "FROM segment " in keys_query(body) and "FROM segment " in spans_query(body, numbered=True)
    assert "file({path:String}, 'Protobuf'" in spans_query(SegmentSource(path="/x"), insert=True)
    for statement, bound in ((sql, params), (keys_query(body), {}), (spans_query(body, numbered=True), {})):
        assert store.engine.query("test_server_sql", f"EXPLAIN AST {statement}", bound)
