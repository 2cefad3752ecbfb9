"""The collector: OTLP receivers (HTTP, gRPC) → decode → validate → WAL → batch writer → store.

Each stage is a small component with its own pydantic config:
:class:`IngestPipeline` (auth, limits, backlog), :class:`WriteAheadLog`,
:class:`BatchWriter`, :class:`GrpcReceiver`, and the ``/v1/traces`` router.
"""

from collector.errors import ErrorKind, IngestError
from collector.normalize import NormalizeConfig, Normalizer
from collector.pipeline import IngestPipeline, IntakeConfig
from collector.wal import WalConfig, WriteAheadLog
from collector.writer import BatchWriter, WriterConfig

__all__ = [
    "BatchWriter",
    "ErrorKind",
    "IngestError",
    "IngestPipeline",
    "IntakeConfig",
    "NormalizeConfig",
    "Normalizer",
    "WalConfig",
    "WriteAheadLog",
    "WriterConfig",
]
