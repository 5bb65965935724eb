"""Where a model's error is: MAE by distance of the grid point to its nearest atom.

    python benchmarks/error_by_distance.py MODEL.pb SYSTEM [--label atom_ener] [--frames 100]
    python benchmarks/error_by_distance.py MODEL.pb CHGCAR

SYSTEM is a deepmd/npy folder of ghost-point frames (dp-charge convert's output, or the Deep Charge
paper's own layout with --label atom_ener); its first set is read. A CHGCAR (or cube) is predicted
on its whole grid instead, and each shell also gets the electrons the model puts there minus the
reference's. For each distance shell it prints the share of the points, the share of the absolute
error, the MAE and the mean density there.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.geometry import get_distances

SHELLS = [(0.0, 0.3), (0.3, 0.6), (0.6, 1.0), (1.0, 1.5), (1.5, 2.0), (2.0, np.inf)]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model")
    parser.add_argument("system", type=Path)
    parser.add_argument("--label", default="density")
    parser.add_argument("--frames", type=int, default=100)
    args = parser.parse_args()
    from deepmd_charge import DeepCharge

    if args.system.is_file():
        return whole_grid(args.model, args.system)

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
    print(f"{args.model} on {first}: {sum(map(len, err))} points")
    table(np.concatenate(err), np.concatenate(dist), np.concatenate(rho))


def whole_grid(model: str, path: Path) -> None:
    from deepmd_charge import DeepCharge
    from deepmd_charge.io.structure import read_volumetric

    ref = read_volumetric(path)
    atoms, rho = ref.atoms, ref.total
    with DeepCharge(model) as dc:
        pred = dc.predict(atoms, grid=rho.shape)
    frac = np.stack(np.meshgrid(*[np.arange(n) / n for n in rho.shape], indexing="ij"), axis=-1).reshape(-1, 3)
    dist = np.full(len(frac), np.inf)
    for pos in atoms.positions:  # one atom at a time: the full distance matrix would not fit
        dist = np.minimum(dist, get_distances(frac @ atoms.cell[:], [pos], cell=atoms.cell, pbc=True)[1][:, 0])
    diff = (pred - rho).reshape(-1)
    per_point = atoms.get_volume() / rho.size  # A^3 per grid point: density x this = electrons
    print(
        f"{model} on {path}: {rho.size} grid points, electrons {pred.sum() * per_point:.4f} vs {rho.sum() * per_point:.4f}"
    )
    table(diff, dist, rho.reshape(-1), electrons=diff * per_point)


def table(err, dist, rho, electrons=None) -> None:
    err = np.abs(err)
    print(f"MAE {err.mean():.3e} e/A^3")
    extra = " electrons (model - reference) |" if electrons is not None else ""
    print(f"| nearest atom (A) | points | share of |error| | MAE | mean density |{extra}")
    print("|---|---|---|---|---|" + ("---|" if electrons is not None else ""))
    for lo, hi in SHELLS:
        m = (dist >= lo) & (dist < hi)
        line = f"| {lo}-{hi} | {100 * m.mean():.1f}% | {100 * err[m].sum() / err.sum():.1f}% | {err[m].mean():.2e} | {rho[m].mean():.3f} |"
        if electrons is not None:
            line += f" {electrons[m].sum():+.4f} |"
        print(line)


if __name__ == "__main__":
    main()
