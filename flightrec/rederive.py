"""Re-deriving stored history after a rules change, as one background job at a time.

``flightrec serve`` starts it when the stored rows were derived with other rules than the
ones in force (a rule added, a first start over old data); ``POST /api/rules/apply`` (and
``flightrec rules apply`` through it) re-reads the rules file and starts it again.
"""

from __future__ import annotations

import logging
import threading
import time

from pydantic import BaseModel, Field

from flightrec.store import Store
from flightrec.store.rules import RuleSet

log = logging.getLogger(__name__)


class RederiveStatus(BaseModel):
    """Where the re-derivation of stored history stands."""

    state: str = Field(default="idle", description="idle, running, done or failed")
    partitions_done: int = 0
    partitions: int = 0
    spans: int = Field(default=0, description="spans re-derived by the last finished run")
    started_at: float | None = None
    finished_at: float | None = None
    error: str = ""
    stale: bool = Field(default=False, description="stored rows were derived with other rules than those in force")


class RederiveJob:
    """One re-derivation at a time over one store; ``start`` returns at once."""

    def __init__(self, store: Store, default_tenant: str) -> None:
        self.store = store
        self._tenant = default_tenant
        self._lock = threading.Lock()
        self._status = RederiveStatus()
        self._thread: threading.Thread | None = None

    def status(self) -> RederiveStatus:
        state = self.store.meaning.state()
        with self._lock:
            return self._status.model_copy(update={"stale": bool(state and state.stale)})

    def start(self, rules: RuleSet) -> bool:
        """Derive with ``rules`` from now on and re-derive history, unless a run is going; answer whether it started."""
        with self._lock:
            if self._status.state == "running":
                return False
            self._status = RederiveStatus(state="running", started_at=time.time())
        self._thread = threading.Thread(target=self._run, args=(rules,), name="flightrec-rederive", daemon=True)
        self._thread.start()
        return True

    def _progress(self, done: int, total: int) -> None:
        with self._lock:
            self._status.partitions_done, self._status.partitions = done, total

    def _run(self, rules: RuleSet) -> None:
        try:
            self.store.config.rules = rules
            spans = self.store.meaning.rederive(rules, self._tenant, self._progress)
            update = {"state": "done", "spans": spans}
            log.info("rules: re-derived %d stored spans", spans)
        except Exception as exc:  # reported through status; the stored rows keep their last derivation
            log.exception("rules: re-deriving stored history failed")
            update = {"state": "failed", "error": str(exc)[:500]}
        with self._lock:
            self._status = self._status.model_copy(update={**update, "finished_at": time.time()})

    def wait(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)
