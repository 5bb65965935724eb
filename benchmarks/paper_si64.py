"""The Deep Charge paper's own silicon data: train on one structure (or all ten), score the validation ones.

Data: ../shared/data/si64-vasp-paper (VASP PBE pseudo densities of 64-atom disordered Si, the
paper authors' npy layout: ghost type "Prob", labels in atom_ener.npy, one structure per set,
500 frames x 200 points each). The val/ structures are never trained on. Each training structure
is linked as a system of its own (train/set.00N/), so that DeePMD-kit mixes them in training and
in its statistics (until 2026-12-02 the ten sets were one system, read set after set).

    python benchmarks/paper_si64.py one  [--minutes 25] [--workdir /tmp/paper_si64]
    python benchmarks/paper_si64.py all  [--minutes 55] [--ship examples/si64-paper]
    python benchmarks/paper_si64.py one  --minutes 60 --batch-size 4 --checkpoints 4   # a learning curve
    python benchmarks/paper_si64.py one  --steps 12000 --frames 5   # 1,000 points: how well it fits points it has seen
    python benchmarks/paper_si64.py one  --steps 6000 --set 'learning_rate={"type": "cosine", "start_lr": 0.005, "stop_lr": 1e-5}'

Steps are chosen from a short timing run so that training takes about --minutes on this machine;
the learning rate decays exponentially from start_lr to 1e-5 over them. Prints a markdown table
(per validation structure: MAE, RMSE, NMAE, max |err|, R^2) with wall time and steps.
--checkpoints N also scores the run's checkpoints at 1/N, 2/N, ... of its steps (one line each,
with the training minutes they took): a learning curve from one run, whose learning rate at the
earlier points has not yet decayed to stop_lr.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np
from _common import override, sh

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "si64-vasp-paper"
PAPER_MAE = {"one": "6.7e-4 (crystalline Si, one structure)", "all": "< 4e-3 (amorphous Si, 7 structures)"}

INPUT = {
    "model": {
        "type_map": ["Si", "Prob"],
        "descriptor": {
            "type": "se_e2_a",
            "sel": [40, 0],
            "rcut": 5.0,
            "rcut_smth": 0.5,
            "neuron": [25, 50, 100],
            "axis_neuron": 16,
            "seed": 1,
        },
        "fitting_net": {"type": "charge", "neuron": [240, 240, 240], "seed": 1},
    },
    "loss": {"type": "charge", "loss_func": "mae", "label": "atom_ener"},
    "learning_rate": {"type": "exp", "start_lr": 0.005, "stop_lr": 1e-5, "smooth": True},
    "training": {
        "training_data": {"systems": "train", "batch_size": 1},
        "numb_steps": 1000,
        "disp_freq": 1000,
        "save_freq": 1000,
        "seed": 1,
    },
}


def link_system(src: Path, sets, dst: Path) -> None:
    """A deepmd/npy system at dst holding only `sets` of src (symlinks, nothing copied)."""
    dst.mkdir(parents=True, exist_ok=True)
    for name in ("type.raw", "type_map.raw"):
        if not (dst / name).exists():
            (dst / name).symlink_to(src / name)
    for s in sets:
        if not (dst / s).exists():
            (dst / s).symlink_to(src / s)


def first_frames(src: Path, set_name: str, n: int, dst: Path) -> None:
    """A deepmd/npy system at dst holding the first n frames of src/set_name (copied)."""
    (dst / set_name).mkdir(parents=True, exist_ok=True)
    for name in ("type.raw", "type_map.raw"):
        shutil.copy(src / name, dst / name)
    for f in (src / set_name).glob("*.npy"):
        np.save(dst / set_name / f.name, np.load(f)[:n])


def train(
    work: Path, steps: int, batch_size: int = 1, checkpoints: int = 1, precision: str = "float64", settings=()
) -> float:
    inp = override(json.loads(json.dumps(INPUT)), settings)
    for part in ("descriptor", "fitting_net"):
        inp["model"][part]["precision"] = precision
    inp["training"]["numb_steps"] = steps
    inp["training"]["disp_freq"] = max(100, steps // 50)
    inp["training"]["save_freq"] = max(1, steps // checkpoints)
    inp["training"]["max_ckpt_keep"] = checkpoints + 1
    inp["training"]["training_data"]["batch_size"] = batch_size
    (work / "input.json").write_text(json.dumps(inp, indent=2))
    for f in work.glob("model.ckpt*"):
        f.unlink()
    start = time.perf_counter()
    log = sh(["dp", "--tf", "train", "input.json"], work, both=True, tail=3000)
    seconds = time.perf_counter() - start
    fit = [line.split("charge fitting: ")[1] for line in log.splitlines() if "radial superposition" in line]
    if fit and steps > 1000:  # not for the timing probes
        print("dp train: " + fit[0], flush=True)
    return seconds


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "which", choices=["one", "all"], help="train on set.001 only, or on all ten training structures"
    )
    parser.add_argument("--minutes", type=float, default=None, help="training budget (default 25 for one, 55 for all)")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/paper_si64"))
    parser.add_argument("--ship", type=Path, default=None, help="copy model.pb, input.json and lcurve.out here")
    parser.add_argument("--batch-size", type=int, default=1, help="frames (of 200 points) per step (default 1)")
    parser.add_argument("--precision", choices=["float64", "float32"], default="float64")
    parser.add_argument(
        "--set",
        nargs="+",
        default=[],
        metavar="KEY=VALUE",
        help="change the input, e.g. model.descriptor.rcut=6 'model.descriptor.sel=[64,0]' (VALUE is JSON)",
    )
    parser.add_argument("--checkpoints", type=int, default=1, help="also score N checkpoints along the run")
    parser.add_argument("--frames", type=int, default=None, help="train on the first N frames of each structure only")
    parser.add_argument(
        "--steps", type=int, default=None, help="train exactly N steps (no timing run, --minutes ignored)"
    )
    args = parser.parse_args()
    if not DATA.is_dir():
        sys.exit(f"{DATA} not found: this benchmark needs ../shared/data next to the checkout")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    minutes = args.minutes or (25 if args.which == "one" else 55)
    work = args.workdir / args.which
    work.mkdir(parents=True, exist_ok=True)
    train_sets = ["set.001"] if args.which == "one" else sorted(p.name for p in (DATA / "train").glob("set.*"))
    # one system per structure: DeePMD-kit reads a system's sets one after another and takes its
    # statistics (the prior's fit) from the first, so ten sets in one system trained structure
    # by structure, with a prior fitted on the first alone; ten systems are mixed in every batch
    for s in train_sets:
        if args.frames:  # the first N frames (of 200 points) only: can the network fit points it has seen?
            first_frames(DATA / "train", s, args.frames, work / "train" / s)
        else:
            link_system(DATA / "train", [s], work / "train" / s)
    val_sets = sorted(p.name for p in (DATA / "val").glob("set.*"))
    for s in val_sets:
        link_system(DATA / "val", [s], work / "val" / s)

    if args.steps:
        steps, overhead = args.steps, 0.0
    else:
        probe = train(work, 200, args.batch_size, 1, args.precision, args.set)  # timing: start-up and statistics too
        probe2 = train(work, 400, args.batch_size, 1, args.precision, args.set)
        per_step = max((probe2 - probe) / 200, 1e-3)
        overhead = probe - 200 * per_step
        steps = int((minutes * 60 - overhead) / per_step) // 100 * 100
        print(
            f"timing: {per_step * 1000:.1f} ms/step, {overhead:.0f} s start-up -> {steps} steps for {minutes} min",
            flush=True,
        )
    seconds = train(work, steps, args.batch_size, args.checkpoints, args.precision, args.set)
    systems = [str(work / "val" / s) for s in val_sets]
    if args.checkpoints > 1:
        print(
            "\n| step | training minutes (about) | MAE on the validation structures (e/A^3) | NMAE |\n|---|---|---|---|"
        )
        every = max(1, steps // args.checkpoints)
        for k in range(1, args.checkpoints):
            step = k * every
            (work / "checkpoint").write_text(f'model_checkpoint_path: "model.ckpt-{step}"\n')
            sh(["dp", "--tf", "freeze", "-o", f"model-{step}.pb"], work)
            sh(
                ["dp-charge", "test", f"model-{step}.pb", *systems, "--json", f"metrics-{step}.json"]
                + ["--label", "atom_ener", "--quiet"],
                work,
            )
            m = json.loads((work / f"metrics-{step}.json").read_text())["overall"]
            minutes_at = (overhead + step * (seconds - overhead) / steps) / 60
            print(f"| {step} | {minutes_at:.1f} | {m['mae']:.2e} | {100 * m['nmae']:.2f}% |", flush=True)
        (work / "checkpoint").write_text(f'model_checkpoint_path: "model.ckpt-{steps}"\n')
    sh(["dp", "--tf", "freeze", "-o", "model.pb"], work)
    sh(
        [
            "dp-charge",
            "test",
            "model.pb",
            *systems,
            "--json",
            "metrics.json",
            "--plot",
            "parity.png",
            "--label",
            "atom_ener",
            "--quiet",
        ],
        work,
    )
    m = json.loads((work / "metrics.json").read_text())
    print(
        f"\nTrained on {len(train_sets)} structure(s) ({', '.join(train_sets)}): {steps} steps of "
        f"{args.batch_size} frame(s), {args.precision}{', ' + ' '.join(args.set) if args.set else ''}, "
        f"{seconds / 60:.1f} min wall on {os.cpu_count()} cores"
        + (f" (OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']})" if "OMP_NUM_THREADS" in os.environ else "")
    )
    lcurve = np.loadtxt(work / "lcurve.out", ndmin=2)
    print(f"training MAE (mean of the last three lcurve.out lines): {lcurve[-3:, 2].mean():.2e} e/A^3")
    print(f"paper's MAE for comparison: {PAPER_MAE[args.which]} e/A^3\n")
    print("| validation structure | points | MAE (e/A^3) | RMSE | NMAE | max abs err | R^2 |")
    print("|---|---|---|---|---|---|---|")
    for item in m["inputs"] + [{"name": "all", **m["overall"]}]:
        name = Path(item["name"]).name
        print(
            f"| {name} | {item['points']} | {item['mae']:.2e} | {item['rmse']:.2e} | {100 * item['nmae']:.2f}% | "
            f"{item['max_abs_err']:.3f} | {item['r2']:.4f} |"
        )
    if args.ship:
        args.ship.mkdir(parents=True, exist_ok=True)
        for name in ("model.pb", "input.json", "lcurve.out", "parity.png"):
            shutil.copy(work / name, args.ship / name)


if __name__ == "__main__":
    main()
