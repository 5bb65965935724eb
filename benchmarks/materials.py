"""Crystal, surface, molecule liquid, alloy: one structure in, an unseen structure out (GPAW data).

    python benchmarks/make_materials.py                 # the DFT data, once (5.4 min on one core)
    python benchmarks/materials.py [--steps 8000] [--only si64 water] [--images docs/images]

For each material of benchmarks/make_materials.py (si64, al_slab, water, almg) this trains one
model on `rattled_a` with the recommended input of docs/templates.md (se_e2_a 25-50-100 / axis 16,
rcut 5, "sel": "auto", charge fitting with its defaults, start_lr 5e-3), scores it on the full grid
of `rattled_b` (never trained on) and on the training structure, and prints a markdown table with
the Deep Charge paper's figure beside ours. With --images it writes a parity plot and a slice map
(DFT | model | error) of rattled_b per material.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

#: the paper's MAE (e/A^3) for the nearest system it reports
PAPER = {
    "si64": "6.7e-4 (crystalline Si)",
    "al_slab": "6e-4 (Al surface)",
    "water": "< 2.3e-3 (water)",
    "almg": "8e-4 (Al-Mg alloy)",
}
LABEL = {"si64": "Si64 crystal, rattled 0.05 A", "al_slab": "Al(111) slab, 16 atoms + vacuum", "water": "8 H2O liquid box", "almg": "Al24Mg8 fcc alloy"}


def model_input(type_map, steps):
    """The recommended starting point for one DFT structure (docs/templates.md)."""
    return {
        "model": {
            "type_map": type_map,
            "descriptor": {"type": "se_e2_a", "sel": "auto", "rcut": 5.0, "rcut_smth": 0.5, "neuron": [25, 50, 100], "axis_neuron": 16, "seed": 1},
            "fitting_net": {"type": "charge", "seed": 1},
        },
        "learning_rate": {"type": "exp", "start_lr": 0.005, "stop_lr": 1e-5},
        "training": {"training_data": {"systems": "data"}, "numb_steps": steps, "disp_freq": max(100, steps // 20), "save_freq": steps, "seed": 1},
    }


def sh(cmd, cwd):
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if proc.returncode:
        sys.exit(f"{' '.join(map(str, cmd))} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    return proc.stdout


def run_material(name: str, data: Path, work: Path, steps: int, images: Path | None, reuse: bool = False) -> dict:
    from deepmd_charge.io.chgcar import read_chgcar

    train, test = data / name / "rattled_a" / "CHGCAR.gz", data / name / "rattled_b" / "CHGCAR.gz"
    work.mkdir(parents=True, exist_ok=True)
    elements = list(dict.fromkeys(read_chgcar(train).atoms.get_chemical_symbols()))
    inp = json.dumps(model_input(elements + ["X"], steps), indent=2)
    done = work / "train_seconds.txt"
    if reuse and done.exists() and (work / "input.json").read_text() == inp:
        seconds = float(done.read_text())  # same input, model already trained: score it again
    else:
        sh(["dp-charge", "convert", str(train), "-o", "data", "--seed", "1"], work)
        (work / "input.json").write_text(inp)
        t = time.perf_counter()
        sh(["dp", "--tf", "train", "input.json"], work)
        seconds = time.perf_counter() - t
        sh(["dp", "--tf", "freeze", "-o", "model.pb"], work)
        done.write_text(str(seconds))
    extra = []
    if images:
        images = images.resolve()
        images.mkdir(parents=True, exist_ok=True)
        extra = ["--plot", str(images / f"parity_{name}.png"), "--slice", str(images / f"slice_{name}.png")]
    # the --plot/--slice pictures are of the first input: the unseen structure
    sh(["dp-charge", "test", "model.pb", str(test), str(train), "--json", "metrics.json", "--quiet", *extra], work)
    m = json.loads((work / "metrics.json").read_text())
    return {"name": name, "test": m["inputs"][0], "train": m["inputs"][1], "seconds": seconds, "steps": steps}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path("/tmp/materials"), help="output folder of make_materials.py")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/materials_bench"))
    parser.add_argument("--steps", type=int, default=8000)
    parser.add_argument("--only", nargs="+", choices=list(PAPER), default=list(PAPER))
    parser.add_argument("--images", type=Path, default=None, help="write parity_<name>.png and slice_<name>.png here")
    parser.add_argument("--reuse", action="store_true", help="score models already trained in --workdir with the same input")
    args = parser.parse_args()
    missing = [n for n in args.only if not (args.data / n / "rattled_b" / "CHGCAR.gz").exists()]
    if missing:
        sys.exit(f"{args.data}: no DFT data for {missing}; run benchmarks/make_materials.py --out {args.data}")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    rows = [run_material(n, args.data, args.workdir / n, args.steps, args.images, args.reuse) for n in args.only]
    print(f"\nTrained on rattled_a, {args.steps} steps each, {os.cpu_count()} cores; scored on the full grid of rattled_b (unseen)\n")
    print("| system | MAE (e/A^3) | NMAE | R^2 | electrons: model vs DFT | MAE on the training structure | paper's MAE | training (min) |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        t, tr = r["test"], r["train"]
        rel = (t["electrons_pred"] - t["electrons_ref"]) / t["electrons_ref"]
        print(f"| {LABEL[r['name']]} | {t['mae']:.2e} | {100 * t['nmae']:.2f}% | {t['r2']:.5f} | {t['electrons_pred']:.3f} vs {t['electrons_ref']:.3f} ({100 * rel:+.3f}%) | "
              f"{tr['mae']:.2e} | {PAPER[r['name']]} | {r['seconds'] / 60:.1f} |")


if __name__ == "__main__":
    main()
