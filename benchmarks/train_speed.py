"""Training throughput: grid points per second of `dp train`, ours against the paper's stock set-up.

    python benchmarks/train_speed.py [--workdir /tmp/train_speed] [--points-per-frame 200 800 2000] [--steps 60]

For each points-per-frame K, converts the shipped Si8 GPAW density (examples/silicon/dft/rattled_a)
into frames of 8 atoms + K ghosts, then times `dp train` (DeePMD-kit's own "average training time
... s/batch", first display block excluded, batch size 1) for:

- ours: the input `dp-charge input` writes for that data (charge fitting with its defaults, the
  environment op fed ghost-centred frames: deepmd_charge/tf/ghost_frame.py);
- ours, every atom a centre: the same input with fitting_net/ghost_centred false (the frame as
  DeePMD-kit reads it: real atoms and ghosts are all centres, brute-force neighbour list);
- stock: the same descriptor and the same fitting widths trained the paper's way, DeePMD-kit's
  energy fitting on `atom_ener` labels (the density at the ghosts, 0 at the atoms) with only the
  atomic-energy term in the loss.

Prints grid points per second (K / seconds per batch) for each, ours over stock, and the cost per
point relative to the first K. The runs of each K follow each other, so machine load affects them alike.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CHGCAR = ROOT / "examples" / "silicon" / "dft" / "rattled_a" / "CHGCAR.gz"


def convert(data: Path, k: int) -> None:
    """The shipped Si8 density as frames of 8 atoms + k ghosts (about 20,000 points) in `data`."""
    frames = str(max(4, 20000 // k))
    cmd = [
        "dp-charge",
        "convert",
        str(CHGCAR),
        "-o",
        str(data),
        "--points-per-frame",
        str(k),
        "--frames",
        frames,
        "--seed",
        "0",
    ]
    subprocess.run([*cmd, "--overwrite"], check=True, capture_output=True)


def stock_input(jdata: dict, data: Path) -> dict:
    """The same model trained as the paper did: energy fitting, atom_ener labels only."""
    stock = json.loads(json.dumps(jdata))
    charge = stock["model"]["fitting_net"]
    widths = charge.get("neuron", [240, 240, 240])
    stock["model"]["fitting_net"] = {
        "type": "ener",
        "neuron": widths,
        "precision": charge.get("precision", "float64"),
        "seed": 1,
    }
    prefs = {f"{w}_pref_{k}": 0.0 for w in ("start", "limit") for k in ("e", "f", "v")}
    stock["loss"] = {"type": "ener", **prefs, "start_pref_ae": 1.0, "limit_pref_ae": 1.0}
    stock["training"]["training_data"]["systems"] = [str(data)]
    return stock


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/train_speed"))
    parser.add_argument("--points-per-frame", type=int, nargs="+", default=[200, 800, 2000])
    parser.add_argument("--steps", type=int, default=60, help="timed steps per run (default 60)")
    parser.add_argument(
        "--paper",
        type=int,
        nargs="+",
        metavar="B",
        help="instead: the Deep Charge paper's own frames (Si64 + 200 points, ../shared/data) at batch sizes B",
    )
    parser.add_argument(
        "--profile", type=int, metavar="K", help="only: op time of one training step of ours at K points per frame"
    )
    args = parser.parse_args()
    from deepmd_charge import recipe

    if args.profile:
        return profile(args.workdir, args.profile)
    if args.paper:
        return paper(args.workdir, args.paper, args.steps)

    rows = []
    for k in args.points_per_frame:
        data = args.workdir / f"data{k}"
        convert(data, k)
        stock_data = args.workdir / f"stock{k}"
        shutil.rmtree(stock_data, ignore_errors=True)
        shutil.copytree(data, stock_data)
        for d in stock_data.glob("set.*"):  # atom_ener = the density; energy = its sum (for the output statistics)
            labels = np.load(d / "density.npy")
            np.save(d / "atom_ener.npy", labels)
            np.save(d / "energy.npy", labels.sum(axis=1))
        ours = recipe.recommended_input([data], steps=args.steps)
        ours["training"]["training_data"]["batch_size"] = 1
        stock = stock_input(ours, stock_data)
        every = json.loads(json.dumps(ours))
        every["model"]["fitting_net"]["ghost_centred"] = False
        t_ours = recipe.seconds_per_step(ours, steps=args.steps)
        t_every = recipe.seconds_per_step(every, steps=args.steps)
        t_stock = recipe.seconds_per_step(stock, steps=args.steps)
        rows.append((k, k / t_ours, k / t_every, k / t_stock))
        print(
            f"K={k}: ours {t_ours:.4f} s/step, every atom a centre {t_every:.4f}, stock {t_stock:.4f}",
            file=sys.stderr,
            flush=True,
        )
    base = rows[0][1:]  # points/s at the first K
    print(
        "\n| points per frame | ours: points/s | ours, every atom a centre | stock (energy fitting, atom_ener) "
        "| ours / stock | cost per point vs the first K: ours / every atom / stock |\n|---|---|---|---|---|---|"
    )
    for k, *rates in rows:
        growth = " / ".join(f"{b / r:.2f}" for b, r in zip(base, rates))
        print(f"| {k} | " + " | ".join(f"{r:,.0f}" for r in rates) + f" | {rates[0] / rates[2]:.2f} | {growth} |")


def paper(workdir: Path, batch_sizes, steps: int) -> None:
    """The paper's frames (64 Si + 200 points, labels atom_ener) with paper_si64.py's input."""
    from paper_si64 import DATA, INPUT, link_system

    from deepmd_charge import recipe

    if not DATA.is_dir():
        sys.exit(f"{DATA} not found: --paper needs ../shared/data next to the checkout")
    data = workdir / "paper"
    link_system(DATA / "train", ["set.001"], data)
    print(
        "\n| frames per step (x 264 atoms: 64 Si + 200 points) | ours: points/s | ours, every atom a centre "
        "| stock (energy fitting, atom_ener) | ours / stock |\n|---|---|---|---|---|"
    )
    for b in batch_sizes:
        ours = json.loads(json.dumps(INPUT))
        ours["training"]["training_data"].update(systems=[str(data.resolve())], batch_size=b)
        every = json.loads(json.dumps(ours))
        every["model"]["fitting_net"]["ghost_centred"] = False
        stock = stock_input(ours, data.resolve())
        rates = [200 * b / recipe.seconds_per_step(j, steps=steps) for j in (ours, every, stock)]
        print(f"| {b} | " + " | ".join(f"{r:,.0f}" for r in rates) + f" | {rates[0] / rates[2]:.2f} |", flush=True)


def profile(workdir: Path, k: int) -> None:
    """DeePMD-kit's own step trace ("profiling": true) of our input at K points per frame, by op type."""
    import collections

    from deepmd_charge import recipe

    data, work = workdir / f"data{k}", workdir / f"profile{k}"
    if not data.is_dir():
        convert(data, k)
    work.mkdir(parents=True, exist_ok=True)
    jdata = recipe.recommended_input([data.resolve()], steps=20)
    jdata["training"]["training_data"]["batch_size"] = 1
    jdata["training"].update(profiling=True, profiling_file="timeline.json", disp_freq=10, save_freq=0)
    (work / "input.json").write_text(json.dumps(jdata))
    subprocess.run(["dp", "--tf", "train", "input.json"], cwd=work, check=True, capture_output=True)
    events = [
        e for e in json.loads((work / "timeline.json").read_text())["traceEvents"] if e.get("ph") == "X" and "args" in e
    ]
    by_op = collections.Counter()
    for e in events:
        by_op[e["args"].get("op", e["name"])] += e["dur"]
    total = sum(by_op.values())
    print(f"one training step, {k} points per frame: {total / 1e3:.0f} ms of op time")
    for op, us in by_op.most_common(8):
        print(f"  {op:20s} {us / 1e3:8.1f} ms {100 * us / total:5.1f}%")


if __name__ == "__main__":
    main()
