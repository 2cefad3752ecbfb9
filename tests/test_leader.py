"""The leader lease (flightrec/leader.py) over a real store: contenders in one process, one chDB store.

Two ``flightrec serve`` processes cannot share one embedded chDB directory (a second process cannot
open it), so two-process tests are not possible here: these run several electors in this process
over one store, each with its own node id, as collectors on one ClickHouse would. ``/api/health``
and the ``flightrec_leader`` gauge through a real server: tests/test_metrics.py (its server).
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator

import pytest
from pydantic import ValidationError

from flightrec.detectors.runner import DetectorRunner
from flightrec.leader import LeaderConfig, LeaderElector
from flightrec.settings import Settings
from flightrec.store import Store
from tests.conftest import wait_for

FAST = LeaderConfig(lease_s=1.0, renew_s=0.2)
SLACK_S = 1.5  # the statements' own time on a loaded machine, beyond the stated bound


@pytest.fixture
def electors(store: Store) -> Iterator[list[LeaderElector]]:
    """Electors made by the test; every one still running is stopped (not released) at teardown."""
    made: list[LeaderElector] = []
    yield made
    for elector in made:
        elector.stop()


def elector(store: Store, made: list[LeaderElector], node: str, config: LeaderConfig = FAST,
            lease: str = "leader") -> LeaderElector:
    contender = LeaderElector(store.leases, node, config, lease=lease)
    made.append(contender)
    return contender


def test_two_contenders_have_exactly_one_leader_at_every_moment(store: Store, electors) -> None:
    config = LeaderConfig(lease_s=3.0, renew_s=0.2)
    a, b = elector(store, electors, "a", config), elector(store, electors, "b", config)
    a.start()
    b.start()
    wait_for(lambda: a.is_leader() or b.is_leader(), 10, "a leader")
    leader = a if a.is_leader() else b
    other = b if leader is a else a
    first = store.leases.latest("leader")
    assert first is not None and first.holder == leader.node
    samples, renewed = 0, False
    while samples < 500 or not renewed:  # sample while the leader renews several times
        leading = [contender.is_leader() for contender in (a, b)]
        assert leading.count(True) == 1, f"sample {samples}: leaders {leading}"
        samples += 1
        if samples % 50 == 0:
            latest = store.leases.latest("leader")
            assert latest is not None and latest.holder == leader.node and latest.term == first.term
            renewed = latest.version >= first.version + 5
    assert leader.status().model_dump() == {"node": leader.node, "holder": leader.node, "term": first.term,
                                            "is_leader": True}
    assert other.status().model_dump() == {"node": other.node, "holder": leader.node, "term": first.term,
                                           "is_leader": False}


def test_a_dead_leader_is_replaced_within_lease_plus_renew(store: Store, electors) -> None:
    a, b = elector(store, electors, "a"), elector(store, electors, "b")
    elected: list[int] = []
    b.on_elected = elected.append  # the server applies retention and resumes re-derivation there
    assert a.campaign()
    a.start()
    b.start()
    wait_for(lambda: b.status().holder == "a", 10, "b to see a lead")
    term = a.term()
    a.stop()  # dies: no release, its lease runs out
    died = time.monotonic()
    bound = FAST.lease_s + FAST.renew_s
    wait_for(b.is_leader, bound + SLACK_S, f"b to take over within {bound} s")
    took = time.monotonic() - died
    assert not a.is_leader(), "the dead leader's lease ran out before the other took over"
    assert term is not None and b.term() == term + 1, "terms strictly increase"
    assert took <= bound + SLACK_S
    wait_for(lambda: elected, 10, "b's work on taking the term")
    assert term is not None and elected == [term + 1]
    latest = store.leases.latest("leader")
    assert latest is not None and (latest.holder, latest.term, latest.released) == ("b", term + 1, False)


def test_a_leader_whose_lease_ran_out_runs_no_leader_pass(store: Store, electors) -> None:
    a = elector(store, electors, "a")
    assert a.campaign()  # leads, then renews no more (stalled, not dead: nobody else campaigns)
    asked: list[bool] = []

    def fence() -> bool:
        leads = a.is_leader()
        asked.append(leads)
        return leads

    wait_for(lambda: not a.is_leader(), FAST.lease_s + SLACK_S, "the lease to run out")
    stored = store.leases.latest("leader")
    assert stored is not None and (stored.holder, stored.released) == ("a", False), "the store still names a"
    runner = DetectorRunner(store, leader=fence)
    runner.start(0.02)
    try:
        wait_for(lambda: len(asked) >= 10, 30, "the detector loop to ask the fence")
        assert runner.passes == 0 and not any(asked), "a stale leader ran a leader-only pass"
        assert a.campaign() and a.term() == stored.term + 1, "leading again is a new term"
        wait_for(lambda: runner.passes >= 1, 30, "a pass once it leads again")
    finally:
        runner.shutdown()


class Fence:
    """A leader-only loop's fence the test opens and closes; counts the times it was asked."""

    def __init__(self) -> None:
        self.open, self.asked = False, 0

    def __call__(self) -> bool:
        self.asked += 1
        return self.open


