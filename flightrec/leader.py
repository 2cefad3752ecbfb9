"""One leader among the ``flightrec serve`` processes of one store, by a lease in ClickHouse.

Every process takes traffic (intake, API); the server's own periodic work runs on the leader
alone, and each such loop asks :meth:`LeaderElector.is_leader` before every pass (fencing):

| loop | runs on | why |
|---|---|---|
| OTLP receivers, WAL, writer | every node | each node acknowledges into its own WAL; inserts are deduplicated by token |
| API, and the audit appends of people's acts | every node | the node asked serves; appends are a compare-and-swap (store/audit_log.py) |
| audit head signing, legal-hold keys at start | every node | a node signs what it appended; the keys are rewritten whole, as a new generation |
| detector passes | leader | two passes would each fire and resolve the same alerts and queue their pages twice; a pass asked for through the API runs on the node asked |
| pager outbox delivery, Alertmanager re-sends | leader | the outbox has no per-entry claim: every node would send every page |
| evidence sequencer, interval checkpoints | leader | appends are compare-and-swap safe, but N sequencers race for every batch and each signs its own checkpoints; an on-demand checkpoint runs on the node asked |
| model rates (clearing at start, pricing) | leader | one clears and prices; a second node clearing at its start would leave costs unknown meanwhile |
| retention (TTL set to the setting) | leader | only the leader's setting is in force; two starting nodes would each rewrite the tables |
| re-derivation of stored history (rules changed) | leader, at start or election | a rewrite of every partition; `POST /api/rules/apply` runs it on the node asked |

Embedded chDB has one process per data directory (a second cannot open it), so there the
process is always the leader: ``exclusive`` takes over a lease found at start at once (it was
a dead process's), through the same code. Two ``flightrec serve`` processes cannot share one
chDB directory, so tests run several electors in one process over one store.

The lease is a table, not ClickHouse Keeper: a Keeper lock (an ephemeral node) would need a
Keeper client and a Keeper to test against, which this project cannot run in its tests; the
table works on chDB, a server and a cluster alike (on a cluster: the state cluster, replicated
to every node). The protocol (rows: store/leases.py):

- Each change of the lease is the next version, won by compare-and-swap: a takeover writes the
  next term, a renewal the same term, a release marks it released. Terms strictly increase.
- The holder renews every ``renew_s``. Its lease ends ``lease_s`` after it *started* writing its
  newest confirmed version, by its own monotonic clock; past that it is no leader, renewed or not.
- A contender takes over when the lease is released, or when the newest version has not changed
  for ``lease_s`` since it first read it (its own monotonic clock: no clocks are compared across
  machines). It first read that version after the holder started writing it, so the holder's
  lease has ended by then; a renewal racing a takeover is one compare-and-swap, one wins.
- Handover bound: a contender reads the lease every ``renew_s`` and wakes when a takeover is due,
  so a leader that dies is replaced within ``lease_s + renew_s`` of its last renewal (plus the
  statements' time); a released lease within ``renew_s``.
- A pass that began before the lease ended runs to its end: fencing is checked at each pass.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone

from pydantic import BaseModel, Field, model_validator

from flightrec.store.leases import LeaseRepository, LeaseRow

log = logging.getLogger(__name__)

LEADER_LEASE = "leader"


def default_node_id() -> str:
    """This process's name among the collectors: host name, pid and a random suffix (a restart is another node)."""
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"


def check_timing(lease_s: float, renew_s: float) -> None:
    """Refuse a renewal interval that is not below the lease, naming both settings."""
    if renew_s >= lease_s:
        raise ValueError(
            f"FLIGHTREC_LEADER_RENEW_S={renew_s:g} must be below FLIGHTREC_LEADER_LEASE_S={lease_s:g}: the leader "
            "renews several times per lease (e.g. every third of it), so one slow renewal does not hand over")


class LeaderConfig(BaseModel):
    lease_s: float = Field(default=15.0, gt=0, description="how long a lease lasts after its holder's last renewal")
    renew_s: float = Field(default=5.0, gt=0, description="how often the holder renews and contenders read the lease")
    exclusive: bool = Field(default=False, description="no other process can reach this store (embedded chDB): "
                            "a lease found held is a dead process's, taken over at once")

    @model_validator(mode="after")
    def _renew_within_lease(self) -> LeaderConfig:
        check_timing(self.lease_s, self.renew_s)
        return self


class LeaderStatus(BaseModel):
    """Who leads, as this process last read the lease."""

    node: str = Field(description="this process's id")
    holder: str | None = Field(description="the leader's id; null when the lease is released or has run out")
    term: int = Field(description="the newest term (0: never elected)")
    is_leader: bool = Field(description="this process holds the lease now")


