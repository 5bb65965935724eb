"""float32 against float64 training for the same wall-clock budget (Si8, GPAW, issue 13).

float32 networks train about twice as many grid points per second (docs/benchmarks.md section
10); this asks whether that buys a lower error when the training time, not the step count, is
fixed. For each precision and seed: `dp-charge input --minutes M --precision P --seed S` (which
times a short run on this machine and sizes the step count for M minutes), `dp train`, `dp
freeze`, then `dp-charge test` on the example's unseen structures (rattled_b, perfect, rattled_c).
Runs one after another with all cores, so each gets the machine to itself.

    python benchmarks/precision_budget.py [--minutes 4] [--seeds 1 2] [--workdir /tmp/precision_budget]

Prints a markdown table: precision, seed, steps, training minutes, MAE and NMAE per structure.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import sh  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DFT = ROOT / "examples" / "silicon" / "dft"
TESTS = ("rattled_b", "perfect", "rattled_c")


def run(work: Path, precision: str, seed: int, minutes: float, data: Path) -> dict:
    work.mkdir(parents=True, exist_ok=True)
    sh(
        [
            "dp-charge",
            "input",
            data,
            "-o",
            "input.json",
            "--minutes",
            minutes,
            "--precision",
            precision,
            "--seed",
            seed,
        ],
        cwd=work,
    )
    steps = json.loads((work / "input.json").read_text())["training"]["numb_steps"]
    start = time.perf_counter()
    log = sh(["dp", "--tf", "train", "input.json"], cwd=work, both=True, label=f"{precision} seed {seed}")
    train_min = (time.perf_counter() - start) / 60
    wall = re.findall(r"wall time: ([0-9.]+) s", log)  # DeePMD-kit's own training wall time, if printed
    sh(["dp", "--tf", "freeze", "-o", "model.pb"], cwd=work)
    sh(
        ["dp-charge", "test", "model.pb", *(DFT / t / "CHGCAR.gz" for t in TESTS), "--json", "metrics.json", "--quiet"],
        cwd=work,
    )
    metrics = json.loads((work / "metrics.json").read_text())["inputs"]
    return {
        "precision": precision,
        "seed": seed,
        "steps": steps,
        "minutes": train_min,
        "dp_wall_s": float(wall[-1]) if wall else None,
        "tests": [(t, m["mae"], m["nmae"]) for t, m in zip(TESTS, metrics)],
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=4.0)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/precision_budget"))
    args = parser.parse_args()
    data = args.workdir / "data"
    if not data.exists():
        sh(["dp-charge", "convert", DFT / "rattled_a" / "CHGCAR.gz", "-o", data, "--seed", "1", "--overwrite"])
    rows = []
    for seed in args.seeds:
        for precision in ("float64", "float32"):  # interleaved: a slow spell of the machine hits both
            rows.append(run(args.workdir / f"{precision}_s{seed}", precision, seed, args.minutes, data))
            print(json.dumps(rows[-1]), flush=True)
    print(f"\nbudget {args.minutes:g} minutes per run (dp-charge input --minutes), Si8 GPAW, trained on rattled_a\n")
    print("| precision | seed | steps | training minutes | " + " | ".join(f"{t}: MAE / NMAE" for t in TESTS) + " |")
    print("|---" * (4 + len(TESTS)) + "|")
    for r in rows:
        cells = " | ".join(f"{mae:.2e} / {nmae:.3%}" for _, mae, nmae in r["tests"])
        print(f"| {r['precision']} | {r['seed']} | {r['steps']:,} | {r['minutes']:.1f} | {cells} |")


if __name__ == "__main__":
    main()
