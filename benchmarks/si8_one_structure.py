"""One DFT structure in, a rattled unseen structure out: the pipeline issue's acceptance run.

For each data set (GPAW in examples/silicon/dft, and optionally Quantum ESPRESSO densities made by
examples/silicon/make_data_qe.py) this does what a new user does with a hand-written input.json:

    dp-charge convert TRAIN/CHGCAR.gz -o data --seed 1
    dp train input.json          # se_e2_a sel [40, 0] rcut 5, fitting {"type": "charge"}, no loss,
                                 # 3000 steps, start_lr 0.005 -> 1e-5 (smooth exp; --lr to change)
    dp freeze -o model.pb
    dp-charge test model.pb TEST/CHGCAR.gz ... --json metrics.json

and prints NMAE and electron counts per test structure, plus the training wall time.

    python benchmarks/si8_one_structure.py [--qe /tmp/qe_si8] [--fresh /tmp/si8_fresh] [--seeds 1 2 3]
    python benchmarks/si8_one_structure.py --train perfect rattled --variants default basis0 --jobs 2 ...

--fresh DIR adds the GPAW structures made by `examples/silicon/make_data.py --fresh DIR` to the
GPAW test set: rattled cells with new seeds that nothing in this project was tuned on.

--train rattled (default) trains on one rattled cell (GPAW rattled_a, QE rattled_1) and tests on
the other cells; --train perfect trains on the perfect crystal (the first calculation most users
have: few distinct neighbour distances) and tests on every rattled cell. --variants runs each
training with the charge fitting's defaults ("default") and/or with "radial_basis": 0 ("basis0"),
the figure the default must never be worse than (issue 12). --jobs N runs N trainings at a time,
each on cpu_count / N threads.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from _common import sh

ROOT = Path(__file__).resolve().parents[1]

USER_INPUT = {
    "model": {
        "type_map": ["Si", "X"],
        "descriptor": {"type": "se_e2_a", "sel": [40, 0], "rcut": 5.0},
        "fitting_net": {"type": "charge"},
    },
    "learning_rate": {"type": "exp", "start_lr": 0.005, "stop_lr": 1e-5, "smooth": True},
    "training": {"training_data": {"systems": "data"}, "numb_steps": 3000},
}


#: fitting_net options of each --variants name
VARIANTS = {"default": {}, "basis0": {"radial_basis": 0}, "frozen": {"basis_trainable": False}}


def run_case(name, train, tests, workdir, steps, input_json, seed=None, variant="default", threads=None):
    work = workdir / "_".join([name, train.parent.name, variant] + ([] if seed is None else [f"seed{seed}"]))
    work.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    if threads:
        env.update(
            OMP_NUM_THREADS=str(threads),
            DP_INTRA_OP_PARALLELISM_THREADS=str(threads),
            DP_INTER_OP_PARALLELISM_THREADS="1",
        )
    sh(["dp-charge", "convert", str(train), "-o", "data", "--overwrite", "--seed", "1"], work, env)
    inp = json.loads(json.dumps(input_json))
    inp["training"]["numb_steps"] = steps
    inp["model"]["fitting_net"].update(VARIANTS[variant])
    if seed is not None:
        inp["training"]["seed"] = seed
        inp["model"]["descriptor"]["seed"] = seed
        inp["model"]["fitting_net"]["seed"] = seed
    (work / "input.json").write_text(json.dumps(inp, indent=2))
    start = time.perf_counter()
    log = sh(["dp", "--tf", "train", "input.json"], work, env, both=True)
    train_s = time.perf_counter() - start
    (work / "train.log").write_text(log)
    sh(["dp", "--tf", "freeze", "-o", "model.pb"], work, env)
    sh(["dp-charge", "test", "model.pb", *map(str, tests), "--json", "metrics.json", "--quiet"], work, env)
    metrics = json.loads((work / "metrics.json").read_text())
    rows = []
    for item in metrics["inputs"]:
        rel = (item["electrons_pred"] - item["electrons_ref"]) / item["electrons_ref"]
        rows.append(
            (
                name,
                train.parent.name,
                variant,
                Path(item["name"]).parent.name,
                seed,
                item["nmae"],
                item["mae"],
                rel,
                train_s,
            )
        )
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--qe", type=Path, default=None, help="folder with QE <name>/CHGCAR.gz (make_data_qe.py)")
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--lr", type=float, default=0.005, help="start_lr (the README's input.json uses 0.005)")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/si8bench"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[None], help="repeat with these training seeds")
    parser.add_argument(
        "--fresh", type=Path, default=None, help="folder with more GPAW test structures (make_data.py --fresh)"
    )
    parser.add_argument(
        "--train",
        nargs="+",
        choices=["rattled", "perfect"],
        default=["rattled"],
        help="train on a rattled cell (default) and/or on the perfect crystal",
    )
    parser.add_argument(
        "--variants",
        nargs="+",
        choices=list(VARIANTS),
        default=["default"],
        help='default: the fitting\'s defaults; basis0: "radial_basis": 0; frozen: "basis_trainable": false',
    )
    parser.add_argument(
        "--codes",
        nargs="+",
        choices=["gpaw", "qe"],
        default=["gpaw", "qe"],
        help="DFT data sets to run (qe needs --qe)",
    )
    parser.add_argument("--jobs", type=int, default=1, help="trainings at a time (each on cpu_count / jobs threads)")
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    dft = ROOT / "examples" / "silicon" / "dft"
    fresh = []
    if args.fresh:
        fresh = sorted(args.fresh.glob("rattled_*/CHGCAR.gz"))
        if not fresh:
            sys.exit(f"{args.fresh}: no rattled_*/CHGCAR.gz (make them with examples/silicon/make_data.py --fresh)")
    cases = []
    if "rattled" in args.train:
        cases.append(
            (
                "gpaw",
                dft / "rattled_a" / "CHGCAR.gz",
                [dft / n / "CHGCAR.gz" for n in ("rattled_b", "perfect", "rattled_c")] + fresh,
            )
        )
    if "perfect" in args.train:
        cases.append(
            (
                "gpaw",
                dft / "perfect" / "CHGCAR.gz",
                [dft / n / "CHGCAR.gz" for n in ("rattled_a", "rattled_b", "rattled_c")] + fresh,
            )
        )
    if args.qe and "rattled" in args.train:
        cases.append(
            (
                "qe",
                args.qe / "rattled_1" / "CHGCAR.gz",
                [args.qe / n / "CHGCAR.gz" for n in ("rattled_2", "rattled_3", "perfect")],
            )
        )
    if args.qe and "perfect" in args.train:
        cases.append(
            (
                "qe",
                args.qe / "perfect" / "CHGCAR.gz",
                [args.qe / n / "CHGCAR.gz" for n in ("rattled_1", "rattled_2", "rattled_3")],
            )
        )
    cases = [c for c in cases if c[0] in args.codes]
    inp = json.loads(json.dumps(USER_INPUT))
    inp["learning_rate"]["start_lr"] = args.lr
    jobs = [(name, train, tests, v, seed) for name, train, tests in cases for v in args.variants for seed in args.seeds]
    threads = max(1, (os.cpu_count() or 2) // args.jobs) if args.jobs > 1 else None
    with ThreadPoolExecutor(args.jobs) as pool:
        futures = [
            pool.submit(run_case, name, train, tests, args.workdir, args.steps, inp, seed, v, threads)
            for name, train, tests, v, seed in jobs
        ]
        rows = [r for f in futures for r in f.result()]
    print(
        "\n| DFT code | trained on | fitting | test structure | seed | NMAE | MAE (e/A^3) | electrons (pred - "
        "DFT)/DFT | training time (s) |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for code, train, variant, test, seed, nmae, mae, rel, t in rows:
        label = {"default": "defaults", "basis0": "radial_basis 0", "frozen": "basis_trainable false"}[variant]
        print(
            f"| {code} | {train} | {label} | {test} | {seed if seed is not None else 'random'} | {100 * nmae:.2f}% | "
            f"{mae:.2e} | {100 * rel:+.3f}% | {t:.0f} |"
        )


if __name__ == "__main__":
    main()
