"""Rollback benchmark: undo an agent's last 100 actions against the demo system of record.

Target (issue 5): the undo of the last 100 actions of an agent takes <= 10 s and restores the
system of record's state exactly.

Setup, all real processes: ``flightrec records`` (the demo system of record), ``flightrec serve``
(its undo executor pointed at the records service with FLIGHTREC_RECORDS_URL), and the simulated
fleet acting on the records service and exporting its spans over OTLP/HTTP.

1. A warm-up run of the whole fleet (all agents act on the shared objects).
2. Per measured run: support-agent and finance-agent are paused (their workflows are refused),
   so only ops-agent acts; the records service's state is snapshot after every workflow, keyed by
   the number of calls it has received. The fleet runs until ops-agent has >= 100 performed
   actions in this run and the boundary before its newest 100 falls between two workflows
   (then one snapshot is exactly the state before them; email.send makes no records call).
3. ``POST /api/rollback/plans {"agent": "ops-agent", "last": 100}`` (timed: plan build), then
   ``POST /api/rollback/plans/{id}/execute {"wait": true}`` (timed: execution); the state must
   equal the snapshot, and each executed step must have made exactly one effective call.

    python bench/rollback.py            # 3 measured runs
    python bench/rollback.py --runs 1 --last 100
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import MonitoredServer, free_port, machine  # noqa: E402
from flightrec.demo import fleet_catalog as cat  # noqa: E402
from flightrec.demo.fleet import FleetConfig, run_fleet  # noqa: E402

OUT = Path(__file__).resolve().parent / "out"
AGENT = "ops-agent"
OTHERS = ("support-agent", "finance-agent")
ACTOR = "bench.oncall"
TARGET_S = 10.0


class Records:
    """``flightrec records`` in a subprocess."""

    def __init__(self, db: Path) -> None:
        self.db, self.port = db, free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Records:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "flightrec", "records", "--port", str(self.port), "--db", str(self.db)],
            stdout=open(self.db.with_suffix(".log"), "ab"), stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                time.sleep(0.05)
        raise RuntimeError("records service did not start")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=30)


def ok(response: httpx.Response, status: int = 200) -> Any:
    if response.status_code != status:
        raise RuntimeError(f"{response.request.method} {response.request.url} answered {response.status_code}: "
                           f"{response.text[:500]}")
    return response.json()


class Bench:
    def __init__(self, server: MonitoredServer, records: Records, start: datetime) -> None:
        self.server, self.records = server, records
        self.api = httpx.Client(base_url=server.url, timeout=300)
        self.rec = httpx.Client(base_url=records.url, timeout=60)
        self.clock = start  # the simulated clock: each fleet run starts after the previous one
        self.seed = 100

    def drained(self) -> None:
        deadline = time.monotonic() + 120
        while self.api.get("/api/health").json()["backlog_spans"]:
            if time.monotonic() > deadline:
                raise RuntimeError("the server's WAL backlog did not drain")
            time.sleep(0.05)

    def calls(self) -> list[dict[str, Any]]:
        return ok(self.rec.get("/calls"))["items"]

    def state(self) -> dict[str, Any]:
        return ok(self.rec.get("/state"))

    def fleet(self, workflows: int, snapshots: dict[int, dict[str, Any]] | None = None, **options: Any) -> None:
        """One fleet run on the records service; with `snapshots`, the state after each workflow by call count."""

        def snapshot(_n: int) -> None:
            if snapshots is not None:
                snapshots[len(self.calls())] = self.state()

        self.seed += 1
        config = FleetConfig(endpoint=self.server.url, workflows=workflows, seed=self.seed, start=self.clock,
                             records_url=self.records.url, api_url=self.server.url, **options)
        run_fleet(config, progress=snapshot)
        self.clock += timedelta(seconds=workflows * cat.WORKFLOW_SPACING_S + 120)
        self.drained()

    def switch(self, agent: str, command: str) -> None:
        ok(self.api.post(f"/api/controls/agents/{agent}/{command}", json={"actor": ACTOR, "reason": "benchmark"}))

    def performed(self, since: datetime) -> list[dict[str, Any]]:
        items = ok(self.api.get("/api/actions", params={"agent": AGENT, "performed": True, "last": 10_000}))["items"]
        return [a for a in items if datetime.fromisoformat(a["time"]) >= since]

    def one_run(self, last: int, first_chunk: int, chunk: int) -> dict[str, Any]:
        """Only AGENT acts until its newest `last` actions start at a workflow boundary; undo them."""
        for other in OTHERS:
            self.switch(other, "pause")
        since = self.clock
        snapshots = {len(self.calls()): self.state()}
        workflows, chunks = 0, 0
        while True:
            size = first_chunk if not chunks else chunk
            self.fleet(size, snapshots, check_controls=True)
            workflows, chunks = workflows + size, chunks + 1
            mine = self.performed(since)
            if len(mine) >= last:
                newest = mine[:last]
                boundary = len(self.calls()) - sum(1 for a in newest if a["undo_kind"])
                if boundary in snapshots:
                    break
            if chunks > 40:
                raise RuntimeError("no workflow boundary before the newest actions; try another --last")
        for other in OTHERS:
            self.switch(other, "resume")
        before, calls_before = snapshots[boundary], len(self.calls())

        started = time.perf_counter()
        plan = ok(self.api.post("/api/rollback/plans", json={"agent": AGENT, "last": last, "actor": ACTOR}), 201)
        plan_ms = (time.perf_counter() - started) * 1000
        statuses = Counter(step["status"] for step in plan["steps"])
        same = [step["action_id"] for step in plan["steps"]] == [a["action_id"] for a in newest]
        started = time.perf_counter()
        done = ok(self.api.post(f"/api/rollback/plans/{plan['id']}/execute", json={"actor": ACTOR, "wait": True}))
        execute_s = time.perf_counter() - started
        after = self.state()
        made = [c for c in self.calls()[calls_before:] if (c["idempotency_key"] or "").startswith(f"{plan['id']}:")]
        executed = sum(1 for step in done["steps"] if step["status"] == "done")
        one_effect = (len(made) == executed and len({c["idempotency_key"] for c in made}) == executed
                      and all(200 <= c["status"] < 300 and not c["replayed"] for c in made))
        self.drained()  # the undo spans are in the store before the next run plans
        return {
            "workflows": workflows,
            "performed_in_run": len(mine),
            "plan_id": plan["id"],
            "plan_status": plan["status"],
            "steps": len(plan["steps"]),
            "plan_is_newest_n": same,
            "step_statuses": dict(statuses),
            "conflicted": [(s["action"], s["reason"]) for s in plan["steps"] if s["status"] == "conflicted"],
            "executed_steps": executed,
            "result": done["status"],
            "error": done["error"],
            "plan_build_ms": round(plan_ms, 1),
            "execution_s": round(execute_s, 3),
            "steps_per_s": round(executed / execute_s, 1) if execute_s else None,
            "one_effect_per_step": one_effect,
            "restored": after == before,
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="measured runs (each on new actions)")
    parser.add_argument("--last", type=int, default=100, help="how many of the agent's newest actions to undo")
    parser.add_argument("--warmup", type=int, default=200, help="workflows of the whole fleet before measuring")
    parser.add_argument("--first-chunk", type=int, default=300, help="workflows of a run's first fleet chunk")
    parser.add_argument("--chunk", type=int, default=15, help="workflows of each further chunk")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="flightrec-rollback-bench-") as tmp:
        root = Path(tmp)
        records = Records(root / "records.db").start()
        server = MonitoredServer(root / "srv", env={"FLIGHTREC_RECORDS_URL": records.url})
        try:
            server.start()
            sim_hours = (args.warmup + args.runs * (args.first_chunk + 40 * args.chunk)) * cat.WORKFLOW_SPACING_S / 3600
            bench = Bench(server, records, datetime.now(timezone.utc) - timedelta(hours=sim_hours + 1))
            started = time.perf_counter()
            bench.fleet(args.warmup)
            print(f"warm-up: {args.warmup} workflows of the whole fleet in {time.perf_counter() - started:.1f} s; "
                  f"{len(bench.calls())} records calls")
            runs = []
            for index in range(args.runs):
                run = bench.one_run(args.last, args.first_chunk, args.chunk)
                runs.append(run)
                print(f"run {index + 1}: {run['workflows']} workflows, {run['performed_in_run']} {AGENT} actions; "
                      f"plan of {run['steps']} steps {run['step_statuses']} built in {run['plan_build_ms']:.0f} ms; "
                      f"executed {run['executed_steps']} steps in {run['execution_s']:.2f} s "
                      f"({run['steps_per_s']} steps/s) -> {run['result']}; restored: "
                      f"{'yes' if run['restored'] else 'NO'}; one effect per step: "
                      f"{'yes' if run['one_effect_per_step'] else 'NO'}")
                for action, reason in run["conflicted"]:
                    print(f"  conflicted {action}: {reason}")
        finally:
            server.stop()
            records.stop()

    total_s = [r["plan_build_ms"] / 1000 + r["execution_s"] for r in runs]
    summary = {
        "machine": machine(),
        "command": "python " + " ".join(sys.argv),
        "agent": AGENT,
        "last": args.last,
        "runs": runs,
        "median_plan_build_ms": statistics.median(r["plan_build_ms"] for r in runs),
        "median_execution_s": statistics.median(r["execution_s"] for r in runs),
        "median_steps_per_s": statistics.median(r["steps_per_s"] for r in runs),
        "worst_total_s": max(total_s),
        "all_restored": all(r["restored"] for r in runs),
        "all_one_effect": all(r["one_effect_per_step"] for r in runs),
        "target_s": TARGET_S,
    }
    summary["target_met"] = bool(summary["worst_total_s"] <= TARGET_S and summary["all_restored"]
                                 and all(r["result"] == "done" for r in runs))
    OUT.mkdir(exist_ok=True)
    (OUT / "rollback-results.json").write_text(json.dumps(summary, indent=1))
    print()
    print(f"machine: {summary['machine']}")
    print(f"undo of the last {args.last} actions of {AGENT}, {args.runs} runs:")
    plan_ms = ", ".join(f"{r['plan_build_ms']:.0f}" for r in runs)
    execute_s = ", ".join(f"{r['execution_s']:.2f}" for r in runs)
    print(f"  plan build ms   median {summary['median_plan_build_ms']:.0f}  (runs: {plan_ms})")
    print(f"  execution s     median {summary['median_execution_s']:.2f}  (runs: {execute_s})")
    print(f"  steps/s         median {summary['median_steps_per_s']}")
    print(f"  restored        {'yes' if summary['all_restored'] else 'no'}")
    print(f"  worst plan+execute {summary['worst_total_s']:.2f} s, target <= {TARGET_S:.0f} s: "
          f"{'met' if summary['target_met'] else 'NOT met'}")
    print(f"results written to {OUT / 'rollback-results.json'}")


if __name__ == "__main__":
    main()
