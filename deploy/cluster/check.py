#!/usr/bin/env python3
"""Bring deploy/cluster up and check what matters on a real ClickHouse cluster (issue 13).

Needs Docker with the compose plugin and Python 3.9+ on the host, nothing else: every query runs
through ``docker compose exec`` (clickhouse-client in a node, Python in a collector), spans are
sent as OTLP/HTTP JSON to the load balancer's published port and, once, as OTLP/gRPC by the real
OpenTelemetry SDK exporter from inside the UI container (the image has it) through the balancer.

The claims, in order; the first that fails stops the run with a message and exit status 1:

  up              the compose project builds and every service with a healthcheck is healthy
  topology        each node has its own macros and sees both clusters as deploy/cluster pins them
  schema          otel_traces/object_links are Distributed over Replicated *_local tables everywhere
  ingest          traces of one ticket, chosen to land on both shards, are queryable through the LB
  one-shard       every span (and link) of a trace is on exactly one shard's *_local tables
  replicas-equal  both replicas of each shard hold the same rows (count and checksum)
  pause           a pause set through collector1 is seen through collector2 within --pause-bound,
                  and its row in the state table controls is alike on all four nodes
  leader          one leader; killed, the other collector takes over within --leader-bound
  story           the ticket's story through the LB covers every trace, across both shards

    python3 deploy/cluster/check.py              # up, check, down -v
    python3 deploy/cluster/check.py --keep       # leave the cluster running afterwards
    python3 deploy/cluster/check.py --dry-run    # print the plan; needs no Docker

The leader interface it reads is ``GET /api/health`` -> ``"leader": {"node", "holder", "term",
"is_leader"}`` on each collector.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

HERE = Path(__file__).resolve().parent
COMPOSE_FILE = HERE / "docker-compose.yml"
PROJECT = "flightrec-cluster-check"
DATABASE = "flightrec"
# The pinned topology (deploy/cluster/clickhouse/nodes/*/macros.xml, config.d/cluster.xml).
NODES = {"ch-s1-r1": "01", "ch-s1-r2": "01", "ch-s2-r1": "02", "ch-s2-r2": "02"}
SHARDS = {"01": ("ch-s1-r1", "ch-s1-r2"), "02": ("ch-s2-r1", "ch-s2-r2")}
DATA_CLUSTER, STATE_CLUSTER = "flightrec", "flightrec_state"
COLLECTORS = ("collector1", "collector2")
SHARDED = ("otel_traces", "object_links", "otel_traces_trace_id_ts")
STATE_TABLES = ("controls", "leader_lease", "audit_log", "flightrec_migrations")
LB_URL = "http://127.0.0.1:4318"
AGENT = "cluster-check-agent"
SPANS_PER_TRACE = 5

# Runs in a container (or on the host) to call an HTTP endpoint: argv base method path [token],
# body on stdin; prints {"status", "body"}. The token defaults to the environment's FLIGHTREC_API_TOKEN;
# an empty one sends no Authorization header.
HTTP_SNIPPET = """
import json, os, sys, urllib.error, urllib.request
base, method, path = sys.argv[1:4]
token = sys.argv[4] if len(sys.argv) > 4 else os.environ.get("FLIGHTREC_API_TOKEN", "")
body = sys.stdin.buffer.read() or None
headers = {"Content-Type": "application/json", **({"Authorization": "Bearer " + token} if token else {})}
request = urllib.request.Request(base + path, data=body, method=method, headers=headers)
try:
    with urllib.request.urlopen(request, timeout=15) as response:
        status, text = response.status, response.read()
except urllib.error.HTTPError as error:
    status, text = error.code, error.read()
print(json.dumps({"status": status, "body": text.decode("utf-8", "replace")}))
"""

# Runs in the UI container: one trace of argv[2] spans for ticket argv[3], sent by the OpenTelemetry
# SDK's OTLP/gRPC exporter to argv[1]; prints the trace id.
GRPC_SNIPPET = """
import sys
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
endpoint, spans, ticket, agent = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
provider = TracerProvider(resource=Resource.create({"service.name": agent}))
provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=endpoint, insecure=True)))
tracer = provider.get_tracer("cluster-check")
with tracer.start_as_current_span("handle ticket", attributes={"flightrec.object.type": "ticket",
                                                              "flightrec.object.id": ticket}) as root:
    for step in range(spans - 1):
        with tracer.start_as_current_span(f"step {step}"):
            pass
