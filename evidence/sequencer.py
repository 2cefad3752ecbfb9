"""The sequencer: appends every new stored span and audit entry to the evidence log, and signs checkpoints.

One background thread per server process (flightrec/runtime.py starts it). A pass reads the tree
size, then what is new (audit entries after the newest sequenced one; spans inserted since the
newest sequenced span's ``InsertedAt`` minus a few seconds' slack that are no leaf yet, from any
writer; every minute a sweep looks back ``lookback_s`` for rows that became visible late), hashes them as read back (evidence/leaves.py), and appends them as one batch by
compare-and-swap (store/evidence_log.py). The winner then stores the subtrees that filled; a loser
reads the tree again and retries with what is still new. Reading the size *before* what is new is
what keeps a racer from appending a leaf twice: whatever another process appended after our size
read either shows up in the anti-join or takes our size's token.

Crash safety: leaves and nodes are two inserts. A frontier is recovered from the stored nodes of
the tree's edge; when the newest batch's nodes are missing (a crash between the two), they are
recomputed from that batch's leaves and inserted with the token the crashed writer would have
used, so a late duplicate of them is dropped.

What the look-back window can still miss: a row whose ``InsertedAt`` is older than the newest
sequenced one by more than the window when it becomes visible (an insert that takes longer than
the window to commit, an async insert flushed late, clock skew between nodes, a writer that sets
``InsertedAt`` itself). ``flightrec verify --store`` counts spans that are no leaf.
"""

from __future__ import annotations

import logging
import random
import threading
import time as clock
from collections.abc import Callable
from datetime import datetime, timezone

from pydantic import BaseModel, Field

from flightrec.evidence import leaves as canon
from flightrec.evidence.checkpoints import sign_checkpoint
from flightrec.evidence.keys import SigningKey
from flightrec.evidence.merkle import Frontier
from flightrec.store.audit import AuditEntry
from flightrec.store.evidence_log import LeafRow, NewSpan, StoredCheckpoint
from flightrec.store.repository import Store

log = logging.getLogger(__name__)

RACE_ATTEMPTS = 50


class SequencerConfig(BaseModel):
    poll_s: float = Field(default=1.0, gt=0, description="seconds between passes")
    batch: int = Field(default=5000, ge=1, description="at most this many leaves per append")
    slack_s: float = Field(default=5.0, ge=0, description="how far before the newest sequenced span a pass looks")
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
        self._frontier: Frontier | None = None
        self._newest_us: int | None = None  # the newest InsertedAt sequenced (µs)
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
                frontier = self._frontier_at(size, batch_start)
                leaves, newest_seen = self._new_leaves(size, sweep)
                if not leaves:
                    if sweep:
                        self._last_sweep = now
                    return total
                root = frontier.root().hex()
                token = f"leaves:{size}:{root}" + (f":{generation}" if generation else "")
                self.repo.append_leaves(leaves, token=token)
                stored = self.repo.leaf_hashes(start=size, end=size + len(leaves))
                if stored == [(leaf.index, leaf.leaf_hash) for leaf in leaves]:
                    self._store_nodes(frontier, size, [bytes.fromhex(leaf.leaf_hash) for leaf in leaves])
                    total += len(leaves)
                    self.appended += len(leaves)
                    if newest_seen:
                        self._newest_us = max(self._newest_us or 0, newest_seen)
                    if self._stop.is_set():
                        return total
                    continue
                self._frontier = None
                if not stored:  # the token was used, yet no leaf is there: the end of the log was removed
                    log.error("evidence: leaves from %d were written before but are gone (run `flightrec verify "
                              "--store`); appending after what is left", size)
                    generation += 1
                else:
                    lost += 1
                    if lost >= RACE_ATTEMPTS:
                        log.warning("evidence: other sequencers won %d appends in a row; trying next pass", lost)
                        return total
                    clock.sleep(random.uniform(0, 0.005 * min(lost, 10)))

    def _new_leaves(self, size: int, sweep: bool) -> tuple[list[LeafRow], int]:
        """The next batch: new audit entries and new spans, by time, as leaves from ``size``. A pass
        looks ``slack_s`` before the newest sequenced span; a sweep ``lookback_s`` (late rows)."""
        limit = self.config.batch
        if self._newest_us is None:
            self._newest_us = self.repo.newest_seen()
        back = self.config.lookback_s if sweep else self.config.slack_s
        since = max(0, self._newest_us - int(back * 1e6)) if self._newest_us else 0
        entries = self.store.audit.entries(since_seq=self.repo.sequenced_audit_through(), limit=limit)
        spans = self.repo.new_spans(since_us=since, limit=limit)
        items: list[tuple[int, int, AuditEntry | NewSpan]] = [(_micros(entry.time), 0, entry) for entry in entries]
        items += [(row.inserted_us, 1, row) for row in spans]
        items.sort(key=lambda item: item[:2])
        chosen = items[:limit]
        leaves = [self._leaf(size + offset, size, item) for offset, (_, _, item) in enumerate(chosen)]
        newest_seen = max((item[0] for item in chosen if item[1] == 1), default=0)
        return leaves, newest_seen

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
        self.repo.add_nodes(((node.level, node.index, node.hash.hex()) for node in filled if node.level),
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
