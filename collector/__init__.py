"""The collector: OTLP receivers (HTTP, gRPC) → decode → validate → WAL → batch writer → store.

Each stage is a small component with its own pydantic config:
:class:`IngestPipeline` (auth, limits, backlog), :class:`WriteAheadLog`,
:class:`BatchWriter`, :class:`GrpcReceiver`, and the ``/v1/traces`` router.
"""

import lazy_loader

# Exports load on first use (PEP 562), so importing one light submodule (settings import
# the configs) does not pull in the engine, protobuf or gRPC.
__getattr__, __dir__, __all__ = lazy_loader.attach(
    __name__,
    submod_attrs={
        "errors": ["ErrorKind", "IngestError"],
        "rates": ["RateResolver", "RatesConfig"],
        "rows": ["RowBuilder"],
        "pipeline": ["IngestPipeline", "IntakeConfig"],
        "wal": ["WalConfig", "WriteAheadLog"],
        "writer": ["BatchWriter", "WriterConfig"],
    },
)
