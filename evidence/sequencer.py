"""The sequencer: appends every new stored span and audit entry to the evidence log, and signs checkpoints.

One background thread per server process (flightrec/runtime.py starts it). A pass reads the tree
size, then appends what is new, batch after batch, each by compare-and-swap (store/evidence_log.py:
the insert deduplication token names the tree size and root a batch extends; every leaf row names
the process that wrote it, so a loser reads the winner's rows back and retries):

- new audit entries (after the newest sequenced one) through Python: they are few;
- spans past a cursor on (InsertedAt, TraceId, SpanId): one ``INSERT ... SELECT`` in which the
  engine hashes the record, the content and the leaf, so no row travels through Python; only the
  batch's leaf hashes come back, for the tree's nodes;
- every minute a sweep over ``lookback_s`` behind the cursor: when the window holds more spans than
  span leaves (two counts), the spans that are no leaf yet are appended through Python (rows that
  became visible after the cursor passed them, ids the engine's leaf form leaves to Python).

Reading the size *before* what is new is what keeps a racer from appending a leaf twice: whatever
another process appended after our size read either is excluded as a leaf (a span's leaf is seen
at its InsertedAt, so the check reads leaves from the cursor on) or takes our size's token.

Crash safety: leaves and nodes are two inserts. A frontier is recovered from the stored nodes of
the tree's edge; when the newest batch's nodes are missing (a crash between the two), they are
recomputed from that batch's leaves and inserted with the token the crashed writer would have
used, so a late duplicate of them is dropped.

What the look-back window can still miss: a row whose ``InsertedAt`` is older than the cursor by
more than the window when it becomes visible (an insert that takes longer than the window to
commit, an async insert flushed late, clock skew between nodes, a writer that sets ``InsertedAt``
itself). ``flightrec verify --store`` counts spans that are no leaf. A later copy of a span that is
already a leaf (a writer without insert-once identity) becomes a leaf of its own.
"""

from __future__ import annotations

import logging
import os
import random
import socket
import threading
import time as clock
import uuid
from collections.abc import Callable
from datetime import datetime, timezone

from pydantic import BaseModel, Field

from flightrec.evidence import leaves as canon
from flightrec.evidence.checkpoints import sign_checkpoint
from flightrec.evidence.keys import SigningKey
from flightrec.evidence.merkle import Frontier
from flightrec.store.audit import AuditEntry
from flightrec.store.evidence_log import LeafRow, NewSpan, SpanCursor, StoredCheckpoint
from flightrec.store.repository import Store

log = logging.getLogger(__name__)

RACE_ATTEMPTS = 50


class SequencerConfig(BaseModel):
    poll_s: float = Field(default=1.0, gt=0, description="seconds between passes")
    batch: int = Field(default=50_000, ge=1, description="at most this many leaves per append (one engine insert)")
    lookback_s: float = Field(default=300.0, ge=0,
                              description="how far back a sweep looks for rows that became visible late")
    sweep_s: float = Field(default=60.0, gt=0, description="seconds between sweeps (and the first pass is one)")
    checkpoint_interval_s: float = Field(default=60.0, ge=0, description="seconds between signed checkpoints (0: off)")


class LogDamaged(RuntimeError):
    """The stored tree cannot be extended as it is (nodes missing below the newest batch)."""


def edge_coordinates(size: int) -> list[tuple[int, int]]:
    """The (level, index) of the complete subtrees a tree of ``size`` leaves ends with, largest first."""
    coordinates, start = [], 0
    for level in range(size.bit_length() - 1, -1, -1):
        if size >> level & 1:
            coordinates.append((level, start >> level))
            start += 1 << level
    return coordinates


def _micros(moment: datetime) -> int:
    moment = moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment
    return int(moment.timestamp() * 1_000_000)


