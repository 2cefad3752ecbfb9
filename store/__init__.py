"""The store: ClickHouse schema, migrations, the one execution layer and every query.

Nothing outside this package builds SQL. Callers get a :class:`Store` from
:func:`open_store` and call its named query functions, which take typed keyword
arguments and return pydantic models.
"""

import lazy_loader

# Exports load on first use (PEP 562), so importing one light submodule (settings import
# the configs) does not pull in the engine, protobuf or gRPC.
__getattr__, __dir__, __all__ = lazy_loader.attach(
    __name__,
    submod_attrs={
        "config": ["StoreConfig", "parse_dsn"],
        "engine": ["StoreError"],
        "models": ["ObjectActivity", "ObjectRef", "RunFlags", "SpanBatch", "SpanRecord", "SpanRow", "StoreStats"],
        "repository": ["Store", "open_store"],
    },
)
