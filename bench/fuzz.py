"""Fuzz benchmark: the whole bad-input corpus (tests/fuzz_corpus.py) against a fresh server.

Every OTLP/HTTP case is posted on one keep-alive connection (httpx.Client), then every
gRPC case is sent as raw bytes to TraceService/Export. Per class it prints the count,
the status codes seen, 5xx, connection resets, timeouts, answers other than the
contract asks for, and the slowest answer; then whether the server still answers, how
long a valid span sent after the corpus takes to become queryable, and whether what is
stored is exactly what was acknowledged. Targets: 0 crashes, 0 5xx, 0 hangs, a valid
span queryable within 5 s.

    python bench/fuzz.py                      # the whole corpus, default server limits
    python bench/fuzz.py --per-class 50       # a quick look
    python bench/fuzz.py --findings /tmp/fuzz_findings.md
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

import grpc
import httpx
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import MonitoredServer, machine  # noqa: E402
from tests.fuzz_corpus import (  # noqa: E402
    FuzzCorpus, Limits, Sent, call_grpc, post_case, post_until_accepted, valid_probe,
)

QUERYABLE_TARGET_S = 5.0


class ClassStats:
    def __init__(self) -> None:
        self.count = 0
        self.statuses: Counter[str] = Counter()
        self.server_errors = 0
        self.resets = 0
        self.timeouts = 0
        self.mismatches = 0
        self.max_latency = 0.0
        self.slowest = ""
        self.examples: list[Sent] = []
        self.stored = 0  # spans the answers say were kept
        self.reject_ids: list[str] = []  # trace ids of refused bodies: none may be stored
        self.open_answers: Counter[str] = Counter()  # how cases the contract leaves open were answered

    def add(self, sent: Sent) -> None:
        self.count += 1
        self.stored += sent.verdict.stored
        if sent.expect.outcome in ("any", "ok"):
            partial = " partial" if sent.verdict.rejected else ""
            kind = re.sub(r"^\D*?-\d+-", "", sent.case.name)[:48]  # the case name without its class and index
            self.open_answers[f"{kind}: {sent.status}{partial}"] += 1
        if sent.expect.outcome == "reject" and len(self.reject_ids) < 20:
            self.reject_ids.extend(sent.expect.trace_ids[:1])
        self.statuses[sent.status] += 1
        if sent.status.isdigit() and int(sent.status) >= 500 and sent.verdict.problems:
            self.server_errors += 1
        if sent.status in ("INTERNAL", "UNKNOWN"):
            self.server_errors += 1
        self.resets += sent.status == "reset"
        self.timeouts += sent.status == "timeout"
        if sent.verdict.problems:
            self.mismatches += 1
            if len(self.examples) < 6:
                self.examples.append(sent)
        if sent.seconds > self.max_latency:
            self.max_latency, self.slowest = sent.seconds, sent.case.name


def alive(url: str) -> bool:
    for path in ("/api/health/live", "/api/health"):
        try:
            status = httpx.get(url + path, timeout=5).status_code
        except httpx.HTTPError:
            return False
        if status != 404:
            return status < 500 or path == "/api/health"
    return False


def run(cases, send, label: str, total: int) -> dict[str, ClassStats]:
    stats: dict[str, ClassStats] = defaultdict(ClassStats)
    with Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TextColumn("{task.fields[cls]}")) as progress:
        task = progress.add_task(label, total=total, cls="")
        for case in cases:
            sent = send(case)
            stats[case.cls].add(sent)
            progress.update(task, advance=1, cls=case.cls)
    return stats


def print_table(title: str, stats: dict[str, ClassStats]) -> None:
    print(f"\n{title}")
    print(f"{'class':24s} {'count':>6s} {'5xx':>4s} {'reset':>5s} {'t/o':>4s} {'off':>5s} {'max s':>7s}  statuses"
          "  (slowest)")
    for cls, row in stats.items():
        codes = ", ".join(f"{code}:{n}" for code, n in sorted(row.statuses.items()))
        print(f"{cls:24s} {row.count:6d} {row.server_errors:4d} {row.resets:5d} {row.timeouts:4d} "
              f"{row.mismatches:5d} {row.max_latency:7.2f}  {codes}  ({row.slowest})")
    total = ClassStats()
    for row in stats.values():
        total.count += row.count
        total.server_errors += row.server_errors
        total.resets += row.resets
        total.timeouts += row.timeouts
        total.mismatches += row.mismatches
        total.max_latency = max(total.max_latency, row.max_latency)
    print(f"{'all':24s} {total.count:6d} {total.server_errors:4d} {total.resets:5d} {total.timeouts:4d} "
          f"{total.mismatches:5d} {total.max_latency:7.2f}")


def findings_markdown(http: dict[str, ClassStats], rpc: dict[str, ClassStats], after: list[str]) -> str:
    lines = ["# Fuzz findings (bench/fuzz.py)", "",
             "Answers other than the contract asks for; per class up to 6 examples "
             "(case name: status: what was wrong).", ""]
    for title, table in (("OTLP/HTTP", http), ("gRPC", rpc)):
        lines.append(f"## {title}")
        for cls, row in table.items():
            if not row.examples:
                continue
            lines.append(f"- **{cls}**: {row.mismatches} of {row.count} off")
            for sent in row.examples:
                lines.append(f"  - `{sent.case.name}` -> {sent.status}: {'; '.join(sent.verdict.problems)[:300]}")
        lines.append("")
    lines += ["## After the corpus", *[f"- {line}" for line in after], ""]
    lines += ["## Cases the contract leaves open (outcome any/ok): how they were answered", ""]
    for title, table in (("OTLP/HTTP", http), ("gRPC", rpc)):
        for cls, row in table.items():
            if row.open_answers:
                answers = ", ".join(f"{key} x{n}" for key, n in sorted(row.open_answers.items()))
                lines.append(f"- {title} {cls}: {answers[:1500]}")
    lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=8)
    parser.add_argument("--per-class", type=int, default=0, help="evenly spaced cases per class (0: all)")
    parser.add_argument("--grpc-per-class", type=int, default=-1, help="gRPC cases per class (-1: as --per-class)")
    parser.add_argument("--timeout", type=float, default=30.0, help="per-request timeout, seconds")
    parser.add_argument("--max-body-bytes", type=int, default=Limits().max_body_bytes)
    parser.add_argument("--max-backlog-spans", type=int, default=Limits().max_backlog_spans)
    parser.add_argument("--retention-days", type=int, default=Limits().retention_days)
    parser.add_argument("--findings", type=Path, help="write the off answers here as Markdown")
    args = parser.parse_args()

    limits = Limits(max_body_bytes=args.max_body_bytes, max_backlog_spans=args.max_backlog_spans,
                    retention_days=args.retention_days)
    corpus = FuzzCorpus(seed=args.seed, limits=limits)
    grpc_per_class = args.per_class if args.grpc_per_class < 0 else args.grpc_per_class
    http_total = sum(c if not args.per_class or c <= max(args.per_class, 60) else args.per_class
                     for c in corpus.class_counts("http").values())
    grpc_total = sum(c if not grpc_per_class or c <= max(grpc_per_class, 60) else grpc_per_class
                     for c in corpus.class_counts("grpc").values())
    print(f"machine: {machine()}; load average {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    print(f"corpus: seed {args.seed}, {http_total} OTLP/HTTP + {grpc_total} gRPC cases; limits {limits}")

    work = Path(tempfile.mkdtemp(prefix="flightrec-fuzz-"))
    server = MonitoredServer(work / "server", env=limits.env())
    try:
        server.start()
    except RuntimeError:
        server.stop()
        log = (work / "server" / "server.log")
        raise RuntimeError(f"server did not start: {log.read_text()[-2000:] if log.exists() else ''}") from None
    after: list[str] = []
    try:
        started = time.perf_counter()
        with httpx.Client(base_url=server.url) as client:
            cases = corpus.sample(args.per_class) if args.per_class else corpus.http_cases()
            http_stats = run(cases, lambda case: post_case(client, case, args.timeout), "OTLP/HTTP", http_total)
        http_s = time.perf_counter() - started
        with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}", options=[
                ("grpc.max_send_message_length", 2**31 - 1)]) as channel:
            cases = corpus.sample(grpc_per_class, "grpc") if grpc_per_class else corpus.grpc_cases()
            grpc_stats = run(cases, lambda case: call_grpc(channel, case, args.timeout), "gRPC", grpc_total)
        corpus_s = time.perf_counter() - started
        expected_stored = sum(row.stored for table in (http_stats, grpc_stats) for row in table.values())
        reject_ids = [i for table in (http_stats, grpc_stats) for row in table.values() for i in row.reject_ids]
        print_table(f"OTLP/HTTP ({http_s:.0f} s)", http_stats)
        print_table(f"gRPC ({corpus_s - http_s:.0f} s)", grpc_stats)

        still_alive = server.proc.poll() is None and alive(server.url)
        after.append(f"server process alive and answering: {still_alive} (peak RSS {server.peak_rss / 2**20:.0f} MiB)")
        body, trace_id, probe_spans = valid_probe()
        t0 = time.perf_counter()
        queryable_s = None
        with httpx.Client(base_url=server.url, timeout=10) as api:
            answer = post_until_accepted(api, body, 60)
            after.append(f"valid span after the corpus: HTTP {answer.status_code} after {time.perf_counter() - t0:.2f} s")
            deadline = t0 + 60
            while time.perf_counter() < deadline:
                if api.get(f"/api/traces/{trace_id}").status_code == 200:
                    queryable_s = time.perf_counter() - t0
                    break
                time.sleep(0.05)
            drained, health = False, api.get("/api/health")
            drain_deadline = time.perf_counter() + 60
            while time.perf_counter() < drain_deadline:
                health = api.get("/api/health")
                if health.headers.get("content-type", "").startswith("application/json") and \
                        health.json().get("backlog_spans") == 0:
                    drained = True
                    break
                time.sleep(0.1)
            after.append(f"/api/health: {health.status_code} {health.text[:400]}")
            stored = api.get("/api/stats").json()["spans"]
            after.append(f"stored spans {stored}, acknowledged (from the answers) {expected_stored + probe_spans}"
                         f"{'' if drained else ' (backlog NOT drained within 60 s)'}: "
                         f"{'equal' if stored == expected_stored + probe_spans else 'DIFFERENT'}")
            found = [i for i in reject_ids if api.get(f"/api/traces/{i}").status_code == 200]
            after.append(f"refused bodies whose trace is stored: {len(found)} of {len(reject_ids)} checked"
                         + (f" ({', '.join(found[:5])})" if found else ""))
        if queryable_s is None:
            after.append("after the corpus, a valid span queryable: NOT within 60 s")
        else:
            after.append(f"after the corpus, a valid span queryable in {queryable_s:.2f} s "
                         f"(target {QUERYABLE_TARGET_S:.0f} s: {'met' if queryable_s <= QUERYABLE_TARGET_S else 'NOT met'})")
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)

    tables = {**{f"http/{k}": v for k, v in http_stats.items()}, **{f"grpc/{k}": v for k, v in grpc_stats.items()}}
    crashes = 0 if still_alive else 1
    five = sum(row.server_errors for row in tables.values())
    resets = sum(row.resets for row in tables.values())
    hangs = sum(row.timeouts for row in tables.values())
    off = sum(row.mismatches for row in tables.values())
    print()
    for line in after:
        print(line)
    print(f"\ntargets: crashes {crashes} (0), 5xx {five} (0), connection resets {resets} (0), hangs {hangs} (0), "
          f"valid span queryable {'-' if queryable_s is None else f'{queryable_s:.2f} s'} (<= 5 s); "
          f"answers off the contract: {off}; corpus sent in {corpus_s:.0f} s")
    if args.findings:
        args.findings.write_text(findings_markdown(http_stats, grpc_stats, after))
        print(f"findings written to {args.findings}")


if __name__ == "__main__":
    main()
