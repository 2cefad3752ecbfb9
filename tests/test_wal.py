"""The write-ahead log: durable appends, sealing, torn tails, backlog accounting."""

from __future__ import annotations

from pathlib import Path

from flightrec.collector.wal import HEADER, WalConfig, WriteAheadLog


def wal_at(path: Path, **overrides) -> WriteAheadLog:
    return WriteAheadLog(WalConfig(directory=path, seal_after_s=0.05, **overrides))


def test_append_seal_read_complete(tmp_path: Path) -> None:
    wal = wal_at(tmp_path)
    wal.append(b"one", 3)
    wal.append(b"two", 2)
    assert wal.backlog_spans == 5
    segment = wal.next_sealed(timeout=1)
    assert segment is not None and segment.spans == 5
    assert wal.read_segment(segment) == [b"one", b"two"]
    wal.complete(segment)
    assert wal.backlog_spans == 0 and not segment.path.exists()
    assert wal.next_sealed(timeout=0.05) is None


def test_segments_seal_at_their_span_bound(tmp_path: Path) -> None:
    wal = wal_at(tmp_path, segment_max_spans=10)
    for _ in range(7):
        wal.append(b"x", 4)
    assert wal.pending_segments() == 3  # 12 sealed, 12 sealed, 4 open


def test_reopen_replays_everything_acknowledged_and_cuts_a_torn_tail(tmp_path: Path) -> None:
    wal = wal_at(tmp_path)
    wal.append(b"kept-1", 1)
    wal.append(b"kept-2", 2)
    active = next(tmp_path.glob("*.wal"))
    with active.open("ab") as handle:  # a crash in the middle of the next append
        handle.write(HEADER.pack(b"FRW1", 100, 7, 0) + b"partial")
    reopened = wal_at(tmp_path)
    assert reopened.backlog_spans == 3
    segment = reopened.next_sealed(timeout=0)
    assert segment is not None and reopened.read_segment(segment) == [b"kept-1", b"kept-2"]
    assert segment.path.stat().st_size == 2 * HEADER.size + len(b"kept-1") + len(b"kept-2")
    reopened.append(b"new", 1)  # a new segment after the replayed one, never the same name
    assert len(list(tmp_path.glob("*.wal"))) == 2


def test_a_corrupt_record_ends_the_segment(tmp_path: Path) -> None:
    wal = wal_at(tmp_path)
    wal.append(b"good", 1)
    wal.append(b"flipped", 1)
    path = next(tmp_path.glob("*.wal"))
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    reopened = wal_at(tmp_path)
    segment = reopened.next_sealed(timeout=0)
    assert segment is not None and reopened.read_segment(segment) == [b"good"] and reopened.backlog_spans == 1


def test_closed_wal_refuses_appends(tmp_path: Path) -> None:
    wal = wal_at(tmp_path)
    wal.close()
    wal.close()
    try:
        wal.append(b"late", 1)
    except OSError as exc:
        assert "closed" in str(exc)
    else:
        raise AssertionError("append after close must fail")


def test_backlog_bound_is_checked_with_the_write(tmp_path: Path) -> None:
    from flightrec.collector.wal import BacklogFull

    wal = wal_at(tmp_path, max_backlog_spans=10)
    wal.append(b"a", 8)
    try:
        wal.append(b"b", 3)
    except BacklogFull as exc:
        assert exc.backlog == 8
    else:
        raise AssertionError("the bound must hold")
    wal.append(b"c", 2)
    assert wal.backlog_spans == 10
