"""What one perfect crystal can say about rattled cells, without a network: the rigid-atom warp.

    python benchmarks/warp_baseline.py [--dft examples/silicon/dft]

Each grid point p of a rattled cell takes the perfect cell's density at p - sum_i w_i(p) d_i, where
d_i is atom i's displacement (fractional, minimum image) and w_i(p) a partition of unity that
follows the nearest atoms (exp(-r/a) or r^-k, normalised); cubic interpolation, periodic; the
volume ratio scales the density of a strained cell. Near a nucleus the density moves rigidly with
its atom; in a bond it moves with a mix of both ends. Prints NMAE against the rattled cell's own
DFT density for a few weightings, and for the perfect density left where it is.
Used in docs/benchmarks.md section 9 to put the perfect -> rattled figures of the trained models
in context.
"""

import argparse
from pathlib import Path

import numpy as np
from scipy.ndimage import map_coordinates

from deepmd_charge.io.chgcar import read_chgcar

ROOT = Path(__file__).resolve().parents[1]


def warped(perfect, atoms, weight) -> np.ndarray:
    """The perfect cell's density carried along with the atoms to `atoms` (same atom order)."""
    shape = np.array(perfect.shape)
    frac = np.stack(np.meshgrid(*[np.arange(k) / k for k in shape], indexing="ij"), -1).reshape(-1, 3)
    new = atoms.get_scaled_positions()
    shift = new - perfect.atoms.get_scaled_positions()
    shift -= np.round(shift)
    w = np.empty((len(frac), len(new)))
    for i, f in enumerate(new):
        d = frac - f
        d -= np.round(d)
        w[:, i] = weight(np.linalg.norm(d @ atoms.cell[:], axis=1))
    w /= w.sum(axis=1, keepdims=True)
    source = (frac - w @ shift) * shape
    values = map_coordinates(perfect.total, source.T, order=3, mode="grid-wrap")
    return values.reshape(perfect.shape) * perfect.atoms.get_volume() / atoms.get_volume()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dft", type=Path, default=ROOT / "examples" / "silicon" / "dft")
    parser.add_argument("--tests", nargs="+", default=["rattled_a", "rattled_b", "rattled_c"])
    args = parser.parse_args()
    perfect = read_chgcar(args.dft / "perfect" / "CHGCAR.gz")
    weights = {
        "perfect density as is": None,
        "exp(-r / 0.3 A)": lambda r: np.exp(-r / 0.3),
        "exp(-r / 0.5 A)": lambda r: np.exp(-r / 0.5),
        "r^-6": lambda r: np.maximum(r, 1e-6) ** -6.0,
    }
    print("| test structure | " + " | ".join(weights) + " |")
    print("|---" * (len(weights) + 1) + "|")
    for name in args.tests:
        test = read_chgcar(args.dft / name / "CHGCAR.gz")
        if test.shape != perfect.shape or len(test.atoms) != len(perfect.atoms):
            raise SystemExit(f"{name}: grid or atom count differs from the perfect cell's")
        ref = test.total
        cells = []
        for weight in weights.values():
            if weight is None:
                guess = perfect.total * perfect.atoms.get_volume() / test.atoms.get_volume()
            else:
                guess = warped(perfect, test.atoms, weight)
            cells.append(f"{100 * np.abs(guess - ref).mean() / np.abs(ref).mean():.2f}%")
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
