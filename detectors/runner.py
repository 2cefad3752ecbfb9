"""One detector pass: read the window once, run every detector, update alerts, queue pages on changes.

Pages are stored in the pager outbox and sent by its own loop (started and stopped with the runner),
so a pass never waits on, or sleeps for, a destination.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Protocol

from pydantic import BaseModel, Field

from flightrec.detectors.alerts import AlertBook
from flightrec.detectors.budgets import BudgetConfig, BudgetDetector
from flightrec.detectors.context import PassContext, Runs
from flightrec.detectors.drift import BaselineDriftDetector, DriftConfig
from flightrec.detectors.loops import LoopConfig, LoopDetector
from flightrec.detectors.models import Alert, Finding
from flightrec.detectors.outliers import OutlierConfig, UnusualTraceDetector
from flightrec.detectors.outbox import PagerOutbox
from flightrec.detectors.pager import Delivery, PagerRoutes
from flightrec.detectors.version import VersionRegressionConfig, VersionRegressionDetector
from flightrec.store import Store

log = logging.getLogger(__name__)


class Detector(Protocol):
    name: str

    def detect(self, ctx: PassContext) -> list[Finding]: ...


class DetectorsConfig(BaseModel):
    """Every detector's settings, the window they look at, and how long a finding must hold to fire."""

    window_hours: float = Field(default=24.0, gt=0, description="how far back each pass looks")
    version: VersionRegressionConfig = Field(default_factory=VersionRegressionConfig)
    drift: DriftConfig = Field(default_factory=DriftConfig)
    outliers: OutlierConfig = Field(default_factory=OutlierConfig)
    loops: LoopConfig = Field(default_factory=LoopConfig)
    budgets: BudgetConfig = Field(default_factory=BudgetConfig)
    for_s: dict[str, float] = Field(default_factory=dict, description="per detector: seconds pending before firing")
    ui_url: str = Field(default="http://127.0.0.1:8501", description="dashboards base URL, for links in alerts")


class PassResult(BaseModel):
    """What one pass found and changed."""

    since: datetime
    until: datetime
    runs: int
    findings: int
    fired: list[Alert]
    resolved: list[Alert]
    deliveries: list[Delivery] = Field(
        default_factory=list, description="always empty: pages are queued (see queued), the outbox delivers them"
    )
    queued: int = Field(default=0, description="outbox entries this pass queued: one per transition and destination")
    seconds: float


class DetectorRunner:
    """Runs passes, one at a time, on demand or on an interval.

    ``leader`` (flightrec/leader.py) is asked before each interval pass and each delivery round:
    with several servers on one store only the leader passes and pages; on demand a pass always runs.
    """

    def __init__(
        self,
        store: Store,
        config: DetectorsConfig | None = None,
        pager: PagerRoutes | None = None,
        outbox: PagerOutbox | None = None,
        leader: Callable[[], bool] | None = None,
    ) -> None:
        self.store = store
        self.config = config or DetectorsConfig()
        self.pager = pager
        self.leads = leader or (lambda: True)
        self.outbox = outbox or (PagerOutbox(store, pager, leader=leader) if pager is not None else None)
        self.book = AlertBook(store, self.config.for_s, self.config.ui_url)
        self.detectors: list[Detector] = [
            VersionRegressionDetector(self.config.version),
            BaselineDriftDetector(self.config.drift),
            UnusualTraceDetector(self.config.outliers),
            LoopDetector(store, self.config.loops),
            BudgetDetector(store, self.config.budgets),
        ]
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.passes = 0
        self.last_pass: PassResult | None = None

    def run_pass(self, until: datetime | None = None) -> PassResult:
        with self._lock:
            started = time.perf_counter()
            until = until or datetime.now(tz=timezone.utc)
            since = until - timedelta(hours=self.config.window_hours)
            ctx = PassContext(since=since, until=until, runs=Runs.from_features(
                self.store.signals.run_features(since=since, until=until)))
            findings: list[Finding] = []
            judged: set[str] = set()
            for detector in self.detectors:
                try:
                    findings.extend(detector.detect(ctx))
                    judged.add(detector.name)
                except Exception:  # one broken detector must not silence the others
                    log.exception("detector %s failed; its alerts are left as they were", detector.name)
            transitions = self.book.apply(findings, until, judged)
            queued = self.outbox.enqueue(transitions) if self.outbox is not None and transitions else []
            self.last_pass = PassResult(
                since=since, until=until, runs=len(ctx.runs), findings=len(findings),
                fired=[t.alert for t in transitions if t.change == "fired"],
                resolved=[t.alert for t in transitions if t.change == "resolved"],
                queued=len(queued), seconds=time.perf_counter() - started,
            )
            self.passes += 1
            return self.last_pass

    def start(self, interval_s: float) -> None:
        """Start the pager outbox's delivery loop, and run a pass every ``interval_s`` seconds in a
        background thread (0: passes only on demand). Returns at once."""
        if self.outbox is not None:
            self.outbox.start()
        if interval_s <= 0 or self._thread is not None:
            return

        def loop() -> None:
            while not self._stop.wait(interval_s):
                try:
                    if self.leads():  # fencing: a node whose lease ran out passes no more
                        self.run_pass()
                except Exception:
                    log.exception("detector pass failed")

        self._thread = threading.Thread(target=loop, name="flightrec-detectors", daemon=True)
        self._thread.start()

    def shutdown(self) -> None:
        """Stop the passes, then the delivery loop (pending pages stay in the outbox); safe to call twice."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None
        if self.outbox is not None:
            self.outbox.shutdown()

