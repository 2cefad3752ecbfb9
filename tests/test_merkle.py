"""The Merkle tree against RFC 6962's test vectors, and every proof of small trees checked both ways."""

from __future__ import annotations

import pytest

from flightrec.evidence.merkle import (
    EMPTY_ROOT,
    Frontier,
    ProofError,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    memory_nodes,
    range_hash,
    verify_consistency,
    verify_inclusion,
)

# The inputs and roots of the certificate-transparency test vectors (RFC 6962 trees of 1..8 leaves).
INPUTS = [b"", b"\x00", b"\x10", b"\x20\x21", b"\x30\x31", b"\x40\x41\x42\x43", bytes(range(0x50, 0x58)),
          bytes(range(0x60, 0x70))]
ROOTS = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]
LEAVES = [leaf_hash(data) for data in INPUTS]


@pytest.mark.parametrize("size", range(1, 9))
def test_roots_match_the_rfc_6962_vectors(size: int) -> None:
    frontier = Frontier()
    frontier.append(LEAVES[:size])
    assert frontier.root().hex() == ROOTS[size - 1]
    assert range_hash(memory_nodes(LEAVES), 0, size).hex() == ROOTS[size - 1]


def test_the_empty_tree_and_bad_sizes() -> None:
    assert Frontier().root() == EMPTY_ROOT
    nodes = memory_nodes(LEAVES)
    with pytest.raises(ProofError, match="leaf 8 is not in a tree of 8 leaves"):
        inclusion_proof(nodes, 8, 8)
    with pytest.raises(ProofError, match="0 < old <= new"):
        consistency_proof(nodes, 0, 4)
    with pytest.raises(ProofError):
        consistency_proof(nodes, 5, 4)


def test_every_inclusion_and_consistency_proof_of_trees_up_to_37_leaves() -> None:
    leaves = [leaf_hash(str(index).encode()) for index in range(37)]
    nodes = memory_nodes(leaves)
    roots = [range_hash(nodes, 0, size) for size in range(0, 38)]
    for size in range(1, 38):
        for index in range(size):
            path = inclusion_proof(nodes, index, size)
            assert verify_inclusion(leaves[index], index, size, path, roots[size])
            assert not verify_inclusion(leaves[index], index, size, path, roots[size - 1] if size > 1 else EMPTY_ROOT)
            assert not verify_inclusion(leaf_hash(b"forged"), index, size, path, roots[size])
            if path:
                tampered = [bytes(32), *path[1:]]
                assert not verify_inclusion(leaves[index], index, size, tampered, roots[size])
            if size > 1:
                assert not verify_inclusion(leaves[index], (index + 1) % size, size, path, roots[size])
        for old in range(1, size + 1):
            proof = consistency_proof(nodes, old, size)
            assert verify_consistency(old, size, roots[old], roots[size], proof)
            if old < size:
                assert not verify_consistency(old, size, leaf_hash(b"x"), roots[size], proof)
                assert not verify_consistency(old, size, roots[old], roots[size - 1], proof)


def test_the_frontier_reports_each_subtree_once_as_it_fills() -> None:
    frontier = Frontier()
    filled = frontier.append(LEAVES[:5])
    assert [(node.level, node.index) for node in filled] == [
        (0, 0), (0, 1), (1, 0), (0, 2), (0, 3), (1, 1), (2, 0), (0, 4)]
    again = Frontier(size=frontier.size, edge=list(frontier.edge))
    more = again.append(LEAVES[5:8])
    assert [(node.level, node.index) for node in more] == [(0, 5), (1, 2), (0, 6), (0, 7), (1, 3), (2, 1), (3, 0)]
    assert again.root().hex() == ROOTS[7]