provider.shutdown()
print(format(root.get_span_context().trace_id, "032x"))
"""


class ClaimFailed(Exception):
    """A claim about the cluster that does not hold: the message says which and how."""


# --- pure checks (tests/test_deploy_cluster.py runs them without Docker) ---------------------------


def otlp_json(traces: dict[str, int], ticket: str, agent: str, now_ns: int) -> dict:
    """An OTLP/HTTP JSON request: per trace id, a root span naming the ticket and its children."""
    spans = []
    for t, (trace_id, count) in enumerate(sorted(traces.items())):
        root = f"{t + 1:04x}{0:012x}"
        for s in range(count):
            start = now_ns - (count - s) * 1_000_000
            span = {"traceId": trace_id, "spanId": f"{t + 1:04x}{s:012x}", "name": "handle ticket" if s == 0 else f"step {s}",
                    "kind": 1, "startTimeUnixNano": str(start), "endTimeUnixNano": str(start + 500_000)}
            if s == 0:
                span["attributes"] = [{"key": "flightrec.object.type", "value": {"stringValue": "ticket"}},
                                      {"key": "flightrec.object.id", "value": {"stringValue": ticket}}]
            else:
                span["parentSpanId"] = root
            spans.append(span)
    resource = {"attributes": [{"key": "service.name", "value": {"stringValue": agent}}]}
    return {"resourceSpans": [{"resource": resource, "scopeSpans": [{"scope": {"name": "cluster-check"}, "spans": spans}]}]}


def single_shard(trace_id: str, counts: dict[str, int], expected: int) -> str:
    """The shard holding all ``expected`` spans of a trace, given each shard's count of them."""
    holding = {shard: n for shard, n in counts.items() if n}
    if sum(holding.values()) != expected:
        raise ClaimFailed(f"trace {trace_id}: {sum(holding.values())} spans in the shards' local tables, "
                          f"{expected} sent (per shard: {counts})")
    if len(holding) != 1:
        raise ClaimFailed(f"trace {trace_id} is split across shards {sorted(holding)} ({counts}): "
                          "the Distributed table must shard by cityHash64(TraceId)")
    return next(iter(holding))


def replicas_equal(what: str, states: dict[str, tuple]) -> None:
    """Every replica's (row count, checksum) of one table is the same."""
    if len(set(states.values())) != 1:
        raise ClaimFailed(f"{what}: replicas differ after SYSTEM SYNC REPLICA: {states}")


def check_clusters(node: str, rows: list[list[str]]) -> None:
    """A node's system.clusters rows (cluster, shard_num, replica_num, host_name) match the pinned topology."""
    seen: dict[str, dict[int, list[str]]] = {}
    for cluster, shard, _replica, host in rows:
        seen.setdefault(cluster, {}).setdefault(int(shard), []).append(host)
    want = {DATA_CLUSTER: {int(s): list(hosts) for s, hosts in SHARDS.items()}, STATE_CLUSTER: {1: list(NODES)}}
    for cluster, shards in want.items():
        got = {shard: sorted(hosts) for shard, hosts in seen.get(cluster, {}).items()}
        if got != {shard: sorted(hosts) for shard, hosts in shards.items()}:
            raise ClaimFailed(f"{node}: cluster {cluster} is {got or 'missing'}, expected {shards} (config.d/cluster.xml)")


def check_macros(node: str, shard: str, replica: str) -> None:
    if (shard, replica) != (NODES[node], node):
        raise ClaimFailed(f"{node}: macros shard={shard!r} replica={replica!r}, expected shard={NODES[node]!r} "
                          f"replica={node!r} (clickhouse/nodes/{node}/macros.xml)")


def leader_of(healths: dict[str, dict]) -> tuple[str, int]:
    """(collector that leads, term) from each collector's /api/health; exactly one leads, all agree."""
    leaders = [name for name, health in healths.items() if (health.get("leader") or {}).get("is_leader")]
    if len(leaders) != 1:
        raise ClaimFailed(f"{len(leaders)} collectors say they lead ({leaders or 'none'}); exactly one must: "
                          + json.dumps({name: health.get("leader") for name, health in healths.items()}))
    leader = healths[leaders[0]]["leader"]
    for name, health in healths.items():
        if (health.get("leader") or {}).get("holder") != leader["node"]:
            raise ClaimFailed(f"{name} names holder {health.get('leader', {}).get('holder')!r}, but {leaders[0]} "
                              f"leads as {leader['node']!r}")
    return leaders[0], int(leader["term"])


