"""Retention per table and legal holds (issue 11, deliverable 5), on real parts.

In chDB: rows past their TTL are removed by a merge (OPTIMIZE ... FINAL forces one) while the
rows a hold covers survive, for each kind of hold; a released hold lets them expire; an
unchanged TTL is not re-applied at the next start. Through a running server: the API and the
CLI refuse bad input with the reason, and only compliance (or admin) places or releases holds.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from pydantic import ValidationError

from flightrec.collector.rows import RowBuilder
from flightrec.settings import Settings
from flightrec.store import Store, StoreConfig, open_store
from tests.conftest import ServerProcess
from tests.otlp_helpers import BASE_NS, make_request, make_span

DAY_NS = 86_400 * 1_000_000_000
OLD_NS = BASE_NS - 400 * DAY_NS  # past the 180-day default
ADMIN_TOKEN = "retention-admin-token-0123456789"


def put(store: Store, trace: str, *, agent: str = "quiet-agent", attrs: dict | None = None,
        start_ns: int = OLD_NS) -> None:
    span = make_span(f"s-{trace[:6]}", attrs={"gen_ai.agent.name": agent, **(attrs or {})},
                     trace_id=bytes.fromhex(trace), start_ns=start_ns)
    store.insert_batch(RowBuilder().request_rows(make_request([span])), dedup_token=uuid.uuid4().hex)


def traces(store: Store, table: str = "otel_traces") -> set[str]:
    return {row[0] for row in store.engine.query("t", f"SELECT DISTINCT TraceId FROM {store.db}.{table}")}


def wait_mutations(store: Store, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while not store.retention.mutations_done():
        assert time.monotonic() < deadline, "mutations did not finish"
        time.sleep(0.1)


T_HELD, T_AGENT, T_OBJECT, T_FREE, T_NEW = ("a" * 32, "b" * 32, "c" * 32, "d" * 32, "e" * 32)


def ttl_merges(store: Store, on: bool) -> None:
    """Stop or start background TTL merges: an old part inserted is otherwise expired at once, before a test looks."""
    for table in ("otel_traces", "otel_traces_trace_id_ts", "object_links", "otel_logs"):
        store.engine.command("t", f"SYSTEM {'START' if on else 'STOP'} TTL MERGES {store.db}.{table}")


@pytest.fixture
def store(store: Store) -> Store:
    ttl_merges(store, False)
    return store


def merge(store: Store) -> None:
    ttl_merges(store, True)
    store.optimize()


def fill(store: Store) -> None:
    put(store, T_HELD)
    put(store, T_AGENT, agent="held-agent")
    put(store, T_OBJECT, attrs={"ticket.id": "TCK-9"})
    put(store, T_FREE, attrs={"ticket.id": "TCK-1"})
    put(store, T_NEW, start_ns=BASE_NS)  # recent: inside retention


def test_defaults_are_six_months_for_spans_and_each_table_has_its_own(store: Store) -> None:
    assert Settings().retention_days == 180 and StoreConfig().retention_days == 180
    ttl = store.table_ttl("otel_traces")
    assert ttl.startswith("toDateTime(Timestamp) + toIntervalDay(180) WHERE NOT (dictHas(") and "'agent'" in ttl
    assert store.table_ttl("object_links") == ttl.replace("otel_traces", "object_links")
    assert store.table_ttl("otel_logs").startswith("toDateTime(Timestamp) + toIntervalDay(180) WHERE NOT dictHas(")
    assert store.table_ttl("pager_outbox") == "toDateTime(CreatedAt) + toIntervalDay(30)"
    assert store.table_ttl("alerts") == "" and store.table_ttl("audit_log") == ""  # kept forever


def test_each_kind_of_hold_outlives_the_ttl_and_the_unheld_do_not(store: Store) -> None:
    fill(store)
    store.holds.add(kind="trace", key=T_HELD, reason="matter 1", created_by="c")
    store.holds.add(kind="agent", key="held-agent", reason="matter 2", created_by="c")
    store.holds.add(kind="object", object_type="ticket", key="TCK-9", reason="matter 3", created_by="c")
    merge(store)
    assert traces(store) == {T_HELD, T_AGENT, T_OBJECT, T_NEW}
    assert traces(store, "object_links") == {T_OBJECT}  # TCK-1's link expired with its span
    # Grafana still finds a held trace through the lookup; an agent's hold keeps its spans only (the
    # lookup has no agent column, and the held keys list traces, not every trace of a held agent).
    assert traces(store, "otel_traces_trace_id_ts") == {T_HELD, T_OBJECT, T_NEW}
    merge(store)  # and again: survives every merge
    assert traces(store) == {T_HELD, T_AGENT, T_OBJECT, T_NEW}


def test_a_released_hold_lets_what_it_kept_expire(store: Store) -> None:
    fill(store)
    keep = store.holds.add(kind="trace", key=T_HELD, reason="matter", created_by="c")
    obj = store.holds.add(kind="object", object_type="ticket", key="TCK-9", reason="matter", created_by="c")
    merge(store)
    assert traces(store) == {T_HELD, T_OBJECT, T_NEW}
    store.holds.release(hold=obj, released_by="c", reason="closed")
    assert store.retention.expire_released(store.config.retention_policy()) >= 1
    wait_mutations(store)
    assert traces(store) == {T_HELD, T_NEW}  # the other hold still protects its trace
    assert store.holds.get(hold_id=keep.id).released is False and store.holds.get(hold_id=obj.id).released


def test_a_trace_linked_to_a_held_object_later_is_held_from_the_next_refresh(store: Store) -> None:
    put(store, T_OBJECT, attrs={"ticket.id": "TCK-9"})
    store.holds.add(kind="object", object_type="ticket", key="TCK-9", reason="matter", created_by="c")
    put(store, T_HELD, attrs={"ticket.id": "TCK-9"})  # another run on the object, after the hold
    store.holds.reload()  # what a server start or the next hold act does
    merge(store)
    assert traces(store) == {T_OBJECT, T_HELD}


def test_an_unchanged_ttl_is_not_applied_again_at_the_next_start(store: Store) -> None:
    before = {t: (store.table_ttl(t), store.retention.mutation_count(t)) for t in ("otel_traces", "otel_logs")}
    again = open_store(store.config.model_copy())  # a second start on the same database
    try:
        assert again.apply_retention() == []
        assert {t: (again.table_ttl(t), again.retention.mutation_count(t)) for t in before} == before
        changed = again.apply_retention(policy=store.config.retention_policy().model_copy(update={"spans_days": 200}))
        assert changed == ["otel_traces", "otel_traces_trace_id_ts", "object_links", "object_recency", "otel_logs"]
        assert "toIntervalDay(200)" in again.table_ttl("otel_traces")
        assert "toIntervalDay(200)" in again.table_ttl("otel_traces_trace_id_ts")
    finally:
        again.engine.close()


def test_a_new_store_is_created_with_its_ttls_and_alters_none(store: Store) -> None:
    """The TTL is in each CREATE (issue 13): a store opened without applying retention has the config's."""
    config = store.config.model_copy(update={"database": f"t_{uuid.uuid4().hex[:10]}", "retention_days": 90,
                                             "log_retention_days": 200, "alert_retention_days": 7,
                                             "outbox_retention_days": 3})
    fresh = open_store(config, retention=False)  # no ALTER at all: only the migrations ran
    try:
        for table in ("otel_traces", "otel_traces_trace_id_ts", "object_links", "object_recency"):
            assert fresh.table_ttl(table).split(" WHERE ")[0].endswith("+ toIntervalDay(90)"), table
        assert fresh.table_ttl("otel_logs").startswith("toDateTime(Timestamp) + toIntervalDay(200) WHERE NOT ")
        assert fresh.table_ttl("alerts") == "toDateTime(UpdatedAt) + toIntervalDay(7)"
        assert fresh.table_ttl("pager_outbox") == "toDateTime(CreatedAt) + toIntervalDay(30)"  # 0006's own, then:
        assert fresh.apply_retention() == ["pager_outbox"]  # the one setting the CREATE did not carry
        assert fresh.apply_retention() == []
    finally:
        fresh.engine.command("drop_test_database", f"DROP DATABASE IF EXISTS {fresh.db}")
        fresh.engine.close()


