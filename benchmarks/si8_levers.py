"""Which choices matter for a short one-structure training run (Si8, GPAW or QE densities).

Each variant is the acceptance run of si8_one_structure.py (train on ONE rattled structure, 3000
steps, test on unseen ones) with one change; variants run in parallel jobs of one thread each.

    python benchmarks/si8_levers.py [--jobs 2] [--workdir /tmp/si8levers] [--qe /tmp/qe_si8] [--only TEXT]

--only runs just the variants whose name contains TEXT (e.g. --only "README input").

A variant may pass extra `dp-charge convert` arguments (e.g. --points-per-frame 50). Sampling
"error" trains twice: model 1 on uniform points, then model 2 from scratch on points drawn where
model 1 errs (error_weighted_data); both are printed, model 2's time is that of both trainings.

Prints a markdown table: variant, NMAE and electron error on each test structure, training time.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import sh  # noqa: E402
from si8_one_structure import ROOT, USER_INPUT  # noqa: E402


def variant(
    name,
    radial=None,
    loss=None,
    lr=1e-3,
    sampling="uniform",
    descriptor=None,
    basis=0,
    rcut=6.0,
    fitting=None,
    training=None,
    convert=(),
):
    """One row. The defaults are those of the first lever runs: DeePMD-kit's rcut 6, lr 1e-3, no basis."""
    inp = copy.deepcopy(USER_INPUT)
    inp["learning_rate"]["start_lr"] = lr
    inp["model"]["descriptor"]["rcut"] = rcut
    inp["model"]["fitting_net"]["radial_basis"] = basis
    inp["training"]["seed"] = 1
    inp["model"]["descriptor"]["seed"] = 1
    inp["model"]["fitting_net"]["seed"] = 1
    if radial is not None:
        inp["model"]["fitting_net"]["radial_neuron"] = radial
    if loss is not None:
        inp["loss"] = {"type": "charge", "loss_func": loss}
    if descriptor:
        inp["model"]["descriptor"].update(descriptor)
    if fitting:
        inp["model"]["fitting_net"].update(fitting)
    if training:
        inp["training"]["training_data"].update(training)
    return name, inp, sampling, tuple(convert)


def readme(name, **kw):
    """A row that starts from the README's input.json (rcut 5, start_lr 5e-3, fitting defaults)."""
    kw.setdefault("basis", 16)
    return variant(f"README input{name}", rcut=5.0, lr=kw.pop("lr", 5e-3), **kw)


VARIANTS = [
    variant("paper-like: no radial sums, MSE loss, lr 1e-3", radial=[], loss="mse"),
    variant("+ radial sums (radial_neuron [16, 32]), MSE, lr 1e-3", loss="mse"),
    variant("defaults (radial sums, MAE loss), lr 1e-3"),
    variant("defaults, lr 3e-3", lr=3e-3),
    variant("defaults, lr 1e-2", lr=1e-2),
    variant("defaults, lr 2e-2", lr=2e-2),
    variant("defaults, lr 1e-2, weighted sampling", lr=1e-2, sampling="weighted"),
    variant("defaults, lr 1e-2, rcut 5 (all neighbours fit in sel 40)", lr=1e-2, descriptor={"rcut": 5.0}),
    variant("defaults, lr 5e-3, rcut 5", lr=5e-3, descriptor={"rcut": 5.0}),
    # second round: the README input (rcut 5, lr 5e-3) and the radial basis superposition
    readme(" without radial_basis (the defaults before it)", basis=0),
    readme(" (defaults: radial_basis 16 + radial_neuron [16, 32])"),
    readme(", radial_basis 16 without radial_neuron", fitting={"radial_neuron": []}),
    readme(", radial_basis 32", basis=32),
    readme(", start_lr 1e-3 (DeePMD-kit's default)", lr=1e-3),
    readme(", descriptor 25-50-100 / axis 16", descriptor={"neuron": [25, 50, 100], "axis_neuron": 16}),
    readme(", float32 descriptor and fitting", descriptor={"precision": "float32"}, fitting={"precision": "float32"}),
    readme(", batch_size 4 (4 x 200 points a step)", training={"batch_size": 4}),
    # third round: levers of issue #5 not measured before (--only "README input +")
    # (800 points per frame, convert=["--points-per-frame", "800"], was stopped: too slow to finish here)
    readme(" + 50 points per frame (2000 frames)", convert=["--points-per-frame", "50"]),
    readme(" + error-weighted points (1e5 of 110,592)", sampling="error"),
    readme(" + Huber loss (huber_delta 0.01)", loss="huber"),
    readme(" + relative loss (error / (abs(rho) + 0.01))", loss="relative"),
    readme(" + MSE loss", loss="mse"),
    readme(" + rcut_smth 2.0", descriptor={"rcut_smth": 2.0}),
    readme(" + rcut_smth 4.0", descriptor={"rcut_smth": 4.0}),
]