def took_over(old_term: int, health: dict) -> bool:
    """A survivor's health says it leads now, under a newer term than the dead leader's."""
    leader = health.get("leader") or {}
    return bool(leader.get("is_leader")) and int(leader.get("term", 0)) > old_term


# --- running it ------------------------------------------------------------------------------------


@dataclass
class Cluster:
    """The compose project, and the calls a check makes into it."""

    env: dict[str, str]
    verbose: bool = False
    lb_url: str = LB_URL
    password: str = field(init=False)

    def __post_init__(self) -> None:
        self.password = self.env.get("FLIGHTREC_CLICKHOUSE_PASSWORD") or "flightrec"

    def run(self, args: list[str], stdin: str = "", check: bool = True) -> str:
        if self.verbose:
            print("  $", " ".join(args), file=sys.stderr)
        done = subprocess.run(args, input=stdin, capture_output=True, text=True, env=self.env, check=False)
        if check and done.returncode != 0:
            raise ClaimFailed(f"`{' '.join(args[:8])} ...` exited {done.returncode}: {done.stderr.strip()[-2000:]}")
        return done.stdout

    def compose(self, *args: str, check: bool = True) -> str:
        return self.run(["docker", "compose", "-f", str(COMPOSE_FILE), "-p", PROJECT, *args], check=check)

    def sql(self, node: str, query: str, **params: str) -> list[list[str]]:
        """Rows of a query on one node, values bound as clickhouse-client parameters ({name:Type})."""
        bound = [f"--param_{name}={value}" for name, value in params.items()]
        out = self.run(["docker", "compose", "-f", str(COMPOSE_FILE), "-p", PROJECT, "exec", "-T", node,
                        "clickhouse-client", "--user", "flightrec", "--password", self.password, "--format", "TSV",
                        *bound], stdin=query)
        return [line.split("\t") for line in out.splitlines() if line]

    def http(self, where: str | None, method: str, path: str, body: object = None,
             token: str | None = None) -> tuple[int, object]:
        """(status, parsed body) of a request made in a service's container to itself, or on the host
        (where=None) to the load balancer's published port."""
        prefix = (["docker", "compose", "-f", str(COMPOSE_FILE), "-p", PROJECT, "exec", "-T", where, "python"]
                  if where else [sys.executable])
        base = "http://127.0.0.1:4318" if where else self.lb_url
        # token None: the API token (the container's, or ours); "" sends no Authorization header.
        args = [*prefix, "-c", HTTP_SNIPPET, base, method, path, *([] if token is None else [token])]
        answer = json.loads(self.run(args, stdin=json.dumps(body) if body is not None else ""))
        try:
            return answer["status"], json.loads(answer["body"])
        except json.JSONDecodeError:
            return answer["status"], answer["body"]

    def api(self, where: str | None, method: str, path: str, body: object = None) -> object:
        token = None if where else self.env["FLIGHTREC_API_TOKEN"]
        status, payload = self.http(where, method, path, body, token)
        if status >= 400:
            raise ClaimFailed(f"{method} {path} via {where or 'the load balancer'}: {status} {payload}")
        return payload


def wait_for(what: str, bound: float, probe: Callable[[], object], interval: float = 0.25) -> tuple[object, float]:
    """Poll ``probe`` until it returns something truthy; (that value, seconds it took), or ClaimFailed."""
    start = time.monotonic()
    while True:
        value = probe()
        elapsed = time.monotonic() - start
        if value:
            return value, elapsed
        if elapsed > bound:
            raise ClaimFailed(f"{what}: not within {bound:.0f} s")
        time.sleep(interval)