def test_a_changed_ttl_rewrites_stored_parts_only_when_it_could_expire_more(store: Store) -> None:
    """A MODIFY TTL that materializes is a mutation rewriting every part (on a cluster, every replica's)."""
    policy = store.config.retention_policy()

    def apply(days: int, materialize: bool = True) -> int:
        before = store.retention.mutation_count("otel_traces")
        changed = store.apply_retention(policy=policy.model_copy(update={"spans_days": days,
                                                                          "materialize": materialize}))
        assert "otel_traces" in changed and (f"toIntervalDay({days})" if days else "") in store.table_ttl("otel_traces")
        return store.retention.mutation_count("otel_traces") - before

    assert apply(200) == 0  # an empty table: nothing stored to rewrite
    put(store, T_FREE)
    assert apply(365) == 0  # longer: what the old TTL kept, the new one keeps
    assert apply(30, materialize=False) == 0  # the operator's choice: metadata only
    assert apply(20) == 1  # shorter, rows stored: they are re-evaluated now
    wait_mutations(store)
    assert traces(store) == set()  # the rewrite expired it (TTL merges are stopped: not one of them)
    assert apply(0) == 0 and store.table_ttl("otel_traces") == ""  # forever: REMOVE TTL, no rewrite
    put(store, T_NEW, start_ns=BASE_NS)
    assert apply(180) == 1  # a TTL where there was none


