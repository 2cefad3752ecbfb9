"""The store: ClickHouse schema, migrations, the one execution layer and every query.

Nothing outside this package builds SQL. Callers get a :class:`Store` from
:func:`open_store` and call its named query functions, which take typed keyword
arguments and return pydantic models.
"""

from store.config import StoreConfig, parse_dsn
from store.engine import StoreError
from store.models import ObjectActivity, ObjectRef, RunFlags, SpanBatch, SpanRecord, SpanRow, StoreStats
from store.repository import Store, open_store

__all__ = [
    "ObjectActivity",
    "ObjectRef",
    "RunFlags",
    "SpanBatch",
    "SpanRecord",
    "SpanRow",
    "Store",
    "StoreConfig",
    "StoreError",
    "StoreStats",
    "open_store",
    "parse_dsn",
]