class Sequencer:
    """Appends new spans and audit entries as leaves; signs checkpoints at an interval and on demand."""

    def __init__(self, store: Store, key: SigningKey, config: SequencerConfig | None = None,
                 leader: Callable[[], bool] | None = None) -> None:
        self.store, self.repo, self.key = store, store.evidence, key
        self.config = config or SequencerConfig()
        self.leads = leader or (lambda: True)  # asked before each background pass (flightrec/leader.py)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:12]}"
        self._frontier: Frontier | None = None
        self._size: int | None = None  # the tree size after this process's last append
        self._cursor: SpanCursor | None = None  # the last span appended past the cursor
        self._audit_through: int | None = None  # the newest audit entry that is a leaf
        self._last_sweep: float | None = None
        self._last_checkpoint = 0.0
        self.appended = 0

    # -- lifecycle ---------------------------------------------------------------

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="evidence-sequencer", daemon=True)
        self._thread.start()

    def shutdown(self) -> None:
        """Stop the thread (a pass in progress finishes); safe to call twice."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=60)
            self._thread = None

    def _loop(self) -> None:
        self._last_checkpoint = clock.monotonic()
        while not self._stop.is_set():
            try:
                if self.leads():  # on demand (checkpoint()) any node sequences: appends are compare-and-swap
                    self.run_once()
                    interval = self.config.checkpoint_interval_s
                    if interval and clock.monotonic() - self._last_checkpoint >= interval:
                        self.checkpoint(sequence=False)
            except Exception:  # the next pass retries; verification shows what is not sequenced
                log.exception("evidence: a sequencer pass failed")
            self._stop.wait(self.config.poll_s)

    # -- appending -----------------------------------------------------------------

    def run_once(self) -> int:
        """Append everything new now (batch after batch); the number of leaves this process appended."""
        with self._lock:
            total, lost, generation = 0, 0, 0
            now = clock.monotonic()
            sweep = self._last_sweep is None or now - self._last_sweep >= self.config.sweep_s
            while True:
                size, batch_start = self.repo.tree_size()
                if size != self._size:  # another process appended (or this is the first pass): re-read where we are
                    self._cursor, self._audit_through = None, None
                frontier = self._frontier_at(size, batch_start)
                root = frontier.root().hex()
                token = f"leaves:{size}:{root}" + (f":{generation}" if generation else "")
                appended = self._append_next(size, token, sweep)
                if appended is None:
                    if sweep:
                        self._last_sweep = now
                    return total
                hashes, any_there = self.repo.batch_from(size, sequencer=self.id)
                if hashes:
                    self._store_nodes(frontier, size, hashes)
                    self._size = size + len(hashes)
                    if isinstance(appended, SpanCursor):
                        self._cursor = appended
                    elif appended:
                        self._audit_through = max(appended)
                    total += len(hashes)
                    self.appended += len(hashes)
                    if self._stop.is_set():
                        return total
                    continue
                self._frontier, self._size = None, None
                if not any_there:  # the token was used, yet no leaf is there: the end of the log was removed
                    log.error("evidence: leaves from %d were written before but are gone (run `flightrec verify "
                              "--store`); appending after what is left", size)
                    generation += 1
                else:
                    lost += 1
                    if lost >= RACE_ATTEMPTS:
                        log.warning("evidence: other sequencers won %d appends in a row; trying next pass", lost)
                        return total
                    clock.sleep(random.uniform(0, 0.005 * min(lost, 10)))

    def _append_next(self, size: int, token: str, sweep: bool) -> SpanCursor | list[int] | None:
        """Append the next batch from index ``size``: new audit entries (through Python: few), else the
        spans past the cursor (one INSERT ... SELECT in the engine), else, in a sweep, spans that became
        visible behind the cursor (through Python). What was appended (the span cursor reached, the audit
        sequence numbers, or [] for a sweep's spans); None when nothing is new."""
        if self._audit_through is None:
            self._audit_through = self.repo.sequenced_audit_through()
        entries = self.store.audit.entries(since_seq=self._audit_through, limit=self.config.batch)
        if entries:
            self._append_rows([self._leaf(size + offset, size, entry) for offset, entry in enumerate(entries)], token)
            return [entry.seq for entry in entries]
        if self._cursor is None:
            self._cursor = self.repo.span_cursor()
        reached = self.repo.append_spans_after(self._cursor, start=size, limit=self.config.batch, token=token,
                                               sequencer=self.id)
        if reached is not None:
            return reached
        if not sweep or self._cursor is None:
            return None
        since = max(0, self._cursor.inserted_us - int(self.config.lookback_s * 1e6))
        if not self.repo.unsequenced_behind(since_us=since, until_us=self._cursor.inserted_us):
            return None
        spans = self.repo.new_spans(since_us=since, limit=self.config.batch)
        if not spans:
            return None
        self._append_rows([self._leaf(size + offset, size, span) for offset, span in enumerate(spans)], token)
        return []

    def _append_rows(self, leaves: list[LeafRow], token: str) -> None:
        self.repo.append_leaves(leaves, token=token, sequencer=self.id)

    @staticmethod
    def _leaf(index: int, batch: int, item: AuditEntry | NewSpan) -> LeafRow:
        if isinstance(item, AuditEntry):
            data = canon.audit_leaf_data(item.seq, item.hash)
            return LeafRow(index, "audit", "", "", item.seq, item.hash, "", canon.leaf_hex(data),
                           _micros(item.time) * 1000, _micros(item.time), batch)
        data = canon.span_leaf_data(item.trace_id, item.span_id, item.record_hash, item.content_hash)
        return LeafRow(index, "span", item.trace_id, item.span_id, 0, item.record_hash, item.content_hash,
                       canon.leaf_hex(data), item.start_ns, item.inserted_us, batch)

    # -- the frontier ----------------------------------------------------------------

    def _store_nodes(self, frontier: Frontier, start: int, hashes: list[bytes]) -> None:
        """Append ``hashes`` to ``frontier`` (at ``start``) and store the subtrees that filled."""
        filled = frontier.append(hashes)
        self.repo.add_nodes([node for node in filled if node.level],
                            token=f"nodes:{start}:{frontier.size}:{frontier.root().hex()}")
        self._frontier = frontier.model_copy(deep=True)

    def _edge(self, size: int) -> Frontier | None:
        wanted = edge_coordinates(size)
        found = self.repo.node_hashes(wanted)
        if any(coordinate not in found for coordinate in wanted):
            return None
        return Frontier(size=size, edge=[bytes.fromhex(found[coordinate]) for coordinate in wanted])

    def _frontier_at(self, size: int, batch_start: int) -> Frontier:
        """The frontier of the stored tree of ``size`` leaves, repairing the newest batch's nodes if missing."""
        if self._frontier is not None and self._frontier.size == size:
            return self._frontier.model_copy(deep=True)
        frontier = self._edge(size)
        if frontier is not None:
            return frontier
        start = batch_start if batch_start < size else 0
        base = self._edge(start) if start else Frontier()
        if base is None:  # nodes missing below the newest batch too: rebuild from every leaf
            log.error("evidence: tree nodes are missing below leaf %d; recomputing them from all %d leaves", start, size)
            start, base = 0, Frontier()
        log.warning("evidence: the nodes of leaves %d..%d were not stored (a crash?); storing them now", start, size - 1)
        hashes: dict[int, str] = {}
        for index, digest in self.repo.leaf_hashes(start=start, end=size):
            hashes.setdefault(index, digest)
        if len(hashes) != size - start:
            raise LogDamaged(f"evidence: leaves {start}..{size - 1} are not all stored ({len(hashes)} found); "
                             "the log cannot be extended until `flightrec verify --store` is looked at")
        self._store_nodes(base, start, [bytes.fromhex(hashes[index]) for index in range(start, size)])
        return base

    # -- checkpoints -------------------------------------------------------------------

    def checkpoint(self, *, sequence: bool = True) -> tuple[StoredCheckpoint, bool]:
        """Sign the tree as it is now (after a pass, with ``sequence``): (the checkpoint, whether it is new).
        The newest checkpoint is answered again when the tree has not grown since."""
        if sequence:
            self.run_once()
        with self._lock:
            self._last_checkpoint = clock.monotonic()
            size, batch_start = self.repo.tree_size()
            latest = self.repo.latest_checkpoint()
            if latest is not None and latest.size >= size:
                return latest, False
            root = self._frontier_at(size, batch_start).root()
            checkpoint = sign_checkpoint(self.key, size, root)
            self.repo.add_checkpoint(checkpoint)
            return checkpoint, True
