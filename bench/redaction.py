"""Redaction at intake (issue 11, deliverable 7): µs of CPU a span it adds, on vs off.

The fleet's spans (the workload of bench/ingest.py: agents, LLM calls with their messages, tools,
actions, guardrails, people; requests of 512 spans) go through what the pipeline does: the
screen of the request's bytes, the walk when the screen finds a candidate, and the re-encoding
of a request that changed. Off costs nothing (one flag). Three mixes:

- ``fleet``: the spans as the fleet sends them (ids, amounts, dates, no personal data);
- ``fleet+pii``: one span in 20 also carries an e-mail address, a card number and an IBAN in its
  input messages, so every request holds some and is walked;
- ``fleet+pattern``: the fleet with one user pattern (user patterns cannot be screened: every
  request is walked).

Target: <= 5 µs a span for typical spans (the issue's budget for evidence work is a few µs).

    python bench/redaction.py [--spans 50000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest  # noqa: E402

from bench.common import fleet_requests, machine  # noqa: E402
from flightrec.collector.redact import RedactionConfig, Redactor  # noqa: E402

TARGET_US = 5.0
PII = " Reach me at jane.doe@example.com, card 4111 1111 1111 1111, IBAN DE89 3704 0044 0532 0130 00."


def with_pii(bodies: list[bytes], every: int = 20) -> list[bytes]:
    """The requests with personal data added to the input messages of one span in ``every``."""
    out, seen = [], 0
    for body in bodies:
        request = ExportTraceServiceRequest.FromString(body)
        for resource_spans in request.resource_spans:
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    seen += 1
                    if seen % every == 0:
                        span.attributes.add(key="gen_ai.input.messages").value.string_value = PII
        out.append(request.SerializeToString())
    return out


def redaction_us(bodies: list[bytes], redactor: Redactor, rounds: int) -> tuple[float, float, Counter[str]]:
    """Best µs of CPU a span over ``rounds`` for redact + re-encoding what changed, the re-encoding's share, and
    what it replaced."""
    spans = sum(len(s.spans) for b in bodies for r in ExportTraceServiceRequest.FromString(b).resource_spans
                for s in r.scope_spans)
    best, encode, tally = float("inf"), 0.0, Counter()
    for _ in range(rounds):
        requests = [ExportTraceServiceRequest.FromString(body) for body in bodies]  # fresh: redaction mutates
        tally, encoding = Counter(), 0.0
        start = time.process_time()
        for request, body in zip(requests, bodies):
            replaced = redactor.redact(request, body, "traces")
            if replaced:
                encoded = time.process_time()
                request.SerializeToString()
                encoding += time.process_time() - encoded
                tally.update(replaced)
        took = time.process_time() - start
        if took < best:
            best, encode = took, encoding
    return best / spans * 1e6, encode / spans * 1e6, tally


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spans", type=int, default=50_000, help="fleet spans in the workload")
    parser.add_argument("--rounds", type=int, default=5, help="passes over the workload (the best counts)")
    args = parser.parse_args()
    print(f"machine: {machine()}  load: {os.getloadavg()[0]:.1f}")
    fleet = fleet_requests(args.spans)
    size = sum(len(body) for body in fleet) / args.spans
    print(f"workload: {args.spans} fleet spans in {len(fleet)} requests of 512, {size:.0f} bytes a span")
    default = Redactor(RedactionConfig())
    patterned = Redactor(RedactionConfig(patterns={"employee": r"\bEMP-[0-9]{6}\b"}))
    off = Redactor(RedactionConfig(enabled=False))
    mixes = [("off", fleet, off), ("fleet", fleet, default), ("fleet+pii", with_pii(fleet), default),
             ("fleet+pattern", fleet, patterned)]
    for name, bodies, redactor in mixes:
        cost, encoding, tally = redaction_us(bodies, redactor, args.rounds)
        verdict = "OK" if cost <= TARGET_US else "MISSED"
        replaced = ", ".join(f"{rule} {count}" for rule, count in sorted(tally.items())) or "nothing"
        print(f"{name:14s} {cost:6.2f} µs a span, {encoding:5.2f} of it re-encoding  (target <= {TARGET_US} µs)  "
              f"{verdict}   replaced: {replaced}")


if __name__ == "__main__":
    main()
