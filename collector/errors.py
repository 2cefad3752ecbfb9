"""One table from ingest error to HTTP status and gRPC code, as OTLP defines them."""

from __future__ import annotations

from enum import Enum

import grpc
from pydantic import BaseModel


class ErrorKind(str, Enum):
    BAD_REQUEST = "bad_request"
    UNAUTHENTICATED = "unauthenticated"
    FORBIDDEN = "forbidden"
    TOO_LARGE = "too_large"
    TIMEOUT = "timeout"
    UNSUPPORTED_MEDIA = "unsupported_media"
    OVERLOADED = "overloaded"
    UNAVAILABLE = "unavailable"


class ErrorStatus(BaseModel):
    http_status: int
    grpc_code: grpc.StatusCode
    retryable: bool

    model_config = {"arbitrary_types_allowed": True}


ERROR_TABLE: dict[ErrorKind, ErrorStatus] = {
    ErrorKind.BAD_REQUEST: ErrorStatus(http_status=400, grpc_code=grpc.StatusCode.INVALID_ARGUMENT, retryable=False),
    ErrorKind.UNAUTHENTICATED: ErrorStatus(
        http_status=401, grpc_code=grpc.StatusCode.UNAUTHENTICATED, retryable=False
    ),
    # A valid token that may not ingest (a person's token).
    ErrorKind.FORBIDDEN: ErrorStatus(http_status=403, grpc_code=grpc.StatusCode.PERMISSION_DENIED, retryable=False),
    ErrorKind.TOO_LARGE: ErrorStatus(http_status=413, grpc_code=grpc.StatusCode.INVALID_ARGUMENT, retryable=False),
    # The client did not send its body in time (OTLP does not list 408 as retryable).
    ErrorKind.TIMEOUT: ErrorStatus(http_status=408, grpc_code=grpc.StatusCode.DEADLINE_EXCEEDED, retryable=False),
    ErrorKind.UNSUPPORTED_MEDIA: ErrorStatus(
        http_status=415, grpc_code=grpc.StatusCode.INVALID_ARGUMENT, retryable=False
    ),
    # Backlog over its bound: the client should slow down and retry.
    ErrorKind.OVERLOADED: ErrorStatus(http_status=503, grpc_code=grpc.StatusCode.UNAVAILABLE, retryable=True),
    # The WAL could not take the batch (disk full, I/O error): retry later.
    ErrorKind.UNAVAILABLE: ErrorStatus(http_status=503, grpc_code=grpc.StatusCode.UNAVAILABLE, retryable=True),
}


class IngestError(Exception):
    """A request the collector refuses, with a message that says what was wrong."""

    def __init__(self, kind: ErrorKind, message: str, retry_after_s: int | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.retry_after_s = retry_after_s

    @property
    def status(self) -> ErrorStatus:
        return ERROR_TABLE[self.kind]