def test_a_span_retention_below_six_months_needs_an_acknowledgement() -> None:
    with pytest.raises(ValidationError, match="below 180 days.*RETENTION_SHORT_ACKNOWLEDGED"):
        Settings(retention_days=30)
    with pytest.raises(ValidationError, match="LOG_RETENTION_DAYS"):
        Settings(log_retention_days=7)
    assert Settings(retention_days=30, retention_short_acknowledged=True).retention_days == 30
    assert Settings(retention_days=0).retention_days == 0  # forever is at least six months


# -- through a running server ----------------------------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    srv = ServerProcess(tmp_path_factory.mktemp("holds") / "srv", env={"FLIGHTREC_API_TOKEN": ADMIN_TOKEN}).start()
    span = make_span("refund", attrs={"gen_ai.agent.name": "refund-agent", "ticket.id": "TCK-7"},
                     trace_id=bytes.fromhex(T_HELD))
    body = make_request([span]).SerializeToString()
    httpx.post(srv.url + "/v1/traces", content=body, headers={"Content-Type": "application/x-protobuf"},
               timeout=30).raise_for_status()
    srv.wait_drained()
    yield srv
    srv.stop()


def token_for(server: ServerProcess, role: str) -> str:
    created = httpx.post(server.url + "/api/principals", json={"name": f"{role}-{uuid.uuid4().hex[:6]}", "roles": [role]},
                         headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=30)
    assert created.status_code == 201, created.text
    return created.json()["token"]


def api(server: ServerProcess, method: str, path: str, token: str = ADMIN_TOKEN, **kwargs) -> httpx.Response:
    return httpx.request(method, server.url + path, headers={"Authorization": f"Bearer {token}"}, timeout=30, **kwargs)


def cli(server: ServerProcess, token: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "flightrec", "hold", *args, "--api", server.url], capture_output=True,
                          text=True, timeout=120, env={**os.environ, "COLUMNS": "200", "FLIGHTREC_API_TOKEN": token})


def test_compliance_places_lists_and_releases_holds_each_audited(server: ServerProcess) -> None:
    officer = token_for(server, "compliance")
    placed = cli(server, officer, "add", "--object", "ticket:TCK-7", "--reason", "matter 2026-17")
    assert placed.returncode == 0, placed.stdout + placed.stderr
    hold_id = placed.stdout.strip().splitlines()[-1]
    listed = cli(server, token_for(server, "viewer"), "list")
    assert listed.returncode == 0 and hold_id in listed.stdout and "ticket:TCK-7" in listed.stdout
    released = cli(server, officer, "release", hold_id, "--reason", "matter closed")
    assert released.returncode == 0, released.stdout + released.stderr
    again = cli(server, officer, "release", hold_id, "--reason", "twice")
    assert again.returncode == 1 and "released already" in again.stdout and "HTTP 409" in again.stdout
    entries = api(server, "GET", "/api/audit", params={"act": ""}).json()["items"]
    acts = [(e["act"], e["actor"], e["subject"]) for e in entries if e["act"].startswith("hold.")]
    assert [a[0] for a in acts] == ["hold.add", "hold.release"]
    assert all(actor.startswith("compliance-") and subject == f"hold:{hold_id}" for _, actor, subject in acts)
    assert api(server, "GET", "/api/holds", params={"active": True}).json()["count"] == 0


@pytest.mark.parametrize(("args", "message"), [
    (["--object", "ticket:NOPE-1", "--reason", "r"], "no stored span links to ticket:NOPE-1"),
    (["--object", "ticket:TCK-7", "--agent", "refund-agent", "--reason", "r"], "exactly one of --object"),
    (["--reason", "r"], "exactly one of --object"),
    (["--agent", "refund-agent", "--reason", "  "], "--reason is empty"),
    (["--agent", "refund-agnt", "--reason", "r"], "did you mean refund-agent"),
    (["--trace", "xyz", "--reason", "r"], "is not 32 hex digits"),
])
def test_bad_hold_input_is_refused_with_the_reason(server: ServerProcess, args: list[str], message: str) -> None:
    done = cli(server, ADMIN_TOKEN, "add", *args)
    assert done.returncode == 1 and message in done.stdout.replace("\n", " "), done.stdout + done.stderr


