"""OTLP/gRPC receiver: trace, logs and metrics ``Export`` on the same ingest pipeline as HTTP."""

from __future__ import annotations

import logging
from concurrent import futures
from typing import Any

import grpc
from flightrec.collector.decode import decode_body
from flightrec.collector.errors import IngestError
from flightrec.collector.pipeline import IngestPipeline
from flightrec.collector.signals import SHAPES, Signal, export_response
from google.protobuf import duration_pb2
from google.rpc import error_details_pb2, status_pb2

log = logging.getLogger(__name__)

SERVICES = {
    Signal.TRACES: "opentelemetry.proto.collector.trace.v1.TraceService",
    Signal.LOGS: "opentelemetry.proto.collector.logs.v1.LogsService",
    Signal.METRICS: "opentelemetry.proto.collector.metrics.v1.MetricsService",
}


def _abort(context: grpc.ServicerContext, error: IngestError) -> None:
    status = error.status
    rich = status_pb2.Status(code=status.grpc_code.value[0], message=error.message)
    if error.retry_after_s:
        info = error_details_pb2.RetryInfo(retry_delay=duration_pb2.Duration(seconds=error.retry_after_s))
        rich.details.add().Pack(info)
    context.set_trailing_metadata((("grpc-status-details-bin", rich.SerializeToString()),))
    context.abort(status.grpc_code, error.message)


class GrpcReceiver:
    """A gRPC server for the three Export services: start() returns at once, shutdown() is safe twice."""

    def __init__(self, pipeline: IngestPipeline, host: str, port: int, workers: int = 8) -> None:
        self.pipeline = pipeline
        self.address = f"{host}:{port}"
        self._server: grpc.Server | None = None
        self._workers = workers
        self.port = port

    def export(self, body: bytes, context: grpc.ServicerContext, signal: Signal = Signal.TRACES) -> Any:
        metadata = dict(context.invocation_metadata())
        try:
            sender = self.pipeline.authorize(metadata.get("authorization"))
            decoded = self.pipeline.ingest(
                decode_body(body, "application/x-protobuf", self.pipeline.span_limits(), signal), transport="grpc",
                sender=sender,
            )
        except IngestError as error:
            self.pipeline.refused()
            _abort(context, error)
            raise  # unreachable: abort raises
        return export_response(signal, decoded.rejected, decoded.rejection_message)

    def _handler(self, signal: Signal) -> grpc.GenericRpcHandler:
        return grpc.method_handlers_generic_handler(
            SERVICES[signal],
            {
                "Export": grpc.unary_unary_rpc_method_handler(
                    lambda body, context: self.export(body, context, signal),
                    request_deserializer=lambda raw: raw,  # keep the bytes: decode once, WAL the original
                    response_serializer=SHAPES[signal].response.SerializeToString,
                )
            },
        )

    def start(self) -> None:
        limit = self.pipeline.config.max_body_bytes
        server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=self._workers, thread_name_prefix="flightrec-grpc"),
            options=[("grpc.max_receive_message_length", limit), ("grpc.so_reuseport", 0)],
        )
        server.add_generic_rpc_handlers(tuple(self._handler(signal) for signal in Signal))
        bound = server.add_insecure_port(self.address)
        if bound == 0:
            raise OSError(f"gRPC receiver could not bind {self.address}")
        self.port = bound
        server.start()
        self._server = server

    def shutdown(self, grace_s: float = 5.0) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.stop(grace_s).wait()
