"""Where DeepCharge.predict waits outside TensorFlow: timestamps around every Session.run.

    python benchmarks/first_batch.py MODEL.pb [--grid 100] [--calls 3]

Predicts Si64 (diamond, 2x2x2) on an N^3 grid in one process, `--calls` times after loading, and
prints per call: the wall time, the time before the first batch reached TensorFlow (Python's grid,
near-nucleus and binning work), the time after the last one and the batches' idle gaps per thread
(benchmarks/first_call.py counts each call's page faults). Used for docs/benchmarks.md section 3
(near-nucleus grid points).
"""

import argparse
import os
import threading
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model")
    parser.add_argument("--grid", type=int, default=100)
    parser.add_argument("--calls", type=int, default=3)
    args = parser.parse_args()
    from ase.build import bulk

    from deepmd_charge import DeepCharge

    atoms = bulk("Si", "diamond", a=5.43, cubic=True).repeat((2, 2, 2))
    dc = DeepCharge(args.model, threads=2)
    run, events = dc.session.run, []

    def timed(*a, **k):
        t = time.perf_counter()
        out = run(*a, **k)
        events.append((t, time.perf_counter(), threading.get_ident()))
        return out

    dc.session.run = timed
    for call in range(args.calls):
        events.clear()
        t0 = time.perf_counter()
        dc.predict(atoms, grid=(args.grid,) * 3)
        t1 = time.perf_counter()
        by_thread = {}
        for e in sorted(events):
            by_thread.setdefault(e[2], []).append(e)
        gaps = [sum(b[0] - a[1] for a, b in zip(es, es[1:])) for es in by_thread.values()]
        print(
            f"call {call + 1}: {t1 - t0:.3f} s ({args.grid**3 / (t1 - t0):,.0f} points/s), "
            f"before the first batch {min(e[0] for e in events) - t0:.3f} s, after the last "
            f"{t1 - max(e[1] for e in events):.3f} s, {len(events)} batches, gaps per thread "
            + " / ".join(f"{g:.3f}" for g in gaps)
            + " s"
        )


if __name__ == "__main__":
    main()