@dataclass
class Run:
    """State the claims share: the ticket, its traces, and the timing bounds."""

    cluster: Cluster
    pause_bound: float
    leader_bound: float
    ticket: str = field(default_factory=lambda: f"CHK-{secrets.token_hex(4)}")
    traces: dict[str, int] = field(default_factory=dict)
    shard_of: dict[str, str] = field(default_factory=dict)

    def up(self) -> str:
        self.cluster.compose("up", "-d", "--build", "--wait", "--wait-timeout", "900")
        return "every service up, healthchecks passing"

    def topology(self) -> str:
        for node in NODES:
            (shard, replica), = self.cluster.sql(node, "SELECT getMacro('shard'), getMacro('replica')")
            check_macros(node, shard, replica)
            check_clusters(node, self.cluster.sql(
                node, "SELECT cluster, shard_num, replica_num, host_name FROM system.clusters "
                      "WHERE cluster IN ({data:String}, {state:String})", data=DATA_CLUSTER, state=STATE_CLUSTER))
        return f"{len(NODES)} nodes: macros unique, {DATA_CLUSTER} 2x2, {STATE_CLUSTER} 1x4"

    def schema(self) -> str:
        for node in NODES:
            engines = dict(self.cluster.sql(node, "SELECT name, engine FROM system.tables WHERE database = {db:String}",
                                            db=DATABASE))
            for table in SHARDED:
                if engines.get(table) != "Distributed" or not engines.get(f"{table}_local", "").startswith("Replicated"):
                    raise ClaimFailed(f"{node}: {table} is {engines.get(table)!r} and {table}_local is "
                                      f"{engines.get(table + '_local')!r}; expected Distributed over Replicated*")
            for table in STATE_TABLES:
                if not engines.get(table, "").startswith("Replicated"):
                    raise ClaimFailed(f"{node}: state table {table} is {engines.get(table)!r}, expected Replicated*")
        return "Distributed over Replicated *_local on every node; state tables Replicated"

    def ingest(self) -> str:
        # Two trace ids per shard, picked by the sharding key's remainder (shard 01 takes 0 with equal weights).
        wanted = {0: 2, 1: 2}
        while any(wanted.values()):
            candidate = secrets.token_hex(16)
            (remainder,), = self.cluster.sql("ch-s1-r1", "SELECT cityHash64({t:String}) % 2", t=candidate)
            if wanted[int(remainder)]:
                wanted[int(remainder)] -= 1
                self.traces[candidate] = SPANS_PER_TRACE
        self.send_http(otlp_json(self.traces, self.ticket, AGENT, time.time_ns()))
        grpc = self.cluster.compose("exec", "-T", "ui", "python", "-c", GRPC_SNIPPET, "lb:4317",
                                    str(SPANS_PER_TRACE), self.ticket, AGENT).strip().splitlines()[-1]
        self.traces[grpc] = SPANS_PER_TRACE
        for trace_id, count in self.traces.items():
            wait_for(f"trace {trace_id} queryable through the load balancer", 120,
                     lambda t=trace_id, n=count: self._spans_of(t) == n)
        return f"{len(self.traces)} traces of ticket {self.ticket} (one over gRPC) queryable"

    def send_http(self, request: dict) -> None:
        """POST an OTLP/HTTP JSON request to the load balancer; every span must be accepted."""
        # OTLP carries an ingest token when the deployment wants one, else none (the API token is not one).
        ingest_token = (self.cluster.env.get("FLIGHTREC_INGEST_TOKENS") or "").split(",")[0].strip()
        status, payload = self.cluster.http(None, "POST", "/v1/traces", request, ingest_token)
        if status != 200 or (isinstance(payload, dict) and payload.get("partialSuccess", {}).get("rejectedSpans")):
            raise ClaimFailed(f"OTLP/HTTP through the load balancer: {status} {payload}")

    def _spans_of(self, trace_id: str) -> int:
        status, payload = self.cluster.http(None, "GET", f"/api/traces/{trace_id}", token=self.cluster.env["FLIGHTREC_API_TOKEN"])
        return len(payload.get("spans", [])) if status == 200 and isinstance(payload, dict) else 0

    def one_shard(self) -> str:
        for trace_id, count in self.traces.items():
            counts = {shard: int(self.cluster.sql(nodes[0], "SELECT count() FROM flightrec.otel_traces_local "
                                                  "WHERE TraceId = {t:String}", t=trace_id)[0][0])
                      for shard, nodes in SHARDS.items()}
            self.shard_of[trace_id] = single_shard(trace_id, counts, count)
            for shard, nodes in SHARDS.items():
                links = int(self.cluster.sql(nodes[0], "SELECT count() FROM flightrec.object_links_local "
                                             "WHERE TraceId = {t:String}", t=trace_id)[0][0])
                if bool(links) != (shard == self.shard_of[trace_id]):
                    raise ClaimFailed(f"trace {trace_id}: {links} links on shard {shard}, its spans on shard "
                                      f"{self.shard_of[trace_id]}: links must live with their trace")
        if set(self.shard_of.values()) != set(SHARDS):
            raise ClaimFailed(f"the ticket's traces landed on shards {sorted(set(self.shard_of.values()))} only")
        return "each trace whole on one shard, its links with it; " + ", ".join(
            f"shard {s}: {sum(1 for v in self.shard_of.values() if v == s)} traces" for s in SHARDS)

    def _table_state(self, node: str, table: str) -> tuple:
        self.cluster.sql(node, f"SYSTEM SYNC REPLICA {DATABASE}.{table}")
        return tuple(self.cluster.sql(node, f"SELECT count(), sum(cityHash64(*)) FROM {DATABASE}.{table}")[0])

    def replicas_equal(self) -> str:
        for shard, nodes in SHARDS.items():
            for table in SHARDED:
                replicas_equal(f"shard {shard} {table}_local",
                               {node: self._table_state(node, f"{table}_local") for node in nodes})
        return "both replicas of each shard equal (rows and their checksum)"

    def pause(self) -> str:
        path = f"/api/controls/agents/{AGENT}"
        self.cluster.api("collector1", "POST", f"{path}/pause", {"reason": "deploy/cluster/check.py", "force": True})
        try:
            _, took = wait_for("the pause set through collector1 seen through collector2", self.pause_bound,
                               lambda: not self.cluster.api("collector2", "GET", f"/api/controls/check?agent={AGENT}")["allowed"])
            # The switch is state: one row, the same, on every node (the one-shard state cluster).
            replicas_equal("the paused switch in controls", {node: self._switch_on(node) for node in NODES})
        finally:
            self.cluster.api("collector1", "POST", f"{path}/resume", {"reason": "deploy/cluster/check.py"})
        return f"paused through collector1, refused through collector2 after {took:.1f} s (bound {self.pause_bound:.0f} s); " \
               "the switch's row alike on all four nodes"

    def _switch_on(self, node: str) -> tuple:
        self.cluster.sql(node, f"SYSTEM SYNC REPLICA {DATABASE}.controls")
        rows = self.cluster.sql(node, f"SELECT State FROM {DATABASE}.controls FINAL "
                                      "WHERE Scope = 'agent' AND Name = {a:String}", a=AGENT)
        return tuple(row[0] for row in rows) or ("missing",)

    def _health(self, collector: str) -> dict:
        status, payload = self.cluster.http(collector, "GET", "/api/health")
        if not isinstance(payload, dict) or "leader" not in payload:
            raise ClaimFailed(f"{collector}: /api/health ({status}) has no leader status: {payload}")
        return payload

    def leader(self) -> str:
        healths = {c: self._health(c) for c in COLLECTORS}
        leader, term = leader_of(healths)
        survivor = next(c for c in COLLECTORS if c != leader)
        self.cluster.compose("kill", leader)
        try:
            _, took = wait_for(f"{survivor} leading after {leader} was killed", self.leader_bound,
                               lambda: took_over(term, self._health(survivor)))
        finally:
            self.cluster.compose("start", leader)
        self.cluster.compose("up", "-d", "--wait", "--wait-timeout", "300", leader)
        wait_for(f"{leader} back as a follower", 60, lambda: leader_of({c: self._health(c) for c in COLLECTORS})[0] == survivor)
        return f"{leader} killed at term {term}; {survivor} led after {took:.1f} s (bound {self.leader_bound:.0f} s)"

    def story(self) -> str:
        story = self.cluster.api(None, "GET", f"/api/objects/ticket/{self.ticket}/story?runs=50")
        if set(story["traces"]) != set(self.traces) or story["runs_total"] != len(self.traces):
            raise ClaimFailed(f"story of ticket:{self.ticket} tells traces {sorted(story['traces'])} "
                              f"(runs_total {story['runs_total']}), sent {sorted(self.traces)} over both shards")
        spans = self.cluster.api(None, "GET", f"/api/objects/ticket/{self.ticket}/spans")["spans"]
        if len(spans) != sum(self.traces.values()):
            raise ClaimFailed(f"ticket:{self.ticket} has {len(spans)} spans through the API, {sum(self.traces.values())} sent")
        return f"story of ticket:{self.ticket}: {len(story['traces'])} traces from both shards, {len(spans)} spans"


