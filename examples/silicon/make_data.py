"""Make the silicon example's DFT charge densities (GPAW, PBE, plane waves).

Writes, for four 8-atom diamond-silicon structures (conventional cubic cell, a = 5.43 A):

    examples/silicon/dft/<name>/CHGCAR.gz   valence pseudo density, VASP CHGCAR format, gzipped
    examples/silicon/dft/<name>/POSCAR      the structure (VASP 5, direct coordinates)

    perfect     the perfect crystal
    rattled_a   atoms rattled with a normal distribution, stdev 0.10 A (ase rattle seed=1)
    rattled_b   stdev 0.10 A, seed=2
    rattled_c   cell strained +2 % isotropically (atoms scaled with it), then stdev 0.15 A, seed=3
                (a transfer test: a different volume and larger displacements)

GPAW 26.7.0 (ASE 3.29.0) settings: mode=PW(300 eV), xc='PBE', 3x3x3 Gamma-centred k-point grid
(for odd sizes identical to the Monkhorst-Pack grid), grid spacing h=0.25 A -> 24^3 coarse grid,
density written on the 48^3 fine grid (gridrefinement=2), default convergence criteria, default
symmetry, no spin, default Fermi-Dirac smearing of 0.1 eV (rattled_c has no gap). The GPAW text logs
go to examples/silicon/work/logs/<name>.txt (git-ignored).

The density is ``calc.get_pseudo_density(gridrefinement=2)``: the smooth pseudo valence density
plus the PAW compensation charges, the analogue of a VASP CHGCAR. It integrates to the 32
valence electrons (32.00001), but the compensation charges are narrow Gaussians on the atoms, so
the values dip strongly negative within about 0.38 A of each nucleus (down to -1.22 e/A^3 at the
nucleus, about 1 % of the grid points, -0.64 e in all), against bond-charge maxima of 0.58 e/A^3
(perfect) to 0.93 e/A^3 (the shortest, 1.96 A, bond of rattled_c). Element [i, j, k] is the
density at fractional position (i/48, j/48, k/48); the script
checks this against GPAW's grid coordinates and, for the perfect crystal, against the inversion
centre of diamond at (1/8, 1/8, 1/8).

`--fresh DIR --seeds 101 102 103` instead writes rattled_<seed> structures (stdev 0.10 A, like
rattled_a and rattled_b, new seeds) to DIR/rattled_<seed>/: test structures that no model or
benchmark of this project was tuned on (benchmarks/si8_one_structure.py --fresh DIR scores them).

Every structure is reproducible (fixed rattle seeds, deterministic SCF). Structures whose
CHGCAR.gz already exists are skipped unless --force is given. After writing, each file is read
back with ``deepmd_charge.io.chgcar.read_chgcar`` and compared with the array in memory.

Run time with OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1: 14 s for all four on 2 idle cores
(``mpiexec -n 2``, k-point parallel: perfect 2.4 s, each rattled structure about 4 s; up to 25 s
on a busy machine) and about 25 s serial (perfect 3.4 s, rattled about 7 s each). The files total about 2.7 MB (48^3 grid).
Serial and 2-rank runs give the same densities to 5e-8 e/A^3.

Usage (from the repository root)::

    OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 python examples/silicon/make_data.py [--force] [names...]
    GPAW_MPI_BACKEND=cgpaw OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 \\
        mpiexec -n 2 python examples/silicon/make_data.py [--force] [names...]

(GPAW 26 refuses to run under mpiexec unless launched as ``gpaw python`` or with
GPAW_MPI_BACKEND=cgpaw; ``gpaw python`` would swallow the script's own options.)
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
if str(REPO) not in sys.path:  # so that `deepmd_charge` imports without installing the package
    sys.path.insert(0, str(REPO))

import ase  # noqa: E402
import ase.io  # noqa: E402
import gpaw  # noqa: E402
from ase.build import bulk  # noqa: E402
from gpaw import GPAW, PW  # noqa: E402
from gpaw.mpi import world  # noqa: E402

from deepmd_charge.io.chgcar import read_chgcar, write_chgcar  # noqa: E402

A_LATTICE = 5.43  # A
N_VALENCE = 32.0  # 8 Si x 4 valence electrons
GPAW_SETTINGS = dict(
    mode=PW(300),
    xc="PBE",
    kpts={"size": (3, 3, 3), "gamma": True},
    h=0.25,
)
GRID_REFINEMENT = 2

# name -> (rattle stdev in A, rattle seed, isotropic strain)
STRUCTURES = {
    "perfect": (0.0, None, 0.0),
    "rattled_a": (0.10, 1, 0.0),
    "rattled_b": (0.10, 2, 0.0),
    "rattled_c": (0.15, 3, 0.02),
}


def log(*args):
    if world.rank == 0:
        print(*args, flush=True)


def make_structure(name: str):
    stdev, seed, strain = STRUCTURES[name]
    atoms = bulk("Si", "diamond", a=A_LATTICE, cubic=True)
    if strain:
        atoms.set_cell(atoms.cell[:] * (1.0 + strain), scale_atoms=True)
    if stdev:
        atoms.rattle(stdev=stdev, seed=seed)
    return atoms


def check_grid_origin(calc, atoms, shape):
    """GPAW's fine-grid point [i,j,k] must sit at fractional (i/nx, j/ny, k/nz)."""
    dens = calc.dft.densities().pseudo_densities(grid_refinement=GRID_REFINEMENT)
    xyz = dens.desc.xyz()  # A, same units as atoms.cell after .scaled()
    if xyz.shape[:3] != shape:
        raise RuntimeError(f"grid coordinates {xyz.shape} do not match density {shape}")
    cell = atoms.cell[:]
    for idx in [(0, 0, 0), (1, 0, 0), (0, 1, 0), (0, 0, 1), (3, 5, 7)]:
        expected = (np.array(idx) / np.array(shape)) @ cell
        if np.abs(xyz[idx] - expected).max() > 1e-8:
            raise RuntimeError(f"grid point {idx} at {xyz[idx]}, expected {expected}")


