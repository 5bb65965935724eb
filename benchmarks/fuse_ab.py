"""The kernel's fitting net on and off: DeepCharge.predict in alternating fresh processes.

    python benchmarks/fuse_ab.py MODEL.pb [--grid 100] [--runs 2]

Each run predicts Si64 (rattled 0.1 A) on an N^3 grid in a fresh process (best of 3 calls after
a warm-up call) with DP_CHARGE_FUSE_FIRST_LAYER / DP_CHARGE_FUSE_TAIL set each way: the whole net
in the kernel, the first layer only, and TensorFlow's fitting net. Runs alternate because this
virtual machine's speed drifts by tens of percent within an hour. Used for docs/benchmarks.md
section 3 (FUSE_TAIL per precision, the recommended network size).
"""

import argparse
import os
import subprocess
import sys

MODES = {
    "whole net in the kernel": {"DP_CHARGE_FUSE_FIRST_LAYER": "1", "DP_CHARGE_FUSE_TAIL": "1"},
    "first layer only": {"DP_CHARGE_FUSE_FIRST_LAYER": "1", "DP_CHARGE_FUSE_TAIL": "0"},
    "TensorFlow's fitting net": {"DP_CHARGE_FUSE_FIRST_LAYER": "0"},
}


def one_run(model: str, grid: int) -> float:
    """Points per second of one fresh process (the child branch of this script)."""
    import time

    from ase.build import bulk

    from deepmd_charge import DeepCharge

    atoms = bulk("Si", "diamond", a=5.43, cubic=True).repeat((2, 2, 2))
    atoms.rattle(0.1, seed=2)
    dc = DeepCharge(model, threads=2)
    dc.predict(atoms, grid=(grid,) * 3)
    best = 1e9
    for _ in range(3):
        t = time.perf_counter()
        dc.predict(atoms, grid=(grid,) * 3)
        best = min(best, time.perf_counter() - t)
    return grid**3 / best


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model")
    parser.add_argument("--grid", type=int, default=100)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(one_run(args.model, args.grid))
        return
    rates = {mode: [] for mode in MODES}
    for _ in range(args.runs):
        for mode, env in MODES.items():
            out = subprocess.run(
                [sys.executable, __file__, args.model, "--grid", str(args.grid), "--child"],
                env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **env},
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            rates[mode].append(float(out.split()[-1]))
    print(f"{args.model}, Si64 {args.grid}^3, DeepCharge.predict, best of 3 calls per process")
    print("| fitting net | points/s per run |\n|---|---|")
    for mode, r in rates.items():
        print(f"| {mode} | {' / '.join(f'{v:,.0f}' for v in r)} |")


if __name__ == "__main__":
    main()
