"""Spin density: models of the total density and of the magnetisation of bcc Fe (GPAW data).

    python examples/iron/make_data.py          # the DFT data (GPAW, spin-polarised), once
    python benchmarks/spin_fe.py [--steps 3000] [--workdir /tmp/spin_fe]

Trains one model on the total block and one on the magnetisation block of ONE rattled 16-atom
cell (dp-charge convert --channel total|magnetization), then scores both on an unseen rattled cell
and writes its spin-polarised CHGCAR with `dp-charge predict --spin-model`. Prints a markdown table.
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
DFT = ROOT / "examples" / "iron" / "dft"


def model_input(steps):
    return {
        "model": {
            "type_map": ["Fe", "X"],
            "descriptor": {"type": "se_e2_a", "sel": "auto", "rcut": 5.0, "rcut_smth": 0.5, "seed": 1},
            "fitting_net": {"type": "charge", "seed": 1},
        },
        "learning_rate": {"type": "exp", "start_lr": 0.005, "stop_lr": 1e-5, "smooth": True},
        "training": {
            "training_data": {"systems": "data"},
            "numb_steps": steps,
            "disp_freq": 500,
            "save_freq": steps,
            "seed": 1,
        },
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/spin_fe"))
    args = parser.parse_args()
    if not (DFT / "rattled_a" / "CHGCAR.gz").exists():
        sys.exit("run examples/iron/make_data.py first")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    rows = []
    for channel in ("total", "magnetization"):
        work = args.workdir / channel
        work.mkdir(parents=True, exist_ok=True)
        sh(
            [
                "dp-charge",
                "convert",
                str(DFT / "rattled_a" / "CHGCAR.gz"),
                "-o",
                "data",
                "--overwrite",
                "--channel",
                channel,
                "--seed",
                "1",
            ],
            work,
        )
        (work / "input.json").write_text(json.dumps(model_input(args.steps), indent=2))
        t = time.perf_counter()
        sh(["dp", "--tf", "train", "input.json"], work)
        seconds = time.perf_counter() - t
        sh(["dp", "--tf", "freeze", "-o", "model.pb"], work)
        sh(
            [
                "dp-charge",
                "test",
                "model.pb",
                str(DFT / "rattled_b" / "CHGCAR.gz"),
                "--channel",
                channel,
                "--json",
                "m.json",
                "--quiet",
            ],
            work,
        )
        m = json.loads((work / "m.json").read_text())["inputs"][0]
        rows.append((channel, m, seconds))
    out = sh(
        [
            "dp-charge",
            "predict",
            str(args.workdir / "total" / "model.pb"),
            str(DFT / "rattled_b" / "POSCAR"),
            "-o",
            str(args.workdir / "CHGCAR_pred"),
            "--like",
            str(DFT / "rattled_b" / "CHGCAR.gz"),
            "--spin-model",
            str(args.workdir / "magnetization" / "model.pb"),
            "--quiet",
        ],
        args.workdir,
    )
    print("\nbcc Fe, 16 atoms, trained on rattled_a, tested on rattled_b (unseen)\n")
    print("| block | MAE (e/A^3) | RMSE | NMAE | max abs err | R^2 | integral: model vs DFT | training (s) |")
    print("|---|---|---|---|---|---|---|---|")
    for channel, m, sec in rows:
        unit = "e" if channel == "total" else "muB"
        print(
            f"| {channel} | {m['mae']:.2e} | {m['rmse']:.2e} | {100 * m['nmae']:.2f}% | {m['max_abs_err']:.3f} | {m['r2']:.4f} | "
            f"{m['electrons_pred']:.3f} vs {m['electrons_ref']:.3f} {unit} | {sec:.0f} |"
        )
    print("\n`dp-charge predict --spin-model` on rattled_b:\n\n```\n" + out.strip() + "\n```")


if __name__ == "__main__":
    main()
