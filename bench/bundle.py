"""Evidence bundles: export of one object with 1,000 spans (target <= 2 s) and verifying it (target <= 1 s).

An embedded store holds the object's spans (10 runs of 100 spans, each run's root naming the
invoice) among ``--noise`` other spans; the sequencer has appended them all, as a running server's
would have. Timed: ``evidence.bundle.build`` (select, checkpoint, proofs, Parquet, story, manifest,
zip: what POST /api/evidence/exports does), ``verify_bundle`` in process, and ``flightrec verify``
as a colleague runs it, plain and with ``--fingerprint FP --json``: a fresh process, interpreter
start and imports included, which is what the <= 1 s target means. Its wall time needs a quiet
machine (on 2 cores at load 10 it triples): the load is printed with each fresh-process figure.

    .venv/bin/python bench/bundle.py --spans 1000 --noise 20000
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import evidence_store, machine  # noqa: E402
from flightrec.collector.rows import RowBuilder  # noqa: E402
from flightrec.evidence import bundle  # noqa: E402
from flightrec.evidence.bundle_models import ExportScope  # noqa: E402
from flightrec.evidence.bundle_verify import verify_bundle  # noqa: E402
from flightrec.evidence.sequencer import Sequencer, SequencerConfig  # noqa: E402
from flightrec.store import SpanBatch  # noqa: E402
from tests.otlp_helpers import BASE_NS, make_request, make_span  # noqa: E402

RUN = 100


def runs(count: int, attrs: dict, agent: str) -> list:
    """``count`` spans as runs of RUN spans: a root with ``attrs``, children with a prompt-sized attribute."""
    requests = []
    for start in range(0, count, RUN):
        trace = os.urandom(16)
        root = make_span("handle invoice", {"gen_ai.agent.name": agent, **attrs}, trace_id=trace, start_ns=BASE_NS + start)
        children = [make_span(f"step-{i}", {"gen_ai.agent.name": agent, "gen_ai.prompt": "x" * 400, "n": i},
                              trace_id=trace, parent=root.span_id, start_ns=BASE_NS + start + i + 1)
                    for i in range(min(RUN, count - start) - 1)]
        requests.append(make_request([root, *children], {"service.name": agent}))
    return requests


def cpu() -> float:
    """CPU seconds of this process (the embedded engine included) and of its finished children."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def timed(call, repeat: int) -> tuple[float, float, object]:  # noqa: ANN001
    """Median wall and CPU seconds of ``repeat`` calls, and the last result."""
    walls, cpus, result = [], [], None
    for _ in range(repeat):
        started, used = time.perf_counter(), cpu()
        result = call()
        walls.append(time.perf_counter() - started)
        cpus.append(cpu() - used)
    return statistics.median(walls), statistics.median(cpus), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spans", type=int, default=1000, help="spans of the exported object")
    parser.add_argument("--noise", type=int, default=20000, help="other spans in the store")
    parser.add_argument("--repeat", type=int, default=5, help="runs of each measurement (the median is shown)")
    args = parser.parse_args()
    print(f"machine: {machine()}  load: {os.getloadavg()[0]:.1f}")
    with evidence_store() as (store, key):
        builder, requests = RowBuilder(), runs(args.spans, {"invoice.id": "INV-1"}, "finance-agent") + runs(
            args.noise, {"invoice.id": "INV-2"}, "other-agent")
        for first in range(0, len(requests), 50):  # 5,000-span inserts, as the writer batches
            batch = SpanBatch()
            for request in requests[first:first + 50]:
                builder.request_rows(request, batch)
            store.insert_batch(batch, uuid.uuid4().hex)
        sequencer = Sequencer(store, key, SequencerConfig(checkpoint_interval_s=0))
        sequencer.checkpoint()
        trusted = key.fingerprint
        scope = ExportScope(object="invoice:INV-1")
        export_s, export_cpu, made = timed(lambda: bundle.build(store, sequencer, key, scope, exported_by="bench",
                                                    max_spans=200_000, max_stories=500), args.repeat)
    verify_s, verify_cpu, verdict = timed(lambda: verify_bundle(made.data), args.repeat)
    assert verdict.ok and verdict.spans_checked == args.spans, verdict.problems
    fresh = {}  # label: (wall, CPU, load at the start)
    with tempfile.TemporaryDirectory() as root:
        path = Path(root) / "bundle.zip"
        path.write_bytes(made.data)
        for label, extra in (("flightrec verify (CLI)", []), ("  --fingerprint --json", ["--fingerprint", trusted, "--json"])):
            load = os.getloadavg()[0]
            wall, used, done = timed(lambda extra=extra: subprocess.run(
                [sys.executable, "-m", "flightrec", "verify", str(path), *extra], capture_output=True), args.repeat)
            assert done.returncode == 0, done.stdout
            fresh[label] = (wall, used, load)
    print(f"bundle: {args.spans:,} spans of one object among {args.noise:,}, {len(made.data):,} bytes, "
          f"{made.manifest.counts.traces} traces, checkpoint of {made.manifest.checkpoint.size:,} leaves")
    print("                         wall      CPU   target (wall)")
    print(f"export (build)          {export_s * 1000:5.0f} ms {export_cpu * 1000:5.0f} ms   <= 2000 ms  "
          f"{'met' if export_s <= 2 else 'MISSED'}")
    print(f"verify (in process)     {verify_s * 1000:5.0f} ms {verify_cpu * 1000:5.0f} ms   <= 1000 ms  "
          f"{'met' if verify_s <= 1 else 'MISSED'}")
    for label, (wall, used, load) in fresh.items():  # a fresh process: interpreter start and imports included
        print(f"{label:22s}  {wall * 1000:5.0f} ms {used * 1000:5.0f} ms   <= 1000 ms  "
              f"{'met' if wall <= 1 else 'MISSED'}  (fresh process, load {load:.1f})")


if __name__ == "__main__":
    main()
