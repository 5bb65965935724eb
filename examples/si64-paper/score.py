"""Score the shipped Si64 model on Deep Charge paper-layout data with the Python API.

    python examples/si64-paper/score.py SYSTEM [SYSTEM ...]

A SYSTEM is a deepmd/npy folder whose frames hold 64 Si atoms followed by grid points ("Prob")
with the density in atom_ener.npy (e/A^3), as in the paper authors' data (the folder data/ of
their public GitHub repository theAfish/DeepCharge-old; its three validation structures are the
ones scored in README.md). Any other Si structure
works the same way: DeepCharge(pb).predict_points(atoms, points) with an ASE Atoms and an (M, 3)
array of cartesian points in Angstrom.
"""

import sys
from pathlib import Path

import numpy as np
from ase import Atoms

from deepmd_charge import DeepCharge

HERE = Path(__file__).resolve().parent


def structures(system: Path):
    """(atoms, points, density) per set of a paper-layout system: each set is one structure."""
    types = np.loadtxt(system / "type.raw", dtype=int)
    real = types == 0
    for s in sorted(system.glob("set.*")):
        coord, box, rho = (np.load(s / f"{n}.npy") for n in ("coord", "box", "atom_ener"))
        xyz = coord.reshape(len(coord), -1, 3)
        if not np.allclose(xyz[:, real], xyz[0, real]):
            sys.exit(f"{s}: the frames of a set hold different structures")
        atoms = Atoms(f"Si{real.sum()}", positions=xyz[0, real], cell=box[0].reshape(3, 3), pbc=True)
        yield s.name, atoms, xyz[:, ~real].reshape(-1, 3), rho[:, ~real].reshape(-1)


def main():
    systems = [Path(p) for p in sys.argv[1:]]
    if not systems:
        sys.exit("usage: python examples/si64-paper/score.py SYSTEM [SYSTEM ...]  (deepmd/npy folders)")
    for system in systems:
        if not (system / "type.raw").is_file():
            sys.exit(f"{system}: not a deepmd/npy system (no type.raw)")
    dc = DeepCharge(HERE / "model.pb")
    for system in systems:
        for name, atoms, points, rho in structures(system):
            err = dc.predict_points(atoms, points) - rho
            print(
                f"{system.name}/{name}: {len(err)} points, MAE {np.abs(err).mean():.2e} e/A^3, "
                f"NMAE {np.abs(err).sum() / np.abs(rho).sum():.2%}"
            )


if __name__ == "__main__":
    main()