def test_the_sequencer_and_the_rate_resolver_work_only_while_they_lead(store: Store, tmp_path) -> None:
    from flightrec.collector.rates import RateResolver, RatesConfig
    from flightrec.collector.rows import RowBuilder
    from flightrec.evidence.keys import load_or_create
    from flightrec.evidence.sequencer import Sequencer, SequencerConfig
    from tests.otlp_helpers import make_request, make_span

    store.audit.append(actor="ops", act="test.act", subject="leader", details={})
    chat = make_span("chat", {"gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o",
                              "gen_ai.usage.input_tokens": 10, "gen_ai.usage.output_tokens": 5},
                     start_ns=time.time_ns())
    store.insert_batch(RowBuilder().request_rows(make_request([chat])), "leader-test-chat")
    assert store.meaning.unresolved_rates(), "a stored call to price"
    fence = Fence()
    sequencer = Sequencer(store, load_or_create(tmp_path / "key.pem"), SequencerConfig(poll_s=0.02), leader=fence)
    rates = RateResolver(store, RatesConfig(interval_s=0.02), leader=fence)
    sequencer.start()
    rates.start()  # not leading: neither clears nor prices at start
    try:
        wait_for(lambda: fence.asked >= 20, 30, "both loops to ask the fence")
        assert store.evidence.tree_size()[0] == 0 and sequencer.appended == 0, "a follower sequenced"
        assert store.meaning.unresolved_rates(), "a follower priced"
        fence.open = True
        wait_for(lambda: sequencer.appended >= 2, 30, "the leader to sequence the span and the audit entry")
        wait_for(lambda: not store.meaning.unresolved_rates(), 30, "the leader to price the stored call")
    finally:
        sequencer.shutdown()
        rates.shutdown()


def test_the_pager_outbox_delivers_only_while_it_leads(store: Store, receiver) -> None:
    from flightrec.detectors.outbox import PagerOutbox
    from flightrec.detectors.pager import PagerRoutes
    from tests.test_pager import fired
    from tests.test_pager_outbox import PD, config_for

    fence = Fence()
    outbox = PagerOutbox(store, PagerRoutes.from_config(config_for(receiver, poll_s=0.02)), leader=fence)
    assert outbox.enqueue([fired()])
    outbox.start()
    try:
        wait_for(lambda: fence.asked >= 10, 30, "the delivery loop to ask the fence")
        assert receiver.at(PD) == [] and outbox.counts == {}, "a follower paged"
        fence.open = True
        wait_for(lambda: receiver.at(PD), 30, "the leader to deliver the page")
    finally:
        outbox.shutdown()


def test_a_release_on_clean_shutdown_hands_over_at_once(store: Store, electors) -> None:
    config = LeaderConfig(lease_s=30.0, renew_s=0.2)
    a, b = elector(store, electors, "a", config), elector(store, electors, "b", config)
    assert a.campaign()
    a.start()
    b.start()
    wait_for(lambda: b.status().holder == "a", 10, "b to see a lead")
    term = a.term()
    a.shutdown()
    released = time.monotonic()
    assert not a.is_leader() and a.status().holder in (None, "b")
    wait_for(b.is_leader, config.renew_s + SLACK_S, "b to take over a released lease")
    assert time.monotonic() - released < config.lease_s / 10, "a release hands over without waiting out the lease"
    assert term is not None and b.term() == term + 1
    a.shutdown()  # safe twice


