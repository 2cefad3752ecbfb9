"""The one ingest path HTTP and gRPC share: auth, limits, decode, redaction, backlog check, WAL."""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter

from flightrec.collector.decode import DecodedRequest, decode_body, decompress
from flightrec.collector.errors import ErrorKind, IngestError
from flightrec.collector.limits import DEFAULT_MAX_FUTURE_S, SpanLimits
from flightrec.collector.signals import SHAPES, Signal
from flightrec.collector.limits import MAX_REASONS
from flightrec.collector.redact import RedactionConfig, RedactionCounts, Redactor, link_keys
from flightrec.collector.rows import attributes_to_dict
from flightrec.collector.senders import OPEN, ForeignSpans, IngestAuth, Sender, check_claims, drop_spans, stamp
from flightrec.collector.wal import BacklogFull, WriteAheadLog
from flightrec.store.engine import StoreError
from flightrec.store import Store
from pydantic import BaseModel, Field

log = logging.getLogger(__name__)


class IntakeConfig(BaseModel):
    """Limits and credentials of the receivers."""

    ingest_tokens: list[str] = Field(default_factory=list,
                                     description="shared Bearer tokens that speak for any agent; set: a token is required")
    require_token: bool = Field(default=False, description="refuse batches without a token even with no shared tokens")
    foreign_spans: ForeignSpans = Field(
        default="reject", description="spans an agent token does not speak for: reject them (partial success) or "
        "keep them, marked by the token's name for the story to show")
    max_body_bytes: int = Field(default=64 * 1024 * 1024, ge=1024, description="largest body after decompression")
    retry_after_s: int = Field(default=2, ge=1, description="Retry-After sent when the backlog is full")
    retention_days: int = Field(default=0, ge=0, description="reject spans older than this (0: no limit)")
    max_future_s: int = Field(
        default=DEFAULT_MAX_FUTURE_S, ge=1, description="reject spans, ends and events further ahead than this"
    )
    body_timeout_s: float = Field(default=30.0, gt=0, description="longest time a client may take to send a body")
    redaction: RedactionConfig = Field(default_factory=RedactionConfig, description="what is redacted before the WAL")


class IntakeMetrics(BaseModel):
    requests: int = 0
    accepted_spans: int = 0
    rejected_spans: int = 0
    accepted_log_records: int = 0
    rejected_log_records: int = 0
    metric_points: int = Field(default=0, description="metric data points received (counted, not kept)")
    refused_requests: int = 0
    foreign_spans: int = Field(default=0, description="spans claiming an agent their token does not speak for")
    wal_errors: int = 0
    last_wal_error: str = ""
    wal_failing_since: float = Field(default=0.0, description="unix time since which WAL appends fail (0: they work)")