CLAIMS: list[tuple[str, str]] = [
    ("up", "docker compose up -d --build --wait: 3 Keeper, 4 ClickHouse (Keeper quorum in their healthcheck), "
           "2 collectors, HAProxy, UI"),
    ("topology", "on each node: getMacro('shard'/'replica') and system.clusters for flightrec (2x2) and flightrec_state (1x4)"),
    ("schema", "on each node: otel_traces, object_links, otel_traces_trace_id_ts Distributed over Replicated *_local; "
               "controls, leader_lease, audit_log, flightrec_migrations Replicated"),
    ("ingest", "4 traces (2 per shard by cityHash64(TraceId) % 2) over OTLP/HTTP JSON to 127.0.0.1:4318 and 1 over "
               "OTLP/gRPC (the SDK exporter, ui -> lb:4317); each queryable via GET /api/traces/ID"),
    ("one_shard", "per trace: count() in otel_traces_local on each shard (all on one), object_links_local with it"),
    ("replicas_equal", "SYSTEM SYNC REPLICA, then count() and sum(cityHash64(*)) of each sharded *_local table on "
                       "both replicas of each shard"),
    ("pause", "POST /api/controls/agents/AGENT/pause on collector1; poll GET /api/controls/check on collector2; "
              "the switch's row alike in controls on all four nodes; resume"),
    ("leader", "GET /api/health on both collectors: one leader; docker compose kill it; poll the other until "
               "is_leader with a newer term; start the killed one again: it follows"),
    ("story", "GET /api/objects/ticket/ID/story and /spans through the LB: every trace sent, from both shards"),
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dry-run", action="store_true", help="print the plan and exit; needs no Docker")
    parser.add_argument("--keep", action="store_true", help="leave the cluster running (default: down -v at the end)")
    parser.add_argument("--pause-bound", type=float, default=5.0,
                        help="seconds a pause may take to be seen through the other collector (default 5)")
    parser.add_argument("--leader-bound", type=float, default=30.0,
                        help="seconds a killed leader may take to be replaced (default 30: the stated bound "
                             "leader_lease_s + leader_renew_s = 15 + 5 s, plus 10 s for the kill and the statements)")
    parser.add_argument("--verbose", action="store_true", help="print every command")
    options = parser.parse_args(argv)
    if options.dry_run:
        print(f"compose file {COMPOSE_FILE}, project {PROJECT}; bounds: pause {options.pause_bound:.0f} s, "
              f"leader {options.leader_bound:.0f} s")
        for number, (name, plan) in enumerate(CLAIMS, 1):
            print(f"{number}. {name}: {plan}")
        print("then: docker compose down -v" + (" (skipped: --keep)" if options.keep else ""))
        return 0
    env = dict(os.environ)
    env.setdefault("FLIGHTREC_API_TOKEN", secrets.token_hex(32))
    env.setdefault("FLIGHTREC_CLUSTER_SECRET", secrets.token_hex(32))
    cluster = Cluster(env, verbose=options.verbose)
    run = Run(cluster, pause_bound=options.pause_bound, leader_bound=options.leader_bound)
    failed, name = False, "start"
    try:
        for number, (name, _plan) in enumerate(CLAIMS, 1):
            started = time.monotonic()
            print(f"{number}. {name} ...", flush=True)
            result = getattr(run, name)()
            print(f"   ok ({time.monotonic() - started:.1f} s): {result}", flush=True)
    except ClaimFailed as failure:
        failed = True
        print(f"FAILED {name}: {failure}", file=sys.stderr)
    except (OSError, KeyError, ValueError, TypeError) as error:
        failed = True
        print(f"FAILED {name}: {type(error).__name__}: {error}", file=sys.stderr)
    finally:
        if not options.keep:
            cluster.compose("down", "-v", check=False)
    if not failed:
        print(f"all {len(CLAIMS)} claims hold")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
