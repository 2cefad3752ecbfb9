"""``/metrics`` in the Prometheus text format: the server reports on itself.

Counters the parts already keep (intake, WAL, writer, quarantine, detectors) are read
at scrape time by one collector, so the ingest path does no extra work per request;
request latency by route is a histogram fed by a small ASGI middleware. Each app has
its own registry, so several apps in one process (tests) never share numbers.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from flightrec.collector.health import QUARANTINE_WINDOW_S, assess

HEALTH_LEVELS = {"ok": 0, "degraded": 1, "failing": 2}
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


def _counter(name: str, doc: str, label: str | None = None, values: dict[str, float] | None = None,
             value: float | None = None) -> CounterMetricFamily:
    family = CounterMetricFamily(name, doc, labels=[label] if label else None)
    if label and values:
        for key, number in values.items():
            family.add_metric([key], number)
    elif value is not None:
        family.add_metric([], value)
    return family


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=value)


class RuntimeCollector(Collector):
    """Reads the running parts' own counters when Prometheus scrapes."""

    def __init__(self, runtime: Callable[[], Any]) -> None:
        self._runtime = runtime

    def collect(self) -> Iterator[Metric]:
        runtime = self._runtime()
        if runtime is None or runtime.pipeline is None or runtime.wal is None or runtime.writer is None:
            return
        intake, wal, writer = runtime.pipeline.metrics, runtime.wal, runtime.writer
        yield _counter("flightrec_intake_requests", "OTLP export requests by result", "result",
                       {"accepted": intake.requests, "refused": intake.refused_requests})
        yield _counter("flightrec_intake_spans", "spans received by result", "result",
                       {"accepted": intake.accepted_spans, "rejected": intake.rejected_spans})
        yield _counter("flightrec_intake_log_records", "log records received by result", "result",
                       {"accepted": intake.accepted_log_records, "rejected": intake.rejected_log_records})
        yield _counter("flightrec_intake_metric_points", "metric data points received (counted, not kept)",
                       value=intake.metric_points)
        yield _counter("flightrec_wal_append_errors", "WAL appends the disk refused", value=intake.wal_errors)
        redacted = runtime.pipeline.redaction_counts()
        family = CounterMetricFamily("flightrec_intake_redactions", "matches redacted at intake by signal and rule",
                                     labels=["signal", "rule"])
        for signal in ("traces", "logs"):
            counts = getattr(redacted, signal)
            for rule in sorted({*redacted.rules, *counts}):
                family.add_metric([signal, rule], counts.get(rule, 0))
        yield family
        yield _gauge("flightrec_wal_backlog_spans", "spans acknowledged, not yet in the store", wal.backlog_spans)
        yield _gauge("flightrec_wal_backlog_bytes", "WAL bytes on disk not yet in the store", wal.backlog_bytes)
        yield _gauge("flightrec_wal_backlog_limit_spans", "backlog at which intake answers 503",
                     wal.config.max_backlog_spans)
        metrics = writer.metrics
        yield _counter("flightrec_writer_inserted_spans", "spans inserted", value=metrics.inserted_spans)
        yield _counter("flightrec_writer_inserted_segments", "WAL segments inserted", value=metrics.inserted_segments)
        yield _counter("flightrec_writer_insert_failures", "failed insert attempts", value=metrics.insert_failures)
        yield _counter("flightrec_writer_identity_spans", "resent spans by outcome", "outcome",
                       {"identical": metrics.duplicate_spans, "conflicting": metrics.conflicting_spans})
        yield _gauge("flightrec_writer_up", "1 while the writer thread runs", 1 if writer.alive else 0)
        failing_since = metrics.failing_since  # read once: the writer thread may reset it meanwhile
        yield _gauge("flightrec_writer_failing_seconds", "how long the head segment has been failing (0: it is not)",
                     time.time() - failing_since if failing_since else 0)
        yield _counter("flightrec_writer_quarantined_segments", "segments quarantined since start",
                       value=metrics.quarantined_segments)
        health = assess(runtime.pipeline, wal, writer, runtime.settings.health_policy())
        quarantine = health.quarantine
        yield _gauge("flightrec_quarantine_segments", "WAL segments quarantined", quarantine.segments)
        yield _gauge("flightrec_quarantine_spans", "spans in quarantined segments", quarantine.spans)
        yield _gauge("flightrec_quarantine_bytes", "bytes of quarantined segments", quarantine.bytes)
        yield _gauge("flightrec_quarantine_recent_segments",
                     f"segments quarantined in the last {QUARANTINE_WINDOW_S:.0f} s", quarantine.recent_segments)
        yield _gauge("flightrec_health", "intake health: 0 ok, 1 degraded, 2 failing", HEALTH_LEVELS[health.status])
        leader = runtime.leader
        if leader is not None:
            yield _gauge("flightrec_leader", "1 while this process holds the leader lease", int(leader.is_leader()))
        detectors = runtime.detectors
        if detectors is not None:
            outbox = detectors.outbox
            if outbox is not None:
                family = CounterMetricFamily("flightrec_pager_deliveries", "pager delivery attempts by result",
                                             labels=["destination", "result"])
                for (destination, result), count in sorted(outbox.counts.items()):
                    family.add_metric([destination, result], count)
                yield family
            yield _counter("flightrec_detector_passes", "detector passes run", value=detectors.passes)
            last = detectors.last_pass
            if last is not None:
                yield _gauge("flightrec_detector_last_pass_seconds", "duration of the last detector pass", last.seconds)
                yield _gauge("flightrec_detector_last_pass_timestamp_seconds", "when the last pass ended",
                             last.until.timestamp())


class RequestLatency:
    """ASGI middleware: request duration by route template (never the raw path), method and status."""

    def __init__(self, app: Any, registry: CollectorRegistry) -> None:
        self.app = app
        self.histogram = Histogram(
            "flightrec_http_request_duration_seconds", "HTTP request latency by route",
            ["route", "method", "status"], registry=registry, buckets=LATENCY_BUCKETS,
        )

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = {"code": 500}

        async def tracking_send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        finally:
            route = scope.get("route")
            template = getattr(route, "path_format", None) or "unmatched"
            self.histogram.labels(template, scope.get("method", ""), str(status["code"])).observe(
                time.perf_counter() - started
            )