def test_racing_claims_of_one_version_have_one_winner(store: Store, electors) -> None:
    from datetime import datetime, timezone

    for round_ in range(3):  # the compare-and-swap itself: every thread writes version 1 at once
        lease, nodes = f"race-{round_}", [f"n{i}" for i in range(8)]
        start, seen = threading.Barrier(len(nodes)), {}

        def claim(node: str, lease: str = lease, start: threading.Barrier = start) -> None:
            start.wait()
            store.leases.write(lease, version=1, term=1, holder=node, released=False,
                               expires=datetime.now(tz=timezone.utc))
            seen[node] = [row.holder for row in store.leases.at(lease, 1)]

        threads = [threading.Thread(target=claim, args=(node,)) for node in nodes]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        winners = {tuple(holders) for holders in seen.values()}
        assert len(seen) == len(nodes) and len(winners) == 1 and len(next(iter(winners))) == 1, seen

    contenders = [elector(store, electors, f"c{i}", lease="contended") for i in range(6)]
    start, won = threading.Barrier(len(contenders)), {}

    def campaign(contender: LeaderElector) -> None:
        start.wait()
        won[contender.node] = contender.campaign()

    threads = [threading.Thread(target=campaign, args=(contender,)) for contender in contenders]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(won.values()) == 1, won
    winner = next(node for node, leads in won.items() if leads)
    assert [c.is_leader() for c in contenders].count(True) == 1
    latest = store.leases.latest("contended")
    assert latest is not None and (latest.version, latest.term, latest.holder) == (1, 1, winner)
    assert {c.status().holder for c in contenders} == {winner}


def test_an_exclusive_store_takes_over_a_dead_process_lease_at_once(store: Store, electors) -> None:
    dead = elector(store, electors, "before-restart", LeaderConfig(lease_s=600, renew_s=5))
    assert dead.campaign()
    waiting = elector(store, electors, "shared", LeaderConfig(lease_s=600, renew_s=5))
    assert not waiting.campaign(), "on a shared store a live lease is waited out"
    restarted = elector(store, electors, "after-restart", LeaderConfig(lease_s=600, renew_s=5, exclusive=True))
    assert restarted.campaign(), "embedded: no other process can hold the store, the lease was a dead one's"
    assert restarted.term() == 2
    assert not dead.campaign() and not dead.is_leader(), "the old holder sees the newer version and stands down"


@pytest.mark.parametrize(("lease", "renew"), [(5, 5), (5, 20)])
def test_a_renewal_interval_not_below_the_lease_is_refused(monkeypatch, lease: float, renew: float) -> None:
    monkeypatch.setenv("FLIGHTREC_LEADER_LEASE_S", str(lease))
    monkeypatch.setenv("FLIGHTREC_LEADER_RENEW_S", str(renew))
    with pytest.raises(ValidationError) as refused:
        Settings()
    message = str(refused.value)
    assert f"FLIGHTREC_LEADER_RENEW_S={renew:g} must be below FLIGHTREC_LEADER_LEASE_S={lease:g}" in message
    with pytest.raises(ValidationError, match="must be below FLIGHTREC_LEADER_LEASE_S"):
        LeaderConfig(lease_s=lease, renew_s=renew)


def test_the_node_id_is_the_setting_or_host_pid_and_a_random_suffix(monkeypatch) -> None:
    assert Settings(node_id="collector1").leader_node() == "collector1"
    made = {Settings().leader_node() for _ in range(3)}
    assert len(made) == 3 and all(node.startswith(f"{socket.gethostname()}-{os.getpid()}-") for node in made)
    monkeypatch.setenv("FLIGHTREC_NODE_ID", "")
    with pytest.raises(ValidationError, match="node_id"):
        Settings()


def test_a_lease_of_zero_is_refused(monkeypatch) -> None:
    monkeypatch.setenv("FLIGHTREC_LEADER_LEASE_S", "0")
    with pytest.raises(ValidationError, match="leader_lease_s"):
        Settings()
    assert Settings(leader_lease_s=4, leader_renew_s=1).leader_config().model_dump() == {
        "lease_s": 4, "renew_s": 1, "exclusive": True}


def test_a_writer_that_cannot_see_the_winner_is_refused_by_the_token(store: Store) -> None:
    """On a cluster a writer may read a replica the winner's row has not reached yet: the newest-version
    guard passes there, and the insert deduplication token (kept for the whole table) refuses it. Here
    the winner's row is hidden by deleting it, which is that replica's view."""
    from datetime import datetime, timezone

    now = datetime.now(tz=timezone.utc)
    store.leases.write("hidden", version=1, term=1, holder="winner", released=False, expires=now)
    store.engine.command("test_hide_lease", f"ALTER TABLE {store.db}.leader_lease DELETE WHERE Lease = 'hidden'",
                         settings={"mutations_sync": 2})
    assert store.leases.latest("hidden") is None
    store.leases.write("hidden", version=1, term=1, holder="late", released=False, expires=now)
    assert store.leases.at("hidden", 1) == [], "a second writer of one version got in"
