"""The one execution layer: the only module that talks to clickhouse-connect.

It hides chDB vs server, tags every statement with the calling function's name
(``log_comment``), retries only network errors, and turns driver errors into
:class:`StoreError`.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Sequence
from typing import Any

import clickhouse_connect
from clickhouse_connect.driver.exceptions import DatabaseError, OperationalError
from clickhouse_connect.driver.external import ExternalData

from flightrec.store.config import EngineTarget
from flightrec.store.topology import DISTRIBUTED_INSERT_SETTINGS, Topology

log = logging.getLogger(__name__)

# Embedded hardening: chDB ships no system log tables, and these settings keep the
# engine from collecting query logs, processor profiles or sampling profiles that
# a future config could turn into unbounded system.*_log growth.
EMBEDDED_SETTINGS: dict[str, Any] = {
    "log_queries": 0,
    "log_processors_profiles": 0,
    "log_profile_events": 0,
    "query_profiler_real_time_period_ns": 0,
    "query_profiler_cpu_time_period_ns": 0,
    "opentelemetry_start_trace_probability": 0,
}

NETWORK_RETRIES = 3

# ClickHouse error codes that go away on their own (load, memory, replication,
# a table being created): an insert failing with one is retried, never quarantined.
TRANSIENT_CODES = frozenset({
    3,    # UNEXPECTED_END_OF_FILE (connection cut mid-answer)
    60,   # UNKNOWN_TABLE (a migration is running)
    81,   # UNKNOWN_DATABASE
    159,  # TIMEOUT_EXCEEDED
    164,  # READONLY
    173,  # CANNOT_ALLOCATE_MEMORY
    202,  # TOO_MANY_SIMULTANEOUS_QUERIES
    209,  # SOCKET_TIMEOUT
    210,  # NETWORK_ERROR
    236,  # ABORTED
    241,  # MEMORY_LIMIT_EXCEEDED
    242,  # TABLE_IS_READ_ONLY
    243,  # NOT_ENOUGH_SPACE
    252,  # TOO_MANY_PARTS (but see PERMANENT_MESSAGES)
    279,  # ALL_CONNECTION_TRIES_FAILED
    319,  # UNKNOWN_STATUS_OF_INSERT
    394,  # QUERY_WAS_CANCELLED
    425,  # SYSTEM_ERROR
    999,  # KEEPER_EXCEPTION
})
# Messages that share a transient code but describe the data itself.
PERMANENT_MESSAGES = ("Too many partitions for single INSERT block",)
CODE = re.compile(r"Code: (\d+)\.")
INSERT_TARGET = re.compile(r"^\s*INSERT INTO ([\w.]+)", re.IGNORECASE)


class StoreError(RuntimeError):
    """A statement failed; the message names the statement and the engine's reason.

    ``transient`` says whether the same statement may succeed later (network, load,
    memory, replication) or fails for what it carries (bad data: retrying cannot help).
    """

    def __init__(self, message: str, *, transient: bool = False, code: int | None = None) -> None:
        super().__init__(message)
        self.transient = transient
        self.code = code


def classify(message: str) -> tuple[bool, int | None]:
    """(transient, ClickHouse error code) of an engine error message."""
    match = CODE.search(message)
    code = int(match.group(1)) if match else None
    if any(text in message for text in PERMANENT_MESSAGES):
        return False, code
    return code in TRANSIENT_CODES, code


def _external_data(external: dict[str, Any] | None) -> ExternalData | None:
    if not external:
        return None
    return ExternalData(file_name=external["name"], data=external["data"], fmt=external["fmt"],
                        structure=external["structure"])


class Engine:
    """Runs named statements against one ClickHouse (embedded or server)."""

    def __init__(self, target: EngineTarget, topology: Topology | None = None) -> None:
        self.target = target
        self.topology = topology or Topology(database=target.database or "default")
        self._lock = threading.Lock()
        self._client = self._connect(target)

    @staticmethod
    def _connect(target: EngineTarget) -> Any:
        if target.kind == "chdb":
            assert target.path is not None
            return clickhouse_connect.get_client(dsn=f"chdb://{target.path}", settings=EMBEDDED_SETTINGS)
        return clickhouse_connect.get_client(
            host=target.host,
            port=target.port,
            username=target.username or "default",
            password=target.password or "",
            secure=target.secure,
            connect_timeout=10,
            send_receive_timeout=120,
            # No session: the server's threads (API, writer, leader, a migration's heartbeat) share this
            # client, and clickhouse-connect refuses a second query in flight in one session.
            autogenerate_session_id=False,
        )

    @property
    def embedded(self) -> bool:
        return self.target.kind == "chdb"

    def _run(self, name: str, call: Any) -> Any:
        attempt = 0
        while True:
            try:
                return call()
            except OperationalError as exc:
                attempt += 1
                if self.embedded or attempt >= NETWORK_RETRIES:
                    raise StoreError(f"{name}: {exc}", transient=True) from exc
                log.warning("store: %s failed on the network (%s); retry %d", name, exc, attempt)
                time.sleep(0.2 * 2**attempt)
            except DatabaseError as exc:
                transient, code = classify(str(exc))
                raise StoreError(f"{name}: {exc}", transient=transient, code=code) from exc

    def query(self, name: str, sql: str, params: dict[str, Any] | None = None,
              settings: dict[str, Any] | None = None, external: dict[str, Any] | None = None) -> list[tuple]:
        """Run a SELECT with bound ``{name:Type}`` parameters; return rows as tuples.

        ``external``: a table sent with the statement (a server's external data: ``name``, ``data``,
        ``fmt``, ``structure``), read by the SELECT under its name.
        """
        settings = {**(settings or {}), "log_comment": name}
        return self._run(
            name, lambda: self._client.query(sql, parameters=params or {}, settings=settings,
                                             external_data=_external_data(external)).result_rows
        )

    def query_columns(self, name: str, sql: str, params: dict[str, Any] | None = None,
                      settings: dict[str, Any] | None = None, external: dict[str, Any] | None = None
                      ) -> dict[str, list]:
        """Run a SELECT and return its result column by column, keyed by column name (``external``: see query)."""
        settings = {**(settings or {}), "log_comment": name}
        result = self._run(name, lambda: self._client.query(sql, parameters=params or {}, settings=settings,
                                                            external_data=_external_data(external)))
        return {column: list(values) for column, values in zip(result.column_names, result.result_columns)} if (
            result.result_columns) else {column: [] for column in result.column_names}

    def command(self, name: str, sql: str, params: dict[str, Any] | None = None,
                settings: dict[str, Any] | None = None, data: bytes | None = None) -> Any:
        """Run DDL or another statement that returns no rows (``settings``: e.g. ``mutations_sync``;
        ``data``: the body of an ``INSERT ... FORMAT``, read by its ``input()``).

        An ``INSERT INTO <Distributed table> SELECT`` gets the distributed insert settings too."""
        target = INSERT_TARGET.match(sql)
        if target and self.topology.distributed_target(target.group(1)):
            settings = {**DISTRIBUTED_INSERT_SETTINGS, **(settings or {})}
        return self._run(name, lambda: self._client.command(sql, parameters=params or {}, settings=settings or None,
                                                            data=data))

    def _insert_settings(self, name: str, table: str, dedup_token: str | None) -> dict[str, Any]:
        """Every insert's settings, in one place: the query tag, the token, and on a Distributed table
        the settings that make it durable on its shard's replicas before it returns (store/topology.py)."""
        settings: dict[str, Any] = {"log_comment": name}
        if self.topology.distributed_target(table):
            settings.update(DISTRIBUTED_INSERT_SETTINGS)
        if dedup_token:
            settings["insert_deduplication_token"] = dedup_token
        return settings

    def insert(
        self,
        name: str,
        table: str,
        columns: Sequence[Sequence[Any]],
        column_names: Sequence[str],
        dedup_token: str | None = None,
    ) -> None:
        """Insert column-oriented data; ``dedup_token`` makes a replayed insert a no-op."""
        settings = self._insert_settings(name, table, dedup_token)
        self._run(
            name,
            lambda: self._client.insert(
                table,
                columns,
                column_names=list(column_names),
                column_oriented=True,
                settings=settings,
            ),
        )

    def insert_native(
        self, name: str, table: str, column_names: Sequence[str], payload: bytes, dedup_token: str | None = None
    ) -> None:
        """Insert pre-encoded Native bytes (see ``store.native``)."""
        settings = self._insert_settings(name, table, dedup_token)
        self._run(
            name,
            lambda: self._client.raw_insert(
                table, column_names=list(column_names), insert_block=payload, settings=settings, fmt="Native"
            ),
        )

    def close(self) -> None:
        """Release the engine; safe to call twice."""
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()
