"""Why a fresh process predicts slower than a warm one: first-touch memory.

    python benchmarks/first_call.py MODEL.pb [--grids 100 100 98 98] [--threads 2]

Loads the model once, then predicts Si64 on each n^3 grid of --grids in turn (one process), and
prints each call's time, points/s and the minor page faults it caused (getrusage), and, from
timestamps around every Session.run, the Python time before the first batch reached TensorFlow
(grid, near-nucleus and binning work) and the batches' idle gaps per thread. Then times
filling a fresh 333 MB array twice: the first fill pays for pages the process never had (numpy
asks for huge pages, so few faults are counted but the kernel still zeroes every byte), the
second reuses the freed memory. `dp-charge predict` is always a first call, so the gap between
its rate and a warm DeepCharge.predict call is what these faults cost on the machine at hand.
"""

import argparse
import os
import resource
import threading
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def minor_faults() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model")
    parser.add_argument("--grids", type=int, nargs="+", default=[100, 100, 98, 98])
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    import numpy as np
    from ase.build import bulk

    from deepmd_charge import DeepCharge

    atoms = bulk("Si", "diamond", a=5.43, cubic=True).repeat((2, 2, 2))
    dc = DeepCharge(args.model, threads=args.threads)
    run, events = dc.session.run, []

    def timed(*a, **kw):
        t = time.perf_counter()
        out = run(*a, **kw)
        events.append((t, time.perf_counter(), threading.get_ident()))
        return out

    dc.session.run = timed
    print(
        "| call | grid | seconds | points/s | minor page faults | s before the first batch | s of gaps per thread |"
        "\n|---|---|---|---|---|---|---|"
    )
    for k, n in enumerate(args.grids):
        events.clear()
        f0, t = minor_faults(), time.perf_counter()
        dc.predict(atoms, grid=(n, n, n))
        dt, faults = time.perf_counter() - t, minor_faults() - f0
        by_thread = {}
        for e in sorted(events):
            by_thread.setdefault(e[2], []).append(e)
        gaps = " / ".join(f"{sum(b[0] - a[1] for a, b in zip(es, es[1:])):.3f}" for es in by_thread.values())
        first = min(e[0] for e in events) - t
        print(f"| {k + 1} | {n}^3 | {dt:.2f} | {n**3 / dt:,.0f} | {faults:,} | {first:.3f} | {gaps} |", flush=True)
    dc.close()
    size = 333 * 2**20
    for k in range(2):
        f0, t = minor_faults(), time.perf_counter()
        a = np.ones(size // 8)
        dt, faults = time.perf_counter() - t, minor_faults() - f0
        print(f"fill 333 MB ({'fresh' if k == 0 else 'reused'}): {1e3 * dt:.0f} ms, {faults:,} minor page faults")
        del a


if __name__ == "__main__":
    main()
