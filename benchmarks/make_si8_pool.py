"""A pool of Si8 DFT densities (GPAW) for the committee and selection benchmarks.

Same GPAW settings as examples/silicon/make_data.py (PW 300 eV, PBE, 3x3x3 k, 48^3 density grid,
`get_pseudo_density(gridrefinement=2)`); structures of several kinds next to the four shipped ones
(perfect, rattled_a/b/c in examples/silicon/dft):

    rattle002   rattled, stdev 0.02 A (nearly perfect)
    rattle005   rattled, stdev 0.05 A
    rattle020   rattled, stdev 0.20 A (large)
    compress3   -3 % isotropic strain, rattled 0.05 A
    stretch4    +4 % isotropic strain, rattled 0.05 A
    vacancy     one atom removed (Si7), rattled 0.05 A

    OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 python benchmarks/make_si8_pool.py /tmp/si8_pool [names...]

writes DIR/<name>/CHGCAR.gz and POSCAR (existing ones are skipped). Each takes 10-60 s on one core.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples" / "silicon"))
sys.path.insert(0, str(ROOT))

import make_data  # noqa: E402  (GPAW settings and checks of the shipped example)

# name -> (rattle stdev A, rattle seed, isotropic strain, vacancy)
POOL = {
    "rattle002": (0.02, 11, 0.0, False),
    "rattle005": (0.05, 12, 0.0, False),
    "rattle020": (0.20, 13, 0.0, False),
    "compress3": (0.05, 14, -0.03, False),
    "stretch4": (0.05, 15, 0.04, False),
    "vacancy": (0.05, 16, 0.0, True),
}


def make_structure(name):
    from ase.build import bulk

    stdev, seed, strain, vacancy = POOL[name]
    atoms = bulk("Si", "diamond", a=make_data.A_LATTICE, cubic=True)
    if strain:
        atoms.set_cell(atoms.cell[:] * (1.0 + strain), scale_atoms=True)
    if vacancy:
        del atoms[0]
    atoms.rattle(stdev=stdev, seed=seed)
    return atoms


def run(name, root: Path):
    import ase.io
    from gpaw import GPAW

    from deepmd_charge.io.chgcar import read_chgcar, write_chgcar

    out = root / name
    if (out / "CHGCAR.gz").exists():
        print(f"{name}: exists, skipped")
        return
    out.mkdir(parents=True, exist_ok=True)
    atoms = make_structure(name)
    t0 = time.perf_counter()
    atoms.calc = GPAW(**make_data.GPAW_SETTINGS, txt=str(out / "gpaw.txt"))
    atoms.get_potential_energy()
    rho = np.ascontiguousarray(
        atoms.calc.get_pseudo_density(gridrefinement=make_data.GRID_REFINEMENT), dtype=np.float64
    )
    make_data.check_grid_origin(atoms.calc, atoms, rho.shape)
    nel = rho.mean() * atoms.get_volume()
    if abs(nel - 4 * len(atoms)) > 1e-3:
        raise RuntimeError(f"{name}: density integrates to {nel}, expected {4 * len(atoms)}")
    ase.io.write(out / "POSCAR", atoms, format="vasp", direct=True)
    write_chgcar(out / "CHGCAR.gz", atoms, rho, title=f"Si{len(atoms)} {name} GPAW PBE PW300 valence pseudo density")
    back = read_chgcar(out / "CHGCAR.gz")
    assert np.abs(back.total - rho).max() < 1e-8 * np.abs(rho).max()
    print(f"{name}: {len(atoms)} atoms, SCF {time.perf_counter() - t0:.1f} s, electrons {nel:.6f}", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("dir", type=Path)
    parser.add_argument("names", nargs="*", default=list(POOL))
    args = parser.parse_args()
    for name in args.names:
        run(name, args.dir.resolve())


if __name__ == "__main__":
    main()
