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


class PreparedBatch(BaseModel):
    """A batch encoded for insert: Native bytes per table and the row counts."""

    spans: int
    links: int
    span_native: bytes
    link_native: bytes


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
