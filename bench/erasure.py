"""Erasing one data subject at scale: the dry run, the erasure (mutations over spans and logs), verify --store after.

Fleet spans (as received, ``RowBuilder``) are inserted into an embedded store and sequenced; the
object touched by the most traces is the subject. The erasure runs in-process through
``evidence.erasure.erase``, as the API calls it (plan, hold check, mutations, audit entry, rows),
and every inclusion proof of the erased spans is compared before and after. Then one erasure by
value (a full scan of every attribute map) is timed, and the store is verified once.

    .venv/bin/python bench/erasure.py --spans 100000
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import evidence_store, insert_fleet, machine  # noqa: E402
from flightrec.evidence import proofs  # noqa: E402
from flightrec.evidence.audit_heads import HeadKeeper  # noqa: E402
from flightrec.evidence.erasure import ErasureOrder, erase  # noqa: E402
from flightrec.evidence.log_verify import verify_store  # noqa: E402
from flightrec.evidence.sequencer import Sequencer, SequencerConfig  # noqa: E402
from flightrec.store import ObjectRef  # noqa: E402


def timed(call):  # noqa: ANN001, ANN201 - any call
    start = time.perf_counter()
    result = call()
    return result, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spans", type=int, default=100_000, help="fleet spans stored")
    args = parser.parse_args()
    print(f"machine: {machine()}  load: {os.getloadavg()[0]:.1f}")
    with evidence_store() as (store, key), tempfile.TemporaryDirectory() as heads:
        store.audit.after_append = HeadKeeper(store.audit, key, Path(heads) / "audit-head.json").record
        insert_fleet(store, args.spans)
        sequencer = Sequencer(store, key, SequencerConfig(checkpoint_interval_s=0))
        sequencer.run_once()
        checkpoint, _ = sequencer.checkpoint(sequence=False)
        subject = max(store.recent_objects(limit=1000), key=lambda obj: (obj.traces, obj.type, obj.id))
        order = ErasureOrder(subject=f"{subject.type}:{subject.id}", reason="bench: GDPR Art. 17")
        print(f"store:               {store.stats().spans:,} spans, {checkpoint.size:,} leaves under a checkpoint; "
              f"subject {order.subject} ({subject.traces} traces)")
        preview, took = timed(lambda: erase(store, order.model_copy(update={"dry_run": True}), "bench"))
        print(f"dry run:             {preview.spans} spans, {preview.logs} logs, {len(preview.keys)} keys "
              f"in {took * 1000:.0f} ms")
        refs = sorted({(span.trace_id, span.span_id) for span in store.object_spans(obj=ObjectRef(type=subject.type,
                                                                                                    id=subject.id))})
        before = {ref: proofs.span_inclusion(store.evidence, *ref, checkpoint.size) for ref in refs}
        done, took = timed(lambda: erase(store, order, "bench"))
        print(f"erasure:             {done.spans} spans, {done.logs} logs erased in {took * 1000:.0f} ms "
              f"(request {done.request_id}, audit entry {done.audit_seq})")
        after = {ref: proofs.span_inclusion(store.evidence, *ref, checkpoint.size) for ref in refs}
        print(f"proofs:              {sum(before[ref] == after[ref] for ref in refs)} of {len(refs)} "
              "inclusion proofs identical after the erasure")
        by_value = ErasureOrder(values=[f"zz-no-such-{os.getpid()}"], reason="bench: a value in no span")
        nothing, took = timed(lambda: erase(store, by_value, "bench"))
        print(f"by value (scan):     {nothing.spans} spans match a value in no span: {took * 1000:.0f} ms for the "
              "full scan of every attribute map")
        verdict, took = timed(lambda: verify_store(store, key.public_raw))
        print(f"verify --store:      {'intact' if verdict.ok else 'BROKEN'} in {took:.1f} s, "
              f"{verdict.erased_total} span copies reported as erased, {verdict.problems_total} problems")


if __name__ == "__main__":
    main()
