"""Make spin-polarised DFT densities of bcc iron (GPAW, PBE) for the spin benchmark.

Writes examples/iron/dft/<name>/CHGCAR.gz (two blocks: total density, then magnetisation
rho_up - rho_down, both as VASP writes them) and POSCAR, for a 16-atom bcc Fe cell
(2x2x2 conventional cells, a = 2.83 A) with atoms rattled (stdev 0.05 A):

    rattled_a  seed 1  (training)
    rattled_b  seed 2  (test)

GPAW settings: PW(350 eV), PBE, 2x2x2 Gamma-centred k-points, Fermi-Dirac 0.1 eV, spin-polarised
starting from 2.5 muB per atom, h = 0.2 A (pseudo density on the 2x finer grid). Run with
OMP_NUM_THREADS=1 from the repository root: python examples/iron/make_data.py [--force], or on two
cores: GPAW_MPI_BACKEND=cgpaw mpiexec -n 2 python examples/iron/make_data.py (about 2 minutes per
structure).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))

from ase.build import bulk  # noqa: E402
from ase.io import write  # noqa: E402
from gpaw import GPAW, PW, FermiDirac  # noqa: E402
from gpaw.mpi import world  # noqa: E402

from deepmd_charge.io.chgcar import read_chgcar, write_chgcar  # noqa: E402

STRUCTURES = {"rattled_a": 1, "rattled_b": 2}


def make(name: str, seed: int, force: bool) -> None:
    out = HERE / "dft" / name
    if (out / "CHGCAR.gz").exists() and not force:
        print(f"{name}: exists, skipped")
        return
    out.mkdir(parents=True, exist_ok=True)
    atoms = bulk("Fe", "bcc", a=2.83, cubic=True).repeat((2, 2, 2))
    atoms.rattle(stdev=0.05, seed=seed)
    atoms.set_initial_magnetic_moments([2.5] * len(atoms))
    (HERE / "work").mkdir(exist_ok=True)
    atoms.calc = GPAW(
        mode=PW(350),
        xc="PBE",
        kpts={"size": (2, 2, 2), "gamma": True},
        h=0.2,
        occupations=FermiDirac(0.1),
        spinpol=True,
        txt=str(HERE / "work" / f"{name}.txt"),
    )
    start = time.perf_counter()
    energy = atoms.get_potential_energy()
    up = atoms.calc.get_pseudo_density(spin=0, gridrefinement=2)
    down = atoms.calc.get_pseudo_density(spin=1, gridrefinement=2)
    total, mag = up + down, up - down
    volume = atoms.get_volume()
    moment = atoms.calc.get_magnetic_moment()
    if world.rank != 0:  # under mpiexec every rank holds the full density; one writes it
        return
    write_chgcar(out / "CHGCAR.gz", atoms, [total, mag])
    write(out / "POSCAR", atoms, format="vasp", direct=True, parallel=False)
    back = read_chgcar(out / "CHGCAR.gz")
    assert np.allclose(back.blocks[1], mag, rtol=1e-9, atol=1e-12)
    print(
        f"{name}: {time.perf_counter() - start:.0f} s, E = {energy:.3f} eV, grid {total.shape}, "
        f"electrons {total.mean() * volume:.4f}, moment {mag.mean() * volume:.3f} muB (GPAW: {moment:.3f})"
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--force", action="store_true")
    args = parser.parse_args()
    for name, seed in STRUCTURES.items():
        make(name, seed, args.force)


if __name__ == "__main__":
    main()
