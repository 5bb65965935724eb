"""The recommended input.json for a set of training data (`dp-charge input`).

It holds the recipe of docs/templates.md in one place: the type_map from the data (elements, then
the ghost type), sel counted on the data, the descriptor and fitting sizes, and a learning rate that
decays smoothly (DeePMD-kit's exp schedule with "smooth": true) from start_lr to stop_lr exactly at
the last step. DeePMD-kit's stepped default (a drop every 5000 steps, computed for numb_steps) lowers
the rate once in an 8000-step run and never reaches stop_lr.
"""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from deepmd_charge.errors import InputError

RCUT = 5.0
RCUT_SMTH = 0.5
DESCRIPTOR_NEURON = [25, 50, 100]
AXIS_NEURON = 16
START_LR = 5e-3
STOP_LR = 1e-5
STEPS = 8000
SEL_MARGIN = 1.1  # as DeePMD-kit's "auto": room for denser structures than the training ones


def find_systems(paths) -> list[Path]:
    """deepmd/npy system folders (holding type.raw) at or below each path, in order."""
    systems = []
    for p in map(Path, paths):
        if not p.exists():
            raise InputError(p, "no such data folder")
        found = sorted({t.parent for t in p.rglob("type.raw")}) if p.is_dir() else []
        if not found:
            raise InputError(
                p, "holds no deepmd/npy system (no type.raw); make one with `dp-charge convert CHGCAR -o DIR`"
            )
        systems += [s for s in found if s not in systems]
    return systems


def _read_system(path: Path):
    names_file = path / "type_map.raw"
    if not names_file.exists():
        raise InputError(path, "has no type_map.raw: cannot tell its elements (write it, one name a line)")
    names = names_file.read_text().split()
    types = np.loadtxt(path / "type.raw", dtype=int, ndmin=1)
    sets = sorted(path.glob("set.*"))
    if not sets:
        raise InputError(path, "has no set.* folders")
    return names, types, sets


def data_summary(paths, rcut: float = RCUT, frames_per_set: int = 4) -> dict:
    """Elements, ghost name, neighbour counts per element within rcut and data size of the systems."""
    from deepmd_charge.tf.neighbor_stat import _frame_stats

    systems = find_systems(paths)
    ghosts, elements = set(), []
    per_system = []
    for path in systems:
        names, types, sets = _read_system(path)
        ghosts.add(names[-1])
        elements += [n for n in names[:-1] if n not in elements]
        per_system.append((path, names, types, sets))
    if len(ghosts) != 1:
        raise InputError(
            systems[0],
            f"the systems use different ghost types {sorted(ghosts)} (the last type_map entry): convert them with one ghost name",
        )
    ghost = ghosts.pop()
    counts = np.zeros(len(elements), dtype=int)
    points = frames = 0
    for _path, names, types, sets in per_system:
        index = np.array([elements.index(n) if n != ghost else len(elements) for n in names])
        global_types = index[types]
        ghost_mask = global_types == len(elements)
        for s in sets:
            coords = np.load(s / "coord.npy")
            boxes = np.load(s / "box.npy")
            frames += len(coords)
            points += len(coords) * int(ghost_mask.sum())
            for f in np.unique(np.linspace(0, len(coords) - 1, min(frames_per_set, len(coords))).astype(int)):
                c, _ = _frame_stats(
                    coords[f].reshape(-1, 3),
                    boxes[f].reshape(3, 3),
                    global_types,
                    len(elements),
                    len(elements) + 1,
                    rcut,
                )
                counts = np.maximum(counts, c[: len(elements)])
    return {
        "systems": [str(p) for p in systems],
        "elements": elements,
        "ghost": ghost,
        "max_neighbours": counts.tolist(),
        "frames": frames,
        "points": points,
        "points_per_frame": points // max(frames, 1),
    }


def recommended_input(paths, steps: int = STEPS, rcut: float = RCUT, precision: str = "float64", seed: int = 1) -> dict:
    """input.json for `dp train` on the data at `paths` (folders written by dp-charge convert)."""
    if steps <= 0:  # before the data are read
        raise InputError("steps", f"must be positive, got {steps}")
    if not rcut > RCUT_SMTH:
        raise InputError("rcut", f"must be larger than rcut_smth {RCUT_SMTH} A, got {rcut}")
    info = data_summary(paths, rcut)
    sel = [max(4, int(math.ceil(c * SEL_MARGIN / 4) * 4)) for c in info["max_neighbours"]] + [0]
    jdata = {
        "model": {
            "type_map": info["elements"] + [info["ghost"]],
            "descriptor": {
                "type": "se_e2_a",
                "sel": sel,
                "rcut": rcut,
                "rcut_smth": RCUT_SMTH,
                "neuron": DESCRIPTOR_NEURON,
                "axis_neuron": AXIS_NEURON,
                "precision": precision,
                "seed": seed,
            },
            "fitting_net": {"type": "charge", "precision": precision, "seed": seed},
        },
        "learning_rate": {"type": "exp", "start_lr": START_LR, "stop_lr": STOP_LR, "smooth": True},
        "training": {"training_data": {"systems": info["systems"]}, "seed": seed},
    }
    return with_steps(jdata, steps)


def with_steps(jdata: dict, steps: int) -> dict:
    """`jdata` set to train `steps` steps: 20 lcurve lines, one checkpoint at the end (the smooth
    learning rate reaches stop_lr at whatever the last step is)."""
    if steps <= 0:
        raise InputError("steps", f"must be positive, got {steps}")
    jdata["training"].update(numb_steps=steps, disp_freq=max(1, steps // 20), save_freq=steps)
    return jdata


def seconds_per_step(jdata: dict, steps: int = 240) -> float:
    """Training time per step of `jdata` on this machine: a short `dp train` in a scratch folder
    (DeePMD-kit's own average, first display block excluded). 240 steps, not 60: two 60-step
    trials of the same float32 Si8 input gave 19.1 and 15.3 ms per step, 240 steps 15.2, and the
    11,100-step run they sized took 15.7 (benchmarks/precision_budget.py's first run)."""
    trial = json.loads(json.dumps(jdata))
    trial["training"].update(numb_steps=steps, disp_freq=steps // 3, save_freq=0)
    trial["training"]["training_data"]["systems"] = [
        str(Path(s).resolve()) for s in trial["training"]["training_data"]["systems"]
    ]
    with tempfile.TemporaryDirectory(prefix="dp-charge-input-") as work:
        Path(work, "input.json").write_text(json.dumps(trial))
        proc = subprocess.run(
            [sys.executable, "-m", "deepmd", "--tf", "train", "input.json"], cwd=work, capture_output=True, text=True
        )
    found = re.findall(r"average training time: ([0-9.eE+-]+) s/batch", proc.stdout + proc.stderr)
    if proc.returncode or not found:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-5:])
        raise InputError("minutes", f"the timing run of dp train failed:\n{tail}")
    return float(found[-1])
