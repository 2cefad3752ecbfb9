"""An append-only Merkle tree as RFC 9162 (Certificate Transparency 2.0, after RFC 6962) defines it.

Leaves hash as ``SHA-256(0x00 || data)``, interior nodes as ``SHA-256(0x01 || left || right)``;
a tree of ``n`` leaves splits at the largest power of two below ``n``. Every complete, aligned
subtree (``2**level`` leaves starting at ``index * 2**level``) is kept as a node once it fills,
so a proof needs O(log² n) node reads and no leaf is ever re-hashed: :class:`Frontier` appends,
:func:`inclusion_proof` and :func:`consistency_proof` read nodes through a :class:`Nodes` source,
:func:`verify_inclusion` and :func:`verify_consistency` need nothing but hashes (offline).

Written here rather than taken from a library: the maintained Python CT libraries verify proofs
but do not build and serve a log over nodes kept in ClickHouse, and the algorithms are short
and pinned by the RFC's test vectors (tests/test_merkle.py).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from typing import NamedTuple

from pydantic import BaseModel, Field

Nodes = Callable[[int, int], bytes]  # (level, index) -> the hash of that complete subtree


class ProofError(ValueError):
    """A proof that cannot be checked as asked (sizes out of range)."""


def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


EMPTY_ROOT = hashlib.sha256(b"").digest()


def _split(n: int) -> int:
    """The largest power of two strictly below ``n`` (n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


def range_hash(nodes: Nodes, start: int, end: int) -> bytes:
    """MTH of leaves [start, end), a subtree of an RFC 9162 tree (start aligned as the tree splits)."""
    size = end - start
    if size <= 0:
        return EMPTY_ROOT
    if size & (size - 1) == 0 and start % size == 0:
        return nodes(size.bit_length() - 1, start // size)
    k = _split(size)
    return node_hash(range_hash(nodes, start, start + k), range_hash(nodes, start + k, end))


def inclusion_proof(nodes: Nodes, index: int, size: int) -> list[bytes]:
    """The audit path of leaf ``index`` in the tree of the first ``size`` leaves (RFC 9162 2.1.3.1)."""
    return inclusion_proofs(nodes, [index], size)[index]


def inclusion_proofs(nodes: Nodes, indices: Iterable[int], size: int) -> dict[int, list[bytes]]:
    """The audit paths of many leaves in one tree (RFC 9162 2.1.3.1), each subtree hash computed once
    (the right edge's incomplete subtrees are shared by most paths)."""
    known: dict[tuple[int, int], bytes] = {}

    def cached(start: int, end: int) -> bytes:
        if (start, end) not in known:
            known[(start, end)] = range_hash(nodes, start, end)
        return known[(start, end)]

    proofs = {}
    for index in indices:
        if not 0 <= index < size:
            raise ProofError(f"leaf {index} is not in a tree of {size} leaves")
        path, start, end = [], 0, size
        while end - start > 1:
            k = _split(end - start)
            if index < start + k:
                path.append(cached(start + k, end))
                end = start + k
            else:
                path.append(cached(start, start + k))
                start += k
        proofs[index] = path[::-1]
    return proofs


def consistency_proof(nodes: Nodes, old: int, new: int) -> list[bytes]:
    """The proof that the tree of ``old`` leaves is a prefix of the tree of ``new`` (RFC 9162 2.1.4.1)."""
    if not 0 < old <= new:
        raise ProofError(f"no consistency proof from {old} to {new} leaves (0 < old <= new)")
    proof: list[bytes] = []

    def sub(m: int, start: int, end: int, complete: bool) -> None:
        n = end - start
        if m == n:
            if not complete:
                proof.append(range_hash(nodes, start, end))
            return
        k = _split(n)
        if m <= k:
            sub(m, start, start + k, complete)
            proof.append(range_hash(nodes, start + k, end))
        else:
            sub(m - k, start + k, end, False)
            proof.append(range_hash(nodes, start, start + k))

    sub(old, 0, new, True)
    return proof


def verify_inclusion(leaf: bytes, index: int, size: int, path: list[bytes], root: bytes) -> bool:
    """RFC 9162 2.1.3.2: whether ``leaf`` (a leaf hash) is leaf ``index`` of the tree with this root."""
    if not 0 <= index < size:
        return False
    fn, sn, r = index, size - 1, leaf
    for p in path:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            r = node_hash(r, p)
        fn, sn = fn >> 1, sn >> 1
    return sn == 0 and r == root


def verify_consistency(old: int, new: int, old_root: bytes, new_root: bytes, proof: list[bytes]) -> bool:
    """RFC 9162 2.1.4.2: whether the tree of ``old`` leaves with ``old_root`` is a prefix of ``new_root``'s."""
    if not 0 < old <= new:
        return False
    if old == new:
        return not proof and old_root == new_root
    if old & (old - 1) == 0:
        proof = [old_root, *proof]
    if not proof:
        return False
    fn, sn = old - 1, new - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    fr = sr = proof[0]
    for c in proof[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr, sr = node_hash(c, fr), node_hash(c, sr)
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            sr = node_hash(sr, c)
        fn, sn = fn >> 1, sn >> 1
    return sn == 0 and fr == old_root and sr == new_root


class Node(NamedTuple):
    """A complete subtree that just filled: 2**level leaves from index * 2**level (a tuple: one per
    leaf and more are made while appending)."""

    level: int
    index: int
    hash: bytes


class Frontier(BaseModel):
    """The right edge of a tree: the hashes of its complete subtrees, largest first (one per set bit
    of ``size``). Enough to append leaves and to compute the root without reading anything."""

    size: int = 0
    edge: list[bytes] = Field(default_factory=list)

    def append(self, leaves: Iterable[bytes]) -> list[Node]:
        """Add leaf hashes; return every complete subtree that filled (the leaves included, level 0)."""
        filled: list[Node] = []
        size, edge = self.size, list(self.edge)  # locals: a model's attribute writes cost more than the hashing
        for leaf in leaves:
            filled.append(Node(0, size, leaf))
            carry, level, index = leaf, 0, size
            while (size >> level) & 1:  # a subtree of this level is waiting on the left: merge
                carry = node_hash(edge.pop(), carry)
                level, index = level + 1, index >> 1
                filled.append(Node(level, index, carry))
            edge.append(carry)
            size += 1
        self.size, self.edge = size, edge
        return filled

    def root(self) -> bytes:
        if not self.edge:
            return EMPTY_ROOT
        root = self.edge[-1]
        for left in reversed(self.edge[:-1]):
            root = node_hash(left, root)
        return root


def memory_nodes(leaves: list[bytes]) -> Nodes:
    """A :data:`Nodes` source over leaf hashes held in memory (tests, offline checks of small trees)."""
    levels: dict[tuple[int, int], bytes] = {}
    frontier = Frontier()
    for node in frontier.append(leaves):
        levels[(node.level, node.index)] = node.hash
    return lambda level, index: levels[(level, index)]