class LeaderElector:
    """Campaigns for one lease; :meth:`is_leader` is the fence every leader-only pass checks.

    Lifecycle: :meth:`campaign` once (start returns knowing whether it leads), :meth:`start` the
    renewing thread, :meth:`shutdown` stops it and releases a held lease (safe twice).
    ``on_elected(term)`` is called in the thread after each term this process wins by a campaign
    of the thread (not for the first, synchronous one); its failure is logged.
    """

    def __init__(self, leases: LeaseRepository, node: str, config: LeaderConfig | None = None, *,
                 lease: str = LEADER_LEASE, on_elected: Callable[[int], None] | None = None) -> None:
        self.leases, self.node, self.lease = leases, node, lease
        self.config = config or LeaderConfig()
        self.on_elected = on_elected
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._held: LeaseRow | None = None  # the newest version this process wrote and read back as its own
        self._until = 0.0  # monotonic end of the held lease
        self._seen: LeaseRow | None = None  # the newest version read
        self._seen_at = 0.0  # monotonic time it was first read

    # -- the fence -------------------------------------------------------------------------

    def is_leader(self) -> bool:
        """Whether this process holds the lease at this moment (checked before every leader-only pass)."""
        return self._held is not None and time.monotonic() < self._until

    def term(self) -> int | None:
        """The term held now, or None."""
        held = self._held
        return held.term if held is not None and self.is_leader() else None

    def status(self) -> LeaderStatus:
        held, seen = self._held, self._seen
        if self.is_leader() and held is not None:
            return LeaderStatus(node=self.node, holder=self.node, term=held.term, is_leader=True)
        live = seen is not None and not seen.released and time.monotonic() - self._seen_at < self.config.lease_s
        return LeaderStatus(node=self.node, holder=seen.holder if live and seen else None,
                            term=seen.term if seen else 0, is_leader=False)

    # -- campaigning -----------------------------------------------------------------------

    def campaign(self) -> bool:
        """Read the lease; renew it when held, take it over when released or run out; answer whether this leads."""
        with self._lock:
            started = time.monotonic()
            latest = self.leases.latest(self.lease)
            if latest != self._seen:
                self._seen, self._seen_at = latest, time.monotonic()
            held = self._held
            if held is not None and latest is not None and latest.version == held.version:
                # Still the newest version: renew the term while it lasts, or open a new one (nobody led meanwhile).
                return self._write(latest, held.term if started < self._until else held.term + 1, started)
            self._held = None  # another version came after ours: whoever wrote it leads now
            if latest is None or latest.released or self.config.exclusive or (
                    time.monotonic() - self._seen_at >= self.config.lease_s):
                return self._write(latest, (latest.term if latest else 0) + 1, started)
            return False

    def _write(self, after: LeaseRow | None, term: int, started: float, *, release: bool = False) -> bool:
        """Compare-and-swap the version after ``after``; on a win this process holds ``term`` from ``started``."""
        version = (after.version if after else 0) + 1
        expires = datetime.now(tz=timezone.utc) + timedelta(seconds=self.config.lease_s)
        self.leases.write(self.lease, version=version, term=term, holder=self.node, released=release,
                          expires=expires)
        stored = self.leases.at(self.lease, version)
        mine = LeaseRow(version=version, term=term, holder=self.node, released=release, expires=expires)
        won = bool(stored) and all((row.holder, row.term, row.released) == (self.node, term, release) for row in stored)
        if stored and stored[0] != self._seen:
            self._seen, self._seen_at = stored[0], time.monotonic()
        if not won or release:
            self._held = None
            return False
        if self._held is None or self._held.term != term:
            log.info("leader: %s leads, term %d", self.node, term)
        self._held, self._until = mine, started + self.config.lease_s
        return True

    def release(self) -> None:
        """Give the lease up now (a clean shutdown), so a contender takes over at its next read."""
        with self._lock:
            held = self._held
            if held is None or not self.is_leader():
                self._held = None
                return
            self._write(held, held.term, time.monotonic(), release=True)
            log.info("leader: %s released term %d", self.node, held.term)

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        """Campaign every ``renew_s`` in a background thread (sooner when a takeover falls due); returns at once."""
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="flightrec-leader", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.is_set():
            before = self.term()
            try:
                leads = self.campaign()
            except Exception:  # the store refused a read or write: keep the fence's deadline, try again
                log.exception("leader: campaigning for the lease failed")
                leads = False
            term = self.term()
            if leads and term is not None and term != before and self.on_elected is not None:
                try:
                    self.on_elected(term)
                except Exception:
                    log.exception("leader: the work on taking term %d failed", term)
            self._stop.wait(self._next_wait(leads))

    def _next_wait(self, leads: bool) -> float:
        if leads:
            return self.config.renew_s
        due = self._seen_at + self.config.lease_s - time.monotonic()  # a takeover falls due then
        return min(self.config.renew_s, due if due > 0 else self.config.renew_s / 10)  # never a busy loop

    def stop(self) -> None:
        """Stop campaigning without releasing (a held lease then runs out, as a dead leader's does)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None

    def shutdown(self) -> None:
        """Stop campaigning and release a held lease; safe to call twice."""
        self.stop()
        try:
            self.release()
        except Exception:  # the lease then runs out in lease_s
            log.exception("leader: releasing the lease failed")