class IngestPipeline:
    """Takes decoded requests to the WAL; answers what OTLP says to answer."""

    def __init__(self, config: IntakeConfig, wal: WriteAheadLog, store: Store) -> None:
        self.config = config
        self.wal = wal
        self.store = store
        self.metrics = IntakeMetrics()
        self.auth = IngestAuth(config.ingest_tokens, config.require_token, lambda token: store.principals.by_token(token=token))
        self._metrics_lock = threading.Lock()
        self._open = True
        self.redactor = Redactor(config.redaction)
        self.redactions = RedactionCounts(enabled=config.redaction.enabled, rules=self.redactor.rule_names)
        self._rules_seen: object = None

    def close_intake(self) -> None:
        """Refuse new batches (shutdown); what is in the WAL still gets inserted."""
        self._open = False

    def authorize(self, authorization: str | None) -> Sender:
        """Who sends the batch (``Authorization: Bearer <token>``); IngestError when refused."""
        return self.auth.sender(authorization)

    def refused(self) -> None:
        with self._metrics_lock:
            self.metrics.refused_requests += 1

    def ingest_body(
        self, body: bytes, content_type: str | None, content_encoding: str | None, signal: Signal = Signal.TRACES,
        sender: Sender = OPEN,
    ) -> DecodedRequest:
        """OTLP/HTTP: decompress within limits, decode, then :meth:`ingest`."""
        raw = decompress(body, content_encoding, self.config.max_body_bytes)
        return self.ingest(decode_body(raw, content_type, self.span_limits(), signal), transport="http", sender=sender)

    def span_limits(self) -> SpanLimits:
        """The times a span arriving now may carry: inside retention (older ones would be deleted at
        once, so rejecting them beats acknowledging a loss) and not past the allowed clock skew."""
        return SpanLimits.now(retention_days=self.config.retention_days, max_future_s=self.config.max_future_s)

    def ingest(self, decoded: DecodedRequest, transport: str, sender: Sender = OPEN) -> DecodedRequest:
        """Make the valid spans durable, count the rejected ones; raise IngestError to refuse."""
        if not self._open:
            raise IngestError(ErrorKind.UNAVAILABLE, "the collector is shutting down", retry_after_s=1)
        if decoded.signal is Signal.METRICS:  # counted so default exporters stay quiet; not kept
            with self._metrics_lock:
                self.metrics.requests += 1
                self.metrics.metric_points += decoded.accepted
            return decoded
        redacted = self._redact(decoded)
        changed = bool(redacted)
        if decoded.signal is Signal.TRACES:
            changed |= self._attribute(decoded, sender)
        if changed:
            decoded.payload = decoded.request.SerializeToString()
        noun = SHAPES[decoded.signal].items_name + "s"
        if decoded.accepted > self.wal.config.max_backlog_spans:
            raise IngestError(
                ErrorKind.TOO_LARGE,
                f"request holds {decoded.accepted} {noun}, more than the backlog can ever hold "
                f"({self.wal.config.max_backlog_spans}); send them in smaller batches",
            )
        if decoded.accepted:
            try:
                self.wal.append(decoded.payload, decoded.accepted, decoded.signal.value)
            except BacklogFull as exc:
                raise IngestError(
                    ErrorKind.OVERLOADED,
                    f"ingest backlog is full ({exc.backlog} spans waiting for the store); retry later",
                    retry_after_s=self.config.retry_after_s,
                ) from exc
            except OSError as exc:
                log.error("wal: append failed: %s", exc)
                with self._metrics_lock:
                    self.metrics.wal_errors += 1
                    self.metrics.last_wal_error = str(exc)[:300]
                    self.metrics.wal_failing_since = self.metrics.wal_failing_since or time.time()
                raise IngestError(
                    ErrorKind.UNAVAILABLE, f"could not make the batch durable: {exc}", retry_after_s=5
                ) from exc
        if decoded.rejected:
            self._record_rejections(transport, decoded)
        with self._metrics_lock:
            if redacted:  # counted once durable: a refused batch is sent again
                self.redactions.add(decoded.signal.value, redacted)
            if decoded.accepted:
                self.metrics.wal_failing_since = 0.0
            self.metrics.requests += 1
            if decoded.signal is Signal.LOGS:
                self.metrics.accepted_log_records += decoded.accepted
                self.metrics.rejected_log_records += decoded.rejected
            else:
                self.metrics.accepted_spans += decoded.accepted
                self.metrics.rejected_spans += decoded.rejected
        return decoded

    def _redact(self, decoded: DecodedRequest) -> Counter[str]:
        """Replace personal data in place, before anything reads the request (the claims check included)."""
        if not decoded.accepted or not self.redactor.config.enabled:
            return Counter()
        rules = self.store.config.rules
        if rules is not self._rules_seen:  # the attributes link rules read are never redacted
            self.redactor.allow_also(link_keys(rules))
            self._rules_seen = rules
        return self.redactor.redact(decoded.request, decoded.payload, decoded.signal.value)

    def redaction_counts(self) -> RedactionCounts:
        """What redaction replaced since start (a copy)."""
        with self._metrics_lock:
            return self.redactions.model_copy(deep=True)

    def _attribute(self, decoded: DecodedRequest, sender: Sender) -> bool:
        """Check what a restricted sender's spans claim; stamp the sender on every resource. True: it changed."""
        request, changed = decoded.request, False
        if sender.restricted and decoded.accepted:
            rules, tenant = self.store.config.rules, self.store.config.default_tenant
            try:
                check = check_claims(request, sender, lambda maps: self.store.meaning.claims(rules, tenant, maps),
                                     attributes_to_dict)
            except StoreError as exc:
                raise IngestError(ErrorKind.UNAVAILABLE, f"cannot check what the spans claim now ({exc}); retry",
                                  retry_after_s=5) from exc
            if check.foreign:
                with self._metrics_lock:
                    self.metrics.foreign_spans += len(check.foreign)
            if check.foreign and self.config.foreign_spans == "reject":
                drop_spans(request, set(check.foreign))
                decoded.reasons = [*decoded.reasons, *check.foreign.values()][:MAX_REASONS]
                decoded.rejected += len(check.foreign)
                decoded.accepted -= len(check.foreign)
                changed = True
        return changed | stamp(request, sender)

    def _record_rejections(self, transport: str, decoded: DecodedRequest) -> None:
        try:
            self.store.record_rejections(
                transport=transport, rejected=decoded.rejected, reason=decoded.rejection_message
            )
        except Exception as exc:  # the count is also in metrics; never fail the batch over it
            log.warning("could not record %d rejected spans: %s", decoded.rejected, exc)
