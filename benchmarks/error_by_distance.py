"""Where a model's error is: MAE by distance of the grid point to its nearest atom.

    python benchmarks/error_by_distance.py MODEL.pb SYSTEM [--label atom_ener] [--frames 100]

SYSTEM is a deepmd/npy folder of ghost-point frames (dp-charge convert's output, or the Deep Charge
paper's own layout with --label atom_ener); its first set is read. For each distance shell it prints
the share of the points, the share of the absolute error, the MAE and the mean density there.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.geometry import get_distances

SHELLS = [(0.0, 0.5), (0.5, 1.0), (1.0, 1.5), (1.5, 2.0), (2.0, np.inf)]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model")
    parser.add_argument("system", type=Path)
    parser.add_argument("--label", default="density")
    parser.add_argument("--frames", type=int, default=100)
    args = parser.parse_args()
    from deepmd_charge import DeepCharge

    names = (args.system / "type_map.raw").read_text().split()
    types = np.loadtxt(args.system / "type.raw", dtype=int)
    ghost = types == len(names) - 1
    symbols = [names[t] for t in types[~ghost]]
    first = sorted(args.system.glob("set.*"))[0]
    coord = np.load(first / "coord.npy").reshape(-1, len(types), 3)[: args.frames]
    box = np.load(first / "box.npy").reshape(-1, 3, 3)
    label = np.load(first / f"{args.label}.npy").reshape(-1, len(types))
    err, dist, rho = [], [], []
    with DeepCharge(args.model) as dc:
        for f, xyz in enumerate(coord):
            atoms = Atoms(symbols, positions=xyz[~ghost], cell=box[f], pbc=True)
            pts = xyz[ghost]
            err.append(dc.predict_points(atoms, pts) - label[f, ghost])
            dist.append(get_distances(pts, xyz[~ghost], cell=atoms.cell, pbc=True)[1].min(axis=1))
            rho.append(label[f, ghost])
    err, dist, rho = (np.abs(np.concatenate(err)), np.concatenate(dist), np.concatenate(rho))
    print(f"{args.model} on {first}: {len(err)} points, MAE {err.mean():.3e} e/A^3")
    print("| nearest atom (A) | points | share of |error| | MAE | mean density |\n|---|---|---|---|---|")
    for lo, hi in SHELLS:
        m = (dist >= lo) & (dist < hi)
        print(
            f"| {lo}-{hi} | {100 * m.mean():.1f}% | {100 * err[m].sum() / err.sum():.1f}% | "
            f"{err[m].mean():.2e} | {rho[m].mean():.3f} |"
        )


if __name__ == "__main__":
    main()