def check_inversion(rho):
    """Perfect diamond is symmetric under inversion through (1/8, 1/8, 1/8) (a bond centre)."""
    n = rho.shape[0]
    assert rho.shape == (n, n, n) and n % 8 == 0
    i = np.arange(n)
    s = n // 4  # 2 * (n/8)
    origin = rho[np.ix_((s - i) % n, (s - i) % n, (s - i) % n)]
    half = rho[np.ix_((s - 1 - i) % n, (s - 1 - i) % n, (s - 1 - i) % n)]
    d0, d1 = np.abs(origin - rho).max(), np.abs(half - rho).max()
    log(
        f"  inversion through (1/8,1/8,1/8): max|diff| = {d0:.2e} with element [0,0,0] at the "
        f"origin, {d1:.2e} if it were at half a grid step"
    )
    if not d0 < 1e-4 * np.abs(rho).max() < d1:
        raise RuntimeError("density does not have the diamond inversion centre where expected")


def run(name: str, force: bool = False, root: Path = HERE / "dft") -> None:
    outdir = root / name
    chgcar = outdir / "CHGCAR.gz"
    if chgcar.exists() and not force:
        log(f"{name}: {chgcar} exists, skipped (use --force to redo)")
        return
    logdir = HERE / "work" / "logs"
    if world.rank == 0:
        outdir.mkdir(parents=True, exist_ok=True)
        logdir.mkdir(parents=True, exist_ok=True)
    world.barrier()

    atoms = make_structure(name)
    log(
        f"{name}: {len(atoms)} atoms, cell {np.diag(atoms.cell[:]).round(4).tolist()} A, "
        f"max displacement from the ideal sites "
        f"{np.linalg.norm(atoms.positions - make_ideal(name).positions, axis=1).max():.3f} A"
    )
    t0 = time.perf_counter()
    calc = GPAW(**GPAW_SETTINGS, txt=str(logdir / f"{name}.txt"))
    atoms.calc = calc
    energy = atoms.get_potential_energy()
    t_scf = time.perf_counter() - t0
    rho = np.ascontiguousarray(calc.get_pseudo_density(gridrefinement=GRID_REFINEMENT), dtype=np.float64)
    check_grid_origin(calc, atoms, rho.shape)
    volume = atoms.get_volume()
    nel = rho.mean() * volume
    log(f"  SCF {t_scf:.1f} s, E = {energy:.6f} eV, grid {rho.shape}, electrons {nel:.6f}")
    log(
        f"  rho min {rho.min():.4f}  max {rho.max():.4f}  mean {rho.mean():.4f} e/A^3; "
        f"{(rho < 0).mean() * 100:.2f} % of points negative, holding {rho[rho < 0].sum() * volume / rho.size:.4f} e"
    )
    if abs(nel - N_VALENCE) > 1e-3:
        raise RuntimeError(f"{name}: density integrates to {nel}, expected {N_VALENCE}")
    if name == "perfect":
        check_inversion(rho)

    if world.rank == 0:
        ase.io.write(outdir / "POSCAR", atoms, format="vasp", direct=True, parallel=False)
        t1 = time.perf_counter()
        write_chgcar(chgcar, atoms, rho, title=f"Si8 {name} GPAW {gpaw.__version__} PBE PW300 valence pseudo density")
        data = read_chgcar(chgcar)
        diff = np.abs(data.total - rho).max() / np.abs(rho).max()
        back = ase.io.read(outdir / "POSCAR", format="vasp", parallel=False)
        pos_diff = np.abs(back.get_scaled_positions(wrap=False) - atoms.get_scaled_positions(wrap=False)).max()
        log(
            f"  wrote {chgcar} ({chgcar.stat().st_size / 1e6:.2f} MB) and POSCAR in "
            f"{time.perf_counter() - t1:.1f} s; read back: max|diff|/max|rho| = {diff:.1e}, "
            f"electrons {data.electrons():.6f}, POSCAR max frac diff {pos_diff:.1e}"
        )
        if data.shape != rho.shape or not diff < 1e-8 or abs(data.electrons() - N_VALENCE) > 1e-3:
            raise RuntimeError(f"{chgcar}: read-back check failed")
        if not np.allclose(data.atoms.cell[:], atoms.cell[:], atol=1e-10) or pos_diff > 1e-10:
            raise RuntimeError(f"{chgcar}: structure read back differs")
    world.barrier()
    log(f"  {name} done in {time.perf_counter() - t0:.1f} s")


