"""Leader handover benchmark: how long a dead or a stopped leader takes to be replaced, and a renewal's cost.

Two electors (flightrec/leader.py) in this process over one embedded store, as two collectors on
one ClickHouse would be (two processes cannot open one chDB directory). Per trial: ``a`` leads and
``b`` has read the lease; then ``a`` dies (stops without releasing) or stops cleanly (releases),
and the time until ``b`` leads is taken. The stated bounds: ``lease_s + renew_s`` after a death,
``renew_s`` after a release, each plus the statements' own time.

    python bench/leader.py                          # lease 1.0 s, renew 0.2 s, 10 trials each
    python bench/leader.py --lease 15 --renew 5 --trials 2
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import uuid

from flightrec.leader import LeaderConfig, LeaderElector
from flightrec.store import StoreConfig, open_store


def until(condition, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.005)
    raise RuntimeError("timed out")


def handover(store, config: LeaderConfig, release: bool) -> float:
    lease = uuid.uuid4().hex[:8]
    a, b = (LeaderElector(store.leases, node, config, lease=lease) for node in ("a", "b"))
    assert a.campaign()
    a.start()
    b.start()
    until(lambda: b.status().holder == "a")
    (a.shutdown if release else a.stop)()
    stopped = time.monotonic()
    until(b.is_leader)
    took = time.monotonic() - stopped
    b.shutdown()
    return took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lease", type=float, default=1.0, help="lease seconds")
    parser.add_argument("--renew", type=float, default=0.2, help="renewal interval seconds")
    parser.add_argument("--trials", type=int, default=10, help="trials of each kind")
    args = parser.parse_args()
    config = LeaderConfig(lease_s=args.lease, renew_s=args.renew)
    with tempfile.TemporaryDirectory() as directory:
        store = open_store(StoreConfig(dsn=f"chdb://{directory}"))
        dead = [handover(store, config, release=False) for _ in range(args.trials)]
        released = [handover(store, config, release=True) for _ in range(args.trials)]
        holder = LeaderElector(store.leases, "cost", config, lease="cost")
        holder.campaign()
        started = time.perf_counter()
        for _ in range(50):
            holder.campaign()
        renewal = (time.perf_counter() - started) / 50
        store.close()
    print(f"dead leader replaced (bound {args.lease + args.renew:g} s): median {statistics.median(dead):.2f} s, "
          f"max {max(dead):.2f} s")
    print(f"released lease taken (bound {args.renew:g} s): median {statistics.median(released):.3f} s, "
          f"max {max(released):.3f} s")
    print(f"one renewal (read, conditional insert, read back): {renewal * 1000:.1f} ms")


if __name__ == "__main__":
    main()
