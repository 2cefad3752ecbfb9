"""OTLP/HTTP receiver: ``POST /v1/traces`` (protobuf or JSON, gzip), answers as OTLP defines."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.concurrency import run_in_threadpool
from flightrec.collector.decode import (
    JSON_TYPES,
    PROTOBUF_TYPES,
    DecodedRequest,
    Signal,
    media_type,
)
from flightrec.collector.errors import ErrorKind, IngestError
from flightrec.collector.pipeline import IngestPipeline
from flightrec.collector.signals import export_response
from google.protobuf import json_format
from google.rpc import status_pb2


def _encode(message, as_json: bool) -> tuple[bytes, str]:
    if as_json:
        return json_format.MessageToJson(message, indent=None).encode(), "application/json"
    return message.SerializeToString(), "application/x-protobuf"


def error_response(error: IngestError, as_json: bool) -> Response:
    """An OTLP error: google.rpc.Status in the request's encoding, Retry-After when retryable."""
    status = error.status
    body, content_type = _encode(status_pb2.Status(code=status.grpc_code.value[0], message=error.message), as_json)
    headers = {"Retry-After": str(error.retry_after_s)} if error.retry_after_s else {}
    return Response(content=body, status_code=status.http_status, media_type=content_type, headers=headers)


def success_response(decoded: DecodedRequest, as_json: bool) -> Response:
    body, content_type = _encode(export_response(decoded.signal, decoded.rejected, decoded.rejection_message), as_json)
    return Response(content=body, status_code=200, media_type=content_type)


async def _read_limited(request: Request, limit: int, timeout_s: float) -> bytes:
    """The body, refused past ``limit`` bytes or when it takes longer than ``timeout_s`` to arrive."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise IngestError(ErrorKind.TOO_LARGE, f"body is {declared} bytes; the limit is {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(timeout_s):
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise IngestError(ErrorKind.TOO_LARGE, f"body exceeds the limit of {limit} bytes")
                chunks.append(chunk)
    except TimeoutError:
        raise IngestError(
            ErrorKind.TIMEOUT, f"body not received within {timeout_s:g} s ({size} bytes arrived)"
        ) from None
    return b"".join(chunks)


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"description": "body could not be decoded"},
    401: {"description": "missing or wrong ingest token"},
    403: {"description": "a person's token: ingest takes an agent's token or a shared ingest token"},
    408: {"description": "body not received within the body timeout"},
    413: {"description": "body over the size limit, or more items than the backlog can hold"},
    415: {"description": "unsupported Content-Type or Content-Encoding"},
    503: {"description": "backlog full; retry after Retry-After seconds"},
}


def build_otlp_router(get_pipeline: Callable[..., IngestPipeline]) -> APIRouter:
    """/v1/traces, /v1/logs and /v1/metrics; ``get_pipeline`` is the FastAPI dependency that supplies the pipeline."""
    router = APIRouter(tags=["otlp"])

    async def export(request: Request, pipeline: IngestPipeline, signal: Signal) -> Response:
        kind = media_type(request.headers.get("content-type"))
        as_json = kind not in PROTOBUF_TYPES
        try:
            sender = await run_in_threadpool(pipeline.authorize, request.headers.get("authorization"))
            if kind not in PROTOBUF_TYPES | JSON_TYPES:
                raise IngestError(
                    ErrorKind.UNSUPPORTED_MEDIA,
                    f"Content-Type {request.headers.get('content-type')!r} is not supported; "
                    "use application/x-protobuf or application/json",
                )
            body = await _read_limited(request, pipeline.config.max_body_bytes, pipeline.config.body_timeout_s)
            decoded = await run_in_threadpool(
                pipeline.ingest_body,
                body,
                request.headers.get("content-type"),
                request.headers.get("content-encoding"),
                signal,
                sender,
            )
        except IngestError as error:
            pipeline.refused()
            return error_response(error, as_json)
        return success_response(decoded, as_json)

    @router.post("/v1/traces", summary="OTLP/HTTP trace export (protobuf or JSON, optionally gzip)",
                 responses=ERROR_RESPONSES)
    async def export_traces(request: Request, pipeline: IngestPipeline = Depends(get_pipeline)) -> Response:
        return await export(request, pipeline, Signal.TRACES)

    @router.post("/v1/logs", summary="OTLP/HTTP log export: records kept, GenAI events joined to their spans",
                 responses=ERROR_RESPONSES)
    async def export_logs(request: Request, pipeline: IngestPipeline = Depends(get_pipeline)) -> Response:
        return await export(request, pipeline, Signal.LOGS)

    @router.post("/v1/metrics", summary="OTLP/HTTP metric export: data points counted and acknowledged, not kept",
                 responses=ERROR_RESPONSES)
    async def export_metrics(request: Request, pipeline: IngestPipeline = Depends(get_pipeline)) -> Response:
        return await export(request, pipeline, Signal.METRICS)

    return router
