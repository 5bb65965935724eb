"""Does GPAW converge faster when its SCF starts from a better density? (the ceiling test)

GPAW 26 (the default `gpaw.dft.DFT`, PW mode) builds its start from overlapping atomic densities
and LCAO wave functions, then runs the SCF loop. Without patching GPAW, another density can be
put in between: ``DFT(atoms, converge=False, ...)``, overwrite ``dft.density.nt_sR`` (and the
atomic density matrices ``D_asii``), recompute the potential with
``dft.pot_calc.calculate(...)``, then ``dft.converge()``. This script tries the best case a model
could ever give, the converged density itself, on a rattled 2-atom Si cell:

    default          GPAW's own start
    exact nt + D     converged pseudo density and density matrices
    exact nt         converged pseudo density, atomic density matrices
    CHGCAR-like      what a model trained on get_pseudo_density() data predicts (pseudo density
                     plus compensation charges), with the compensation charges of the atomic
                     density matrices taken off again

and prints SCF iterations, wall time and the energy difference to the default run.

    OMP_NUM_THREADS=1 python benchmarks/gpaw_density_start.py
"""

from __future__ import annotations

import time

from ase.build import bulk
from ase.units import Bohr
from gpaw.dft import DFT, PW

PARAMS = dict(mode=PW(250), kpts=(3, 3, 3), xc="PBE", txt=None)  # GPAW's default convergence criteria


def main():
    atoms = bulk("Si", "diamond", a=5.43)
    atoms.rattle(0.1, seed=3)
    t0 = time.perf_counter()
    ref = DFT(atoms, **PARAMS)
    rows = [("default", ref.scf_loop.niter, time.perf_counter() - t0, 0.0)]
    e_ref = ref.calculate_energy()
    nt = ref.density.nt_sR.data.copy()
    d_conv = {a: d.copy() for a, d in ref.density.D_asii.items()}
    chgcar_like = ref.densities().pseudo_densities(add_compensation_charges=True).data[0] * Bohr**3
    for mode in ("exact nt + D", "exact nt", "CHGCAR-like"):
        t0 = time.perf_counter()
        dft = DFT(atoms, converge=False, **PARAMS)
        dens = dft.density
        if mode == "CHGCAR-like":
            dd = dft.densities()
            ghat = (
                dd.pseudo_densities(add_compensation_charges=True).data[0]
                - dd.pseudo_densities(add_compensation_charges=False).data[0]
            ) * Bohr**3
            dens.nt_sR.data[0] = chgcar_like - ghat
        else:
            dens.nt_sR.data[:] = nt
            if mode == "exact nt + D":
                for a, d in d_conv.items():
                    dens.D_asii[a][:] = d
        dft.potential, dft.energies, _ = dft.pot_calc.calculate(dens, dft.ibzwfs, dft.potential.vHt_x)
        dft.converge()
        rows.append((mode, dft.scf_loop.niter, time.perf_counter() - t0, dft.calculate_energy() - e_ref))
    print("| start | SCF iterations | wall (s) | E - E_default (eV) |\n|---|---|---|---|")
    for mode, it, wall, de in rows:
        print(f"| {mode} | {it} | {wall:.1f} | {de:+.1e} |")


if __name__ == "__main__":
    main()