def error_weighted_data(model: Path, train: Path, out: Path, points: int, threads: int, seed: int = 1) -> None:
    """`points` training points of `train`, drawn with probability ~ |error of model| + its mean.

    The error is that of `model` on every usable grid point (as `dp-charge convert` skips points
    near nuclei); the frames are written as `dp-charge convert` writes them (200 points a frame).
    """
    import dpdata
    import numpy as np

    from deepmd_charge import DeepCharge
    from deepmd_charge.convert import frames_from_volumetric, register_density, usable_grid, write_system
    from deepmd_charge.io.chgcar import read_chgcar

    vol = read_chgcar(train)
    all_points, usable = usable_grid(vol)
    err = np.abs(DeepCharge(str(model), threads=threads).predict(vol.atoms, grid=vol.shape) - vol.total).ravel()[usable]
    w = err + err.mean()
    chosen = np.random.default_rng(seed).choice(usable, size=points, replace=False, p=w / w.sum())
    register_density()
    # given exactly the chosen points as its usable grid, frames_from_volumetric takes all of them
    data = frames_from_volumetric(vol, frames=points // 200, grid=(all_points, chosen), seed=seed)
    write_system([dpdata.System(data=data)], out, set_size=points // 200)


def run(name, inp, sampling, convert, train, tests, work: Path, threads: int):
    work.mkdir(parents=True, exist_ok=True)
    env = dict(
        os.environ,
        OMP_NUM_THREADS=str(threads),
        DP_INTRA_OP_PARALLELISM_THREADS=str(threads),
        DP_INTER_OP_PARALLELISM_THREADS="1",
        TF_CPP_MIN_LOG_LEVEL="2",
    )

    def run_in(cmd, cwd=work):
        return sh(cmd, cwd, env=env, label=name)

    def train_and_test(folder: Path):
        (folder / "input.json").write_text(json.dumps(inp, indent=2))
        t = time.perf_counter()
        run_in(["dp", "--tf", "train", "input.json"], folder)
        seconds = time.perf_counter() - t
        run_in(["dp", "--tf", "freeze", "-o", "model.pb"], folder)
        run_in(
            [
                "dp-charge",
                "test",
                "model.pb",
                *map(str, tests),
                "--json",
                "metrics.json",
                "--quiet",
                "--threads",
                str(threads),
            ],
            folder,
        )
        return json.loads((folder / "metrics.json").read_text()), seconds

    if sampling != "error":
        run_in(
            [
                "dp-charge",
                "convert",
                str(train),
                "-o",
                "data",
                "--overwrite",
                "--seed",
                "1",
                "--sampling",
                sampling,
                *convert,
            ]
        )
        return [(name, *train_and_test(work))]
    # error-weighted: model 1 on uniform points, model 2 from scratch on points where model 1 errs
    first = work / "model1"
    first.mkdir(exist_ok=True)
    run_in(["dp-charge", "convert", str(train), "-o", "data", "--overwrite", "--seed", "1", *convert], first)
    m1, s1 = train_and_test(first)
    points = int(convert[convert.index("--points") + 1]) if "--points" in convert else 100_000
    error_weighted_data(first / "model.pb", train, work / "data", points, threads)
    m2, s2 = train_and_test(work)
    return [(f"{name}: model 1, uniform points", m1, s1), (f"{name}: model 2 (time: both trainings)", m2, s1 + s2)]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/si8levers"))
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--qe", type=Path, default=None, help="also run on QE data (make_data_qe.py output)")
    parser.add_argument("--only", default=None, help="run only the variants whose name contains this text")
    args = parser.parse_args()
    variants = [v for v in VARIANTS if args.only is None or args.only in v[0]]
    dft = ROOT / "examples" / "silicon" / "dft"
    sets = [
        (
            "GPAW",
            dft / "rattled_a" / "CHGCAR.gz",
            [dft / n / "CHGCAR.gz" for n in ("rattled_b", "perfect", "rattled_c")],
        )
    ]
    if args.qe:
        sets.append(
            (
                "QE",
                args.qe / "rattled_1" / "CHGCAR.gz",
                [args.qe / n / "CHGCAR.gz" for n in ("rattled_2", "rattled_3", "perfect")],
            )
        )
    jobs = [(code, v, train, tests) for code, train, tests in sets for v in variants]
    threads = max(1, (os.cpu_count() or 2) // args.jobs)
    with ThreadPoolExecutor(args.jobs) as pool:
        futures = [
            pool.submit(run, *v, train, tests, args.workdir / f"{code}_{i}", threads)
            for i, (code, v, train, tests) in enumerate(jobs)
        ]
        results = [(jobs[i][0], *r) for i, f in enumerate(futures) for r in f.result()]
    for code, _, tests in sets:
        names = [Path(t).parent.name for t in tests]
        print(
            f"\n{code} densities, trained on {Path(sets[0][1]).parent.name if code == 'GPAW' else 'rattled_1'} (3000 "
            f"steps, {threads} thread(s) per job)\n"
        )
        print(
            "| variant | " + " | ".join(f"NMAE {n}" for n in names) + " | electrons " + names[0] + " | training (s) |"
        )
        print("|---|" + "---|" * len(names) + "---|---|")
        for c, name, m, sec in results:
            if c != code:
                continue
            first = m["inputs"][0]
            rel = (first["electrons_pred"] - first["electrons_ref"]) / first["electrons_ref"]
            cells = " | ".join(f"{100 * i['nmae']:.2f}%" for i in m["inputs"])
            print(f"| {name} | {cells} | {100 * rel:+.3f}% | {sec:.0f} |")


if __name__ == "__main__":
    main()