def test_the_api_refuses_bad_bodies_and_other_roles(server: ServerProcess) -> None:
    both = api(server, "POST", "/api/holds", json={"object": "ticket:TCK-7", "agent": "refund-agent", "reason": "r"})
    assert both.status_code == 422 and "exactly one of object, agent, trace" in both.text
    empty = api(server, "POST", "/api/holds", json={"trace": T_HELD, "reason": " "})
    assert empty.status_code == 422 and "a reason is required" in empty.text
    assert api(server, "POST", "/api/holds/hold_nope/release", json={"reason": "r"}).status_code == 404
    for role in ("sre", "auditor", "viewer"):
        refused = api(server, "POST", "/api/holds", token_for(server, role), json={"trace": T_HELD, "reason": "r"})
        assert refused.status_code == 403 and "compliance" in refused.json()["detail"]
    sre = cli(server, token_for(server, "sre"), "add", "--trace", T_HELD, "--reason", "r")
    assert sre.returncode == 1 and "may not POST /api/holds" in sre.stdout.replace("\n", " ")
    assert api(server, "POST", "/api/holds", json={"trace": T_HELD, "reason": "admin may"}).status_code == 201




def test_the_audit_page_lists_places_and_releases_holds(server: ServerProcess, monkeypatch: pytest.MonkeyPatch) -> None:
    """The dashboards (Streamlit's AppTest) as a compliance officer: the Holds section calls the API only."""
    from streamlit.testing.v1 import AppTest

    from flightrec.dashboards import api as dash_api, ui
    from flightrec.dashboards.safe_text import plain_text

    monkeypatch.setenv("FLIGHTREC_API_URL", server.url)
    monkeypatch.setenv("FLIGHTREC_API_TOKEN", token_for(server, "compliance"))
    at = AppTest.from_file(str(Path(dash_api.__file__).parent / "app.py"), default_timeout=60)
    at.run()
    at.switch_page(ui.AUDIT_PAGE)
    at.run()
    assert not at.exception, [error.value for error in at.exception]
    at.selectbox(key="hold_kind").select("Agent")
    at.text_input(key="hold_target").input("refund-agent")
    at.text_input(key="hold_reason").input("dashboard matter")
    at.button[[b.label for b in at.button].index("Place hold")].click().run()
    assert not at.exception and any("Hold: hold_" in plain_text(s.value) for s in at.success), \
        [e.value for e in at.error]
    held = api(server, "GET", "/api/holds", params={"active": True}).json()["items"]
    mine = [h for h in held if h["key"] == "refund-agent" and h["reason"] == "dashboard matter"]
    assert len(mine) == 1 and mine[0]["created_by"].startswith("compliance-")
    at.text_input(key="hold_release_id").input(mine[0]["id"])
    at.text_input(key="hold_release_reason").input("  ")
    at.button[[b.label for b in at.button].index("Release")].click().run()
    assert any("a reason is required" in plain_text(e.value) for e in at.error)  # the API's refusal, shown
    at.text_input(key="hold_release_reason").input("dashboard matter closed")
    at.button[[b.label for b in at.button].index("Release")].click().run()
    assert any("Released: " + mine[0]["id"] in plain_text(s.value) for s in at.success), [e.value for e in at.error]
    assert api(server, "GET", "/api/holds", params={"active": True}).json()["count"] == len(held) - 1


def test_a_ttl_that_counts_from_another_column_is_applied_to_stored_rows() -> None:
    """The trace lookup's TTL moved from Start to End: its stored parts keep expiry times by Start and are
    dropped whole (ttl_only_drop_parts), so the change rewrites them; the same days from the same column
    do not."""
    from flightrec.store.retention import needs_rewrite

    by_start = "toDateTime(Start) + toIntervalDay(180) WHERE NOT dictHas('db.legal_hold_keys', tuple('trace', TraceId))"
    by_end = by_start.replace("toDateTime(Start)", "toDateTime(End)")
    assert needs_rewrite(by_start, by_end, has_rows=True)
    assert not needs_rewrite(by_end, by_end.replace("180", "400"), has_rows=True)  # longer: metadata only
    assert not needs_rewrite(by_start, by_end, has_rows=False)
