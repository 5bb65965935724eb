"""One DFT structure in, a rattled unseen structure out: the pipeline issue's acceptance run.

For each data set (GPAW in examples/silicon/dft, and optionally Quantum ESPRESSO densities made by
examples/silicon/make_data_qe.py) this does what a new user does with a hand-written input.json:

    dp-charge convert TRAIN/CHGCAR.gz -o data --seed 1
    dp train input.json          # se_e2_a sel [40, 0] rcut 5, fitting {"type": "charge"}, no loss,
                                 # 3000 steps, start_lr 0.005 (the README's; --lr to change)
    dp freeze -o model.pb
    dp-charge test model.pb TEST/CHGCAR.gz ... --json metrics.json

and prints NMAE and electron counts per test structure, plus the training wall time.

    python benchmarks/si8_one_structure.py [--qe /tmp/qe_si8] [--fresh /tmp/si8_fresh] [--seeds 1 2 3]

--fresh DIR adds the GPAW structures made by `examples/silicon/make_data.py --fresh DIR` to the
GPAW test set: rattled cells with new seeds that nothing in this project was tuned on.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

USER_INPUT = {
    "model": {
        "type_map": ["Si", "X"],
        "descriptor": {"type": "se_e2_a", "sel": [40, 0], "rcut": 5.0},
        "fitting_net": {"type": "charge"},
    },
    "learning_rate": {"type": "exp", "start_lr": 0.005, "stop_lr": 1e-5},
    "training": {"training_data": {"systems": "data"}, "numb_steps": 3000},
}


def sh(cmd, cwd):
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if proc.returncode:
        sys.exit(f"{' '.join(cmd)} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    return proc.stdout


def run_case(name, train, tests, workdir, steps, input_json, seed=None):
    work = workdir / (name if seed is None else f"{name}_seed{seed}")
    work.mkdir(parents=True, exist_ok=True)
    sh(["dp-charge", "convert", str(train), "-o", "data", "--overwrite", "--seed", "1"], work)
    inp = json.loads(json.dumps(input_json))
    inp["training"]["numb_steps"] = steps
    if seed is not None:
        inp["training"]["seed"] = seed
        inp["model"]["descriptor"]["seed"] = seed
        inp["model"]["fitting_net"]["seed"] = seed
    (work / "input.json").write_text(json.dumps(inp, indent=2))
    start = time.perf_counter()
    sh(["dp", "--tf", "train", "input.json"], work)
    train_s = time.perf_counter() - start
    sh(["dp", "--tf", "freeze", "-o", "model.pb"], work)
    sh(["dp-charge", "test", "model.pb", *map(str, tests), "--json", "metrics.json", "--quiet"], work)
    metrics = json.loads((work / "metrics.json").read_text())
    rows = []
    for item in metrics["inputs"]:
        rel = (item["electrons_pred"] - item["electrons_ref"]) / item["electrons_ref"]
        rows.append((name, Path(item["name"]).parent.name, seed, item["nmae"], item["mae"], rel, train_s))
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--qe", type=Path, default=None, help="folder with QE <name>/CHGCAR.gz (make_data_qe.py)")
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--lr", type=float, default=0.005, help="start_lr (the README's input.json uses 0.005)")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/si8bench"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[None], help="repeat with these training seeds")
    parser.add_argument("--fresh", type=Path, default=None, help="folder with more GPAW test structures (make_data.py --fresh)")
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    dft = ROOT / "examples" / "silicon" / "dft"
    gpaw_tests = [dft / n / "CHGCAR.gz" for n in ("rattled_b", "perfect", "rattled_c")]
    if args.fresh:
        gpaw_tests += sorted(args.fresh.glob("rattled_*/CHGCAR.gz"))
        if len(gpaw_tests) == 3:
            sys.exit(f"{args.fresh}: no rattled_*/CHGCAR.gz (make them with examples/silicon/make_data.py --fresh)")
    cases = [("gpaw", dft / "rattled_a" / "CHGCAR.gz", gpaw_tests)]
    if args.qe:
        cases.append(("qe", args.qe / "rattled_1" / "CHGCAR.gz", [args.qe / n / "CHGCAR.gz" for n in ("rattled_2", "rattled_3", "perfect")]))
    rows = []
    for name, train, tests in cases:
        inp = json.loads(json.dumps(USER_INPUT))
        inp["learning_rate"]["start_lr"] = args.lr
        for seed in args.seeds:
            rows += run_case(name, train, tests, args.workdir, args.steps, inp, seed)
    print("\n| DFT code | test structure | seed | NMAE | MAE (e/A^3) | electrons (pred - DFT)/DFT | training time (s) |")
    print("|---|---|---|---|---|---|---|")
    for code, test, seed, nmae, mae, rel, t in rows:
        print(f"| {code} | {test} | {seed if seed is not None else 'random'} | {100 * nmae:.2f}% | {mae:.2e} | {100 * rel:+.3f}% | {t:.0f} |")


if __name__ == "__main__":
    main()
