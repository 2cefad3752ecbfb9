"""Native-format encoding of insert batches, runnable in any process.

The batch writer encodes in worker processes (the per-span Python work is the
cost of ingest) and the store owner inserts the bytes: ClickHouse parses Native
in C++. Types come from :meth:`Store.insert_types`, so worker and table agree.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from clickhouse_connect.datatypes.registry import get_from_name
from clickhouse_connect.driver.insert import InsertContext
from clickhouse_connect.driver.transform import NativeTransform
from pydantic import BaseModel


class PreparedPart(BaseModel):
    """One insert's worth of a batch: Native bytes per table and the row counts."""

    spans: int
    span_native: bytes
    logs: int = 0
    log_native: bytes = b""


class PreparedBatch(BaseModel):
    """A batch encoded for insert, in parts that each stay within one insert's partition limit.

    ``span_keys`` is ``(trace id, span id, content hash)`` of every span kept, so the
    writer can check span identity against the store before inserting; ``duplicates``
    counts identical copies dropped and ``conflicts`` names differing copies refused.
    """

    parts: list[PreparedPart]
    span_keys: list[tuple[str, str, int]]
    duplicates: int = 0
    conflicts: list[str] = []

    @property
    def spans(self) -> int:
        return sum(part.spans for part in self.parts)



class NativeEncoder:
    """Encodes column-oriented data for one table's insert columns."""

    def __init__(self, column_names: Sequence[str], type_names: Sequence[str]) -> None:
        if len(column_names) != len(type_names):
            raise ValueError("one type name per column")
        self.column_names = list(column_names)
        self.column_types = [get_from_name(name) for name in type_names]

    def encode(self, columns: Sequence[Sequence[Any]]) -> bytes:
        if not columns or not len(columns[0]):
            return b""
        context = InsertContext("t", self.column_names, self.column_types, data=columns, column_oriented=True)
        chunks = list(NativeTransform.build_insert(context))
        if context.insert_exception is not None:
            raise context.insert_exception
        # The first chunk starts with an "INSERT ... FORMAT Native\n" line meant for HTTP bodies.
        chunks[0] = chunks[0][chunks[0].index(b"\n") + 1 :]
        return b"".join(chunks)
