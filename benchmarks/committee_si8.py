"""Committee uncertainty on Si8: train N members on one structure, test the committee on others.

Each member differs in what matters (docs/uncertainty.md): its own sample of grid points
(`dp-charge convert --points P --seed 10+i`) and its own descriptor, fitting and training seeds.
The committee is then scored with `dp-charge test m0.pb m1.pb ... CHGCAR...`: per test structure
the committee mean's NMAE, the mean deviation / MAE ratio, the Spearman rank correlation of the
per-point |error| and deviation, and the share of the 1 % worst points among the 5 % most
deviating ones. "calibrated" is dev/MAE times the --dev-scale that `dp-charge test` fits on the
committee's own training structure (sqrt(mean error^2 / mean dev^2) on its whole grid): the
deviation a user gets who calibrated on the one structure they have.

Other data (--data: folders with CHGCAR.gz, e.g. /tmp/qe_si8 or make_materials.py's
/tmp/materials/al_slab) and, for other materials, --recipe (members use `dp-charge input`):

    python benchmarks/committee_si8.py --work /tmp/cm/qe_def --data /tmp/qe_si8
    python benchmarks/committee_si8.py --work /tmp/cm/slab --data /tmp/materials/al_slab --train ideal --recipe --steps 3000

    python benchmarks/committee_si8.py --work /tmp/cm/a_rb0 --radial-basis 0 [--pool /tmp/si8_pool]
    python benchmarks/committee_si8.py --work /tmp/cm/a_def

Training recipe (short, for a shared 2-core machine): se_e2_a 16-32-64 / axis 8, rcut 4 (with
--vary-rcut member i uses 4.0, 5.0, 4.5, 5.5 A: a committee that also differs in its descriptor),
sel [40, 0], fitting "charge" [64, 64, 64], lr 5e-3 -> 1e-5, --steps (1500) steps, 20,000 points
per member. --radial-basis 0 turns the least-squares atomic prior off (the issue 12 comparison);
without it the fitting's defaults are used. Existing models in --work are reused.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from _common import sh

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "examples" / "silicon" / "dft"


RCUTS = [4.0, 5.0, 4.5, 5.5]  # --vary-rcut: member i uses RCUTS[i % 4]


def member_input(seed: int, steps: int, radial_basis, systems="data", rcut: float = 4.0):
    fitting = {"type": "charge", "neuron": [64, 64, 64], "seed": seed}
    if radial_basis is not None:
        fitting["radial_basis"] = radial_basis
    return {
        "model": {
            "type_map": ["Si", "X"],
            "descriptor": {
                "type": "se_e2_a",
                "sel": [40, 0],
                "rcut": rcut,
                "rcut_smth": 0.5,
                "neuron": [16, 32, 64],
                "axis_neuron": 8,
                "seed": seed,
            },
            "fitting_net": fitting,
        },
        "learning_rate": {"type": "exp", "start_lr": 0.005, "stop_lr": 1e-5, "smooth": True},
        "training": {
            "training_data": {"systems": systems},
            "numb_steps": steps,
            "disp_freq": 500,
            "save_freq": steps,
            "seed": seed,
        },
    }


def recipe_input(work: Path, seed: int, steps: int, radial_basis) -> dict:
    """`dp-charge input` for the member's data (any material), with the member's seed."""
    from deepmd_charge.recipe import recommended_input

    config = recommended_input([str(work / "data")], steps=steps, seed=seed)
    config["training"]["training_data"]["systems"] = "data"
    if radial_basis is not None:
        config["model"]["fitting_net"]["radial_basis"] = radial_basis
    return config


def train_member(
    work: Path, chgcars, seed: int, steps: int, radial_basis, points: int, rcut: float = 4.0, recipe: bool = False
) -> tuple:
    """convert (own point sample) -> dp train (own seeds) -> dp freeze; returns (model, seconds)."""
    work.mkdir(parents=True, exist_ok=True)
    model = work / "model.pb"
    if model.exists():
        return model, float((work / "seconds").read_text()) if (work / "seconds").exists() else float("nan")
    t0 = time.perf_counter()
    sh(
        [
            sys.executable,
            "-m",
            "deepmd_charge.cli",
            "convert",
            *chgcars,
            "-o",
            "data",
            "--points",
            points,
            "--seed",
            10 + seed,
        ],
        work,
    )
    config = (
        recipe_input(work, seed, steps, radial_basis) if recipe else member_input(seed, steps, radial_basis, rcut=rcut)
    )
    (work / "input.json").write_text(json.dumps(config, indent=1))
    sh(["dp", "--tf", "train", "input.json"], work)
    sh(["dp", "--tf", "freeze", "-o", "model.pb"], work)
    seconds = time.perf_counter() - t0
    (work / "seconds").write_text(f"{seconds:.1f}")
    return model, seconds


def test_committee(models, chgcars, out_json: Path, cwd: Path) -> dict:
    sh([sys.executable, "-m", "deepmd_charge.cli", "test", *models, *chgcars, "--json", out_json, "--quiet"], cwd)
    return json.loads(out_json.read_text())


def structures(pool, data=SHIPPED):
    """name -> CHGCAR.gz of every structure folder in `data` (the shipped GPAW Si8 by default) and `pool`."""
    found = {p.name: p / "CHGCAR.gz" for p in sorted(Path(data).iterdir()) if (p / "CHGCAR.gz").exists()}
    if pool:
        found.update({p.name: p / "CHGCAR.gz" for p in sorted(Path(pool).iterdir()) if (p / "CHGCAR.gz").exists()})
    return found


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--train", default="perfect", help="training structure (default perfect)")
    parser.add_argument("--members", type=int, default=4)
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--points", type=int, default=20000)
    parser.add_argument("--radial-basis", type=int, default=None)
    parser.add_argument("--vary-rcut", action="store_true", help=f"members also differ in rcut ({RCUTS})")
    parser.add_argument(
        "--recipe",
        action="store_true",
        help="members use the input `dp-charge input` writes for their data (any material; --steps steps) "
        "instead of the short Si8 recipe",
    )
    parser.add_argument("--pool", default=None, help="more test structures (benchmarks/make_si8_pool.py DIR)")
    parser.add_argument(
        "--data",
        type=Path,
        default=SHIPPED,
        help="structure folders with CHGCAR.gz (default: the shipped GPAW Si8; /tmp/qe_si8 for the QE data)",
    )
    parser.add_argument(
        "--slice", type=Path, default=None, help="picture: DFT | committee | error | |error| | deviation of --slice-of"
    )
    parser.add_argument("--slice-of", default="rattled_c", help="test structure of the picture (default rattled_c)")
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    work = args.work.resolve()
    found = structures(args.pool, args.data)
    train = found.pop(args.train)
    models, times = [], []
    for i in range(args.members):
        rcut = RCUTS[i % len(RCUTS)] if args.vary_rcut else 4.0
        model, seconds = train_member(
            work / f"m{i}", [train], i, args.steps, args.radial_basis, args.points, rcut=rcut, recipe=args.recipe
        )
        models.append(model)
        times.append(seconds)
        print(f"member {i}: {seconds:.0f} s (convert + train + freeze)", flush=True)
    names = list(found)
    # calibration: the deviation scale that fits the error on the committee's own training structure
    own = test_committee(models, [train], work / "calibration.json", work)
    dev_scale = own["overall"]["dev_scale_fit"]
    result = test_committee(models, [found[n] for n in names], work / "committee.json", work)
    singles = [
        test_committee([m], [found[n] for n in names], work / f"single{i}.json", work) for i, m in enumerate(models)
    ]
    print(
        f"\ntrain {args.train}, {args.members} members, {args.steps} steps, radial_basis "
        f"{args.radial_basis if args.radial_basis is not None else 'default'}, "
        f"rcut {[RCUTS[i % len(RCUTS)] for i in range(args.members)] if args.vary_rcut else 4.0}"
    )
    o = own["overall"]
    print(
        f"calibration on the training structure {args.train}: MAE {o['mae']:.2e}, mean dev {o['dev_mean']:.2e}, "
        f"dev/MAE {o['dev_err_ratio']:.2f}, --dev-scale {dev_scale:.2f}"
    )
    print(
        f"{'test':12s} {'NMAE mean':>10s} {'NMAE members':>13s} {'MAE':>9s} {'mean dev':>9s} {'dev/MAE':>8s} "
        f"{'calibrated':>10s} {'spearman':>9s} {'worst1%@top5%':>14s}"
    )
    for n, r, *ss in zip(names, result["inputs"], *[s["inputs"] for s in singles]):
        member_nmae = sum(s["nmae"] for s in ss) / len(ss)
        print(
            f"{n:12s} {100 * r['nmae']:9.2f}% {100 * member_nmae:12.2f}% {r['mae']:9.2e} {r['dev_mean']:9.2e} "
            f"{r['dev_err_ratio']:8.2f} {dev_scale * r['dev_err_ratio']:10.2f} {r['spearman']:9.3f} "
            f"{100 * r['worst_in_top_dev']:13.1f}%"
        )
    o = result["overall"]
    print(
        f"{'overall':12s} {100 * o['nmae']:9.2f}% {'':13s} {o['mae']:9.2e} {o['dev_mean']:9.2e} "
        f"{o['dev_err_ratio']:8.2f} {dev_scale * o['dev_err_ratio']:10.2f} {o['spearman']:9.3f} "
        f"{100 * o['worst_in_top_dev']:13.1f}%"
    )
    from deepmd_charge.metrics import rank_correlation

    by_structure = rank_correlation([r["mae"] for r in result["inputs"]], [r["dev_mean"] for r in result["inputs"]])
    print(f"structures: Spearman of mean deviation and MAE over the {len(names)} test structures {by_structure:.3f}")
    if args.slice:
        sh(
            [
                sys.executable,
                "-m",
                "deepmd_charge.cli",
                "test",
                *models,
                found[args.slice_of],
                "--slice",
                args.slice.resolve(),
                "--quiet",
            ],
            work,
        )
        print(f"wrote {args.slice}")


if __name__ == "__main__":
    main()