def make_ideal(name: str):
    """The unrattled (but strained) structure, for reporting displacements."""
    _, _, strain = STRUCTURES[name]
    atoms = bulk("Si", "diamond", a=A_LATTICE, cubic=True)
    if strain:
        atoms.set_cell(atoms.cell[:] * (1.0 + strain), scale_atoms=True)
    return atoms


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "names", nargs="*", metavar="NAME", help=f"structures to make (default all: {', '.join(STRUCTURES)})"
    )
    parser.add_argument("--force", action="store_true", help="recompute existing CHGCAR.gz files")
    parser.add_argument(
        "--fresh", type=Path, metavar="DIR", help="write new rattled structures (--seeds) to DIR instead"
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[101, 102, 103], help="rattle seeds for --fresh")
    args = parser.parse_args(argv)
    root = HERE / "dft"
    if args.fresh:
        root = args.fresh.resolve()
        args.names = [f"rattled_{seed}" for seed in args.seeds]
        STRUCTURES.update({name: (0.10, seed, 0.0) for name, seed in zip(args.names, args.seeds)})
    unknown = [n for n in args.names if n not in STRUCTURES]
    if unknown:
        parser.error(f"unknown structure(s) {unknown}; choose from {', '.join(STRUCTURES)}")
    log(f"GPAW {gpaw.__version__}, ASE {ase.__version__}, {world.size} MPI rank(s)")
    t0 = time.perf_counter()
    for name in args.names or list(STRUCTURES):
        run(name, args.force, root=root)
    log(f"total {time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    main()
