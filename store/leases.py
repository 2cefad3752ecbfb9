"""Statements for leases (``leader_lease``, migration 0019): read the newest version, write the next.

Writing version N + 1 is a compare-and-swap, as an audit append is (store/audit_log.py): the row
goes in with the insert deduplication token ``lease:<name>:<N + 1>``, so of any writers racing for
N + 1 (a renewal, takeovers) the engine keeps the first insert and drops the rest, whatever their
data; each then reads N + 1 back (:meth:`LeaseRepository.at`) to learn who won. The insert is an
``INSERT ... SELECT ... WHERE`` the newest stored version is N, so a writer that read long ago
cannot put an old version after a newer one. flightrec/leader.py runs the election over these.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:  # settings check the lease's timing through flightrec.leader: no engine import
    from flightrec.store.engine import Engine

LEASE_SELECT = "Version, Term, Holder, Released, Expires"


class LeaseRow(NamedTuple):
    """One version of a lease: who holds which term, released or not, until when (the holder's clock)."""

    version: int
    term: int
    holder: str
    released: bool
    expires: datetime


def _row(row: tuple) -> LeaseRow:
    version, term, holder, released, expires = row
    return LeaseRow(version=version, term=term, holder=holder, released=bool(released),
                    expires=expires.replace(tzinfo=timezone.utc) if expires.tzinfo is None else expires)


class LeaseRepository:
    """Versions of named leases (one name, ``leader``, elects the server's leader)."""

    def __init__(self, engine: Engine, db: str) -> None:
        self.engine, self.db = engine, db

    def latest(self, lease: str) -> LeaseRow | None:
        """The newest version of a lease, or None when it was never written."""
        rows = self.engine.query(
            "lease_latest",
            f"SELECT {LEASE_SELECT} FROM {self.db}.leader_lease WHERE Lease = {{lease:String}} "
            "ORDER BY Version DESC LIMIT 1", {"lease": lease})
        return _row(rows[0]) if rows else None

    def at(self, lease: str, version: int) -> list[LeaseRow]:
        """Every stored row of one version (one, unless deduplication failed): who won it."""
        rows = self.engine.query(
            "lease_at",
            f"SELECT {LEASE_SELECT} FROM {self.db}.leader_lease WHERE Lease = {{lease:String}} "
            "AND Version = {version:UInt64}", {"lease": lease, "version": version})
        return [_row(row) for row in rows]

    def write(self, lease: str, *, version: int, term: int, holder: str, released: bool, expires: datetime) -> None:
        """Insert ``version`` if the newest stored one is ``version - 1``; a second writer of it is dropped."""
        self.engine.command(
            "lease_write",
            f"INSERT INTO {self.db}.leader_lease (Lease, Version, Term, Holder, Released, Expires) "
            "SELECT {lease:String}, {version:UInt64}, {term:UInt64}, {holder:String}, {released:UInt8}, "
            "fromUnixTimestamp64Micro({expires:Int64}) "
            f"WHERE (SELECT max(Version) FROM {self.db}.leader_lease WHERE Lease = {{lease:String}}) "
            "= {version:UInt64} - 1",
            {"lease": lease, "version": version, "term": term, "holder": holder, "released": int(released),
             "expires": int(expires.timestamp() * 1_000_000)},
            settings={"insert_deduplication_token": f"lease:{lease}:{version}", "log_comment": "lease_write"},
        )
