"""Crystal, surface, molecule liquid, alloy: one structure in, an unseen structure out (GPAW data).

    python benchmarks/make_materials.py                 # the DFT data, once (5.4 min on one core)
    python benchmarks/materials.py [--steps 8000] [--only si64 water] [--images docs/images]
    python benchmarks/make_materials.py water --water-extra 2   # rattled_c, rattled_d: 6 s each, one core
    python benchmarks/materials.py --only water --train-structures 3
    python benchmarks/materials.py --only almg --type-embedding

For each material of benchmarks/make_materials.py (si64, al_slab, water, almg) this trains one
model on `rattled_a` with the recommended input of docs/templates.md (se_e2_a 25-50-100 / axis 16,
rcut 5, "sel": "auto", charge fitting with its defaults, start_lr 5e-3), scores it on the full grid
of `rattled_b` (never trained on) and on the training structure, and prints a markdown table with
the Deep Charge paper's figure beside ours. With --images it writes a parity plot and a slice map
(DFT | model | error) of rattled_b per material.

--train-structures K trains on K structures instead: rattled_a plus the extra configurations
rattled_c, rattled_d, ... of `make_materials.py --water-extra K-1` (water only so far), each
converted with the same 10^5 points; the test structure stays rattled_b, which is never trained
on, and "MAE on the training structure" stays that of rattled_a. K > 1 trains in
<workdir>/<material>_train<K>, so the one-structure model in <workdir>/<material> is kept.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from _common import override, sh

#: the paper's MAE (e/A^3) for the nearest system it reports
PAPER = {
    "si64": "6.7e-4 (crystalline Si)",
    "al_slab": "6e-4 (Al surface)",
    "water": "< 2.3e-3 (water)",
    "water_fine": "< 2.3e-3 (water)",
    "almg": "8e-4 (Al-Mg alloy)",
    "diamond_fine": "none (nearest: 6.7e-4, crystalline Si)",
    "mgo_fine": "none",
}
#: training structures beyond rattled_a, in the order make_materials.py --water-extra makes them
EXTRA = [f"rattled_{c}" for c in "cdefghijklmnopqrstuvwxyz"]
LABEL = {
    "si64": "Si64 crystal, rattled 0.05 A",
    "al_slab": "Al(111) slab, 16 atoms + vacuum",
    "water": "8 H2O liquid box",
    "water_fine": "8 H2O liquid box, 72^3 grid (0.086 A)",
    "almg": "Al24Mg8 fcc alloy",
    "diamond_fine": "C8 diamond, rattled 0.05 A, 40^3 grid (0.089 A)",
    "mgo_fine": "Mg4O4 rocksalt, rattled 0.05 A, 48^3 grid (0.088 A)",
}


def model_input(type_map, steps, type_embedding=False, lr_staircase=False, start_lr=0.005):
    """The recommended starting point for one DFT structure (docs/templates.md).

    type_embedding: se_e2_a with DeePMD-kit's type embedding (one embedding net for all elements,
    the fitting sees mixed types). The charge fitting's radial basis and radial sums are not built
    with mixed types, so they are set off here (radial_basis 0, radial_neuron []).
    """
    inp = {
        "model": {
            "type_map": type_map,
            "descriptor": {
                "type": "se_e2_a",
                "sel": "auto",
                "rcut": 5.0,
                "rcut_smth": 0.5,
                "neuron": [25, 50, 100],
                "axis_neuron": 16,
                "seed": 1,
            },
            "fitting_net": {"type": "charge", "seed": 1},
        },
        "learning_rate": {"type": "exp", "start_lr": start_lr, "stop_lr": 1e-5, "smooth": True},
        "training": {
            "training_data": {"systems": "data"},
            "numb_steps": steps,
            "disp_freq": max(100, steps // 20),
            "save_freq": steps,
            "seed": 1,
        },
    }
    if lr_staircase:
        # the schedule before issue 17: DeePMD-kit's default decay_steps 5000, one drop at step 5000 of
        # 8000 (decay_rate given explicitly so that the charge fitting leaves the staircase alone)
        del inp["learning_rate"]["smooth"]
        inp["learning_rate"]["decay_steps"] = 5000
        inp["learning_rate"]["decay_rate"] = (1e-5 / start_lr) ** (5000 / steps)
    if type_embedding:
        inp["model"]["type_embedding"] = {"neuron": [8], "seed": 1}
        inp["model"]["fitting_net"].update(radial_basis=0, radial_neuron=[])
    return inp


def prior_and_final(work: Path) -> tuple:
    """(MAE of the radial superposition on the training points, as dp train logged it;
    mean training MAE of the last 3 lcurve.out lines) - nan when unknown; prior inf when switched off."""
    import re

    import numpy as np

    log = (work / "train.log").read_text() if (work / "train.log").exists() else ""
    m = re.search(r"fits the labels to MAE ([0-9.eE+-]+)", log)
    prior = float(m.group(1)) if m else float("inf") if "ideal lattice" in log else float("nan")
    curve = np.loadtxt(work / "lcurve.out", ndmin=2) if (work / "lcurve.out").exists() else np.zeros((0, 4))
    final = float(curve[-3:, 2].mean()) if len(curve) else float("nan")
    return prior, final


def training_files(name: str, data: Path, n_structures: int, first: str = "rattled_a") -> list[Path]:
    """`first` (rattled_a), then rattled_c, rattled_d, ...: never rattled_b, the test structure."""
    return [data / name / s / "CHGCAR.gz" for s in [first, *EXTRA[: n_structures - 1]]]


def run_material(
    name: str,
    data: Path,
    work: Path,
    steps: int,
    images: Path | None,
    reuse: bool = False,
    n_structures: int = 1,
    type_embedding: bool = False,
    lr_staircase: bool = False,
    start_lr: float = 0.005,
    recipe_minutes: float | None = None,
    checkpoints: int = 1,
    settings=(),
    first: str = "rattled_a",
) -> dict:
    from deepmd_charge.io.chgcar import read_chgcar

    trains, test = training_files(name, data, n_structures, first), data / name / "rattled_b" / "CHGCAR.gz"
    train = trains[0]
    work.mkdir(parents=True, exist_ok=True)
    elements = list(dict.fromkeys(read_chgcar(train).atoms.get_chemical_symbols()))
    inp = json.dumps(
        override(model_input(elements + ["X"], steps, type_embedding, lr_staircase, start_lr), settings), indent=2
    )
    done = work / "train_seconds.txt"
    listed = work / "train_files.txt"  # absent in one-structure folders trained before it existed
    files = "\n".join(map(str, trains)) + "\n"
    same_files = listed.read_text() == files if listed.exists() else n_structures == 1
    if recipe_minutes is None and reuse and done.exists() and (work / "input.json").read_text() == inp and same_files:
        seconds = float(done.read_text())  # same input, model already trained: score it again
    else:
        # one set per file; file i is sampled with seed 1 + i, so rattled_a gets the same points as with K = 1
        sh(["dp-charge", "convert", *map(str, trains), "-o", "data", "--overwrite", "--seed", "1"], work)
        if recipe_minutes is None:
            (work / "input.json").write_text(inp)
        else:  # what a user gets: the recommended input, sized for the time budget on this machine
            sh(["dp-charge", "input", "data", "-o", "input.json", "--minutes", str(recipe_minutes)], work)
            written = json.loads((work / "input.json").read_text())
            (work / "input.json").write_text(json.dumps(override(written, settings), indent=2))
        steps = keep_checkpoints(work / "input.json", checkpoints)
        listed.write_text(files)
        t = time.perf_counter()
        (work / "train.log").write_text(sh(["dp", "--tf", "train", "input.json"], work, both=True))
        seconds = time.perf_counter() - t
        sh(["dp", "--tf", "freeze", "-o", "model.pb"], work)
        done.write_text(str(seconds))
    curve = score_checkpoints(work, test, steps, seconds, checkpoints)
    extra = []
    if images:
        images = images.resolve()
        images.mkdir(parents=True, exist_ok=True)
        extra = ["--plot", str(images / f"parity_{name}.png"), "--slice", str(images / f"slice_{name}.png")]
    # the --plot/--slice pictures are of the first input: the unseen structure
    sh(["dp-charge", "test", "model.pb", str(test), str(train), "--json", "metrics.json", "--quiet", *extra], work)
    m = json.loads((work / "metrics.json").read_text())
    prior, final = prior_and_final(work)
    return {
        "name": name,
        "test": m["inputs"][0],
        "train": m["inputs"][1],
        "seconds": seconds,
        "steps": steps,
        "prior": prior,
        "final": final,
        "structures": n_structures,
        "type_embedding": type_embedding,
        "curve": curve,
    }


def keep_checkpoints(path: Path, checkpoints: int) -> int:
    """Make dp train keep `checkpoints` evenly spaced checkpoints; returns numb_steps."""
    inp = json.loads(path.read_text())
    steps = inp["training"]["numb_steps"]
    if checkpoints > 1:
        inp["training"]["save_freq"] = max(1, steps // checkpoints)
        inp["training"]["max_ckpt_keep"] = checkpoints + 1
        path.write_text(json.dumps(inp, indent=2))
    return steps


def score_checkpoints(work: Path, test: Path, steps: int, seconds: float, checkpoints: int) -> list:
    """Freeze and score the intermediate checkpoints on the test structure: a learning curve.

    One run's checkpoints, not separate runs of each length: the learning rate has not yet
    reached stop_lr at the earlier ones, so they are upper bounds of what a run of that length gives.
    """
    rows = []
    every = max(1, steps // checkpoints)
    for k in range(1, checkpoints):
        step = k * every
        (work / "checkpoint").write_text(f'model_checkpoint_path: "model.ckpt-{step}"\n')
        sh(["dp", "--tf", "freeze", "-o", f"model-{step}.pb"], work)
        sh(["dp-charge", "test", f"model-{step}.pb", str(test), "--json", f"metrics-{step}.json", "--quiet"], work)
        m = json.loads((work / f"metrics-{step}.json").read_text())["inputs"][0]
        rows.append({"step": step, "minutes": seconds * step / steps / 60, **m})
    if checkpoints > 1:
        (work / "checkpoint").write_text(f'model_checkpoint_path: "model.ckpt-{steps}"\n')
        sh(["dp", "--tf", "freeze", "-o", "model.pb"], work)
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path("/tmp/materials"), help="output folder of make_materials.py")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/materials_bench"))
    parser.add_argument("--steps", type=int, default=8000)
    parser.add_argument("--only", nargs="+", choices=list(PAPER), default=list(PAPER))
    parser.add_argument("--images", type=Path, default=None, help="write parity_<name>.png and slice_<name>.png here")
    parser.add_argument(
        "--reuse", action="store_true", help="score models already trained in --workdir with the same input"
    )
    parser.add_argument(
        "--train-structures",
        type=int,
        default=1,
        metavar="K",
        help="train on rattled_a plus K-1 extra configurations rattled_c, rattled_d, ... "
        "(make_materials.py --water-extra K-1; default 1)",
    )
    parser.add_argument(
        "--type-embedding",
        action="store_true",
        help="se_e2_a with DeePMD-kit's type embedding (radial basis off); trains in <workdir>/<material>_tebd",
    )
    parser.add_argument(
        "--lr-staircase",
        action="store_true",
        help=(
            "the learning-rate schedule before issue 17 (decay_steps 5000: one drop at step 5000); trains in "
            "<workdir>/<material>..._stair"
        ),
    )
    parser.add_argument(
        "--recipe",
        type=float,
        metavar="MINUTES",
        help="train with what `dp-charge input data --minutes MINUTES` writes (the recommended input, sized for "
        "that time on this machine) instead of docs/templates.md's; trains in <workdir>/<material>..._recipe<MINUTES>",
    )
    parser.add_argument(
        "--checkpoints",
        type=int,
        default=1,
        metavar="N",
        help="also score the run's checkpoints at 1/N, 2/N, ... of its steps on rattled_b (a learning curve)",
    )
    parser.add_argument(
        "--set",
        nargs="+",
        default=[],
        metavar="KEY=VALUE",
        help="change the input after it is written (also --recipe's), e.g. model.descriptor.rcut=6 "
        "'model.descriptor.sel=[64,0]' (VALUE is JSON); trains in <workdir>/<material>..._<KEY=VALUE>",
    )
    parser.add_argument(
        "--train-on",
        default="rattled_a",
        metavar="NAME",
        help="the (first) training structure: rattled_a (default) or ideal (make_materials.py --ideal: an "
        "ideal -> rattled pair, issue 12); other names train in <workdir>/<material>_<NAME>...",
    )
    parser.add_argument(
        "--start-lr",
        type=float,
        default=0.005,
        help="start_lr (default %(default)s; other values train in <workdir>/<material>..._lr<value>)",
    )
    args = parser.parse_args()
    k = args.train_structures
    if not 1 <= k <= 1 + len(EXTRA):
        parser.error(f"--train-structures must be between 1 and {1 + len(EXTRA)}")
    missing = [n for n in args.only if not (args.data / n / "rattled_b" / "CHGCAR.gz").exists()]
    if missing:
        sys.exit(f"{args.data}: no DFT data for {missing}; run benchmarks/make_materials.py --out {args.data}")
    short = [n for n in args.only if not all(f.exists() for f in training_files(n, args.data, k, args.train_on))]
    if short:
        sys.exit(
            f"{args.data}: fewer than {k} training structures ({args.train_on} first) for {short}; run "
            f"benchmarks/make_materials.py --out {args.data} {' '.join(short)} --water-extra {k - 1}"
            f"{' --ideal' if args.train_on == 'ideal' else ''} (extra configurations exist for water only)"
        )
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    tebd = (
        ("" if args.train_on == "rattled_a" else f"_{args.train_on}")
        + ("_tebd" if args.type_embedding else "")
        + ("_stair" if args.lr_staircase else "")
    )
    tebd += "" if args.start_lr == 0.005 else f"_lr{args.start_lr:g}"
    tebd += "" if args.recipe is None else f"_recipe{args.recipe:g}"
    tebd += "".join("_" + "".join(ch if ch.isalnum() or ch in ".-" else "-" for ch in item) for item in args.set)
    rows = [
        run_material(
            n,
            args.data,
            args.workdir / ((n if k == 1 else f"{n}_train{k}") + tebd),
            args.steps,
            args.images,
            args.reuse,
            k,
            args.type_embedding,
            args.lr_staircase,
            args.start_lr,
            args.recipe,
            args.checkpoints,
            args.set,
            args.train_on,
        )
        for n in args.only
    ]
    trained_on = args.train_on if k == 1 else f"{k} structures ({args.train_on}, {', '.join(EXTRA[: k - 1])})"
    print(
        f"\nTrained on {trained_on}, {' / '.join(str(r['steps']) for r in rows)} steps, {os.cpu_count()} cores; "
        "scored on the full grid of rattled_b (unseen)\n"
    )
    print(
        "| system | MAE (e/A^3) | NMAE | R^2 | electrons: model vs DFT | MAE on the training structure | paper's MAE "
        "| training (min) | prior's MAE -> final training MAE |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        t, tr = r["test"], r["train"]
        rel = (t["electrons_pred"] - t["electrons_ref"]) / t["electrons_ref"]
        label = LABEL[r["name"]] + ("" if r["structures"] == 1 else f", trained on {r['structures']} configurations")
        label += ", type embedding (radial basis off)" if r["type_embedding"] else ""
        label += ", lr staircase (decay_steps 5000)" if args.lr_staircase else ""
        label += "" if args.start_lr == 0.005 else f", start_lr {args.start_lr:g}"
        print(
            f"| {label} | {t['mae']:.2e} | {100 * t['nmae']:.2f}% | {t['r2']:.5f} | {t['electrons_pred']:.3f} vs "
            f"{t['electrons_ref']:.3f} ({100 * rel:+.3f}%) | "
            f"{tr['mae']:.2e} | {PAPER[r['name']]} | {r['seconds'] / 60:.1f} | "
            f"{'off (ideal lattice)' if r['prior'] == float('inf') else format(r['prior'], '.2e')} -> {r['final']:.2e} |"
        )

    for r in rows:
        if r["curve"]:
            print(f"\nLearning curve of {r['name']} (checkpoints of the run, scored on rattled_b)\n")
            print("| step | training minutes (about) | MAE (e/A^3) | NMAE | electrons |\n|---|---|---|---|---|")
            for c in r["curve"] + [{"step": r["steps"], "minutes": r["seconds"] / 60, **r["test"]}]:
                rel = (c["electrons_pred"] - c["electrons_ref"]) / c["electrons_ref"]
                print(
                    f"| {c['step']} | {c['minutes']:.1f} | {c['mae']:.2e} | {100 * c['nmae']:.2f}% | {100 * rel:+.3f}% |"
                )


if __name__ == "__main__":
    main()
