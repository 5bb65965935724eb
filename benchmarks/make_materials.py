"""Make GPAW PBE densities of four material classes (train + test structure each) for a benchmark.

Writes, for every material below, two structures (``rattled_a`` for training, ``rattled_b`` for
testing) as

    <out>/<material>/<name>/CHGCAR.gz   valence pseudo density, VASP CHGCAR format, gzipped
    <out>/<material>/<name>/POSCAR      the structure (VASP 5, direct coordinates)
    <out>/<material>/<name>/gpaw.txt    the GPAW log

with <out> = /tmp/materials unless --out is given (the data are not shipped with the repository).
Atoms are listed element by element (O before H, Al before Mg) so that POSCAR has one run each.

    si64     crystalline Si, 2x2x2 conventional diamond cells (64 atoms, a = 5.43 A), rattled with
             stdev 0.05 A (ase rattle seed 1 for rattled_a, seed 2 for rattled_b). 256 valence e.
    al_slab  Al(111) slab, ase.build.fcc111('Al', size=(2, 2, 4), vacuum=6.0) (16 atoms, 4 layers,
             a = 4.05 A, 12 A of vacuum between the periodic images), made periodic in z for GPAW's
             plane waves; rattled stdev 0.05 A, seeds 1 / 2. 48 valence e.
    water    8 H2O in a cubic box of 6.209 A (1.00 g/cm^3): O on a 2x2x2 grid, each moved by up
             to 0.3 A along each axis and given a random orientation (O-H 0.97 A, H-O-H 104.5 deg;
             numpy default_rng seed 1 / 2); a draw is redone until no O-O distance is below 2.6 A
             and no O...H or H...H distance between molecules below 1.5 A; then rattled stdev
             0.02 A (ase seed 1 / 2). 64 valence e. --water-extra N adds N more configurations
             for training on several structures, made the same way with seeds 3, 4, ...:
             rattled_c, rattled_d, ... (rattled_b stays the test structure).
    diamond_fine  diamond carbon, one conventional cell (8 atoms, a = 3.567 A), rattled stdev
             0.05 A (ase seeds 1 / 2). 32 valence e.
    mgo_fine rocksalt MgO, one conventional cell (4 Mg + 4 O, a = 4.212 A), rattled stdev 0.05 A
             (ase seeds 1 / 2); Mg with GPAW's 2-electron setup. 32 valence e.
    almg     Al-Mg alloy: fcc Al 2x2x2 conventional cells (32 atoms, a = 4.05 A) with 8 random
             sites made Mg (numpy default_rng seed 1 / 2: two different decorations), then rattled
             stdev 0.05 A (ase seed 1 / 2). Mg uses GPAW's 2-electron setup (setups={'Mg': '2'},
             like VASP's standard Mg PAW) rather than the default 10-electron one. 88 valence e.

--ideal also makes ``ideal``: the same structure without its rattle (a perfect crystal, the ideal
slab; Al-Mg with the decoration of seed 1), to train on for the ideal -> rattled pairs of issue 12.

GPAW 26.7.0 (ASE 3.29.0), PBE, no spin, grid spacing h set per material below; the density is
``calc.get_pseudo_density(gridrefinement=2)`` (pseudo density plus PAW compensation charges, the
analogue of a VASP CHGCAR; it dips negative near nuclei) on the fine grid, half that spacing:

    material  mode     k-points (irreducible)    coarse grid, h              fine grid (CHGCAR)
    si64      PW(300)  Gamma only (1)            gpts 48^3 (h = 0.226 A)     96^3, 0.113 A
    al_slab   PW(300)  4x4x1 Monkhorst-Pack (8)  h = 0.2 A: 30 x 30 x 96     60 x 60 x 192, 0.095/0.099 A
    water     PW(400)  Gamma only (1)            h = 0.2 A: 32^3             64^3, 0.097 A
    almg      PW(300)  2x2x2 Monkhorst-Pack (4)  h = 0.2 A: 42^3             84^3, 0.096 A
    water_fine PW(400) Gamma only (1)            gpts 36^3 (h = 0.172 A)     72^3, 0.086 A (the water boxes again)
    diamond_fine PW(500) 4x4x4 Monkhorst-Pack    gpts 20^3 (h = 0.178 A)     40^3, 0.089 A
    mgo_fine  PW(500)  4x4x4 Monkhorst-Pack      gpts 24^3 (h = 0.176 A)     48^3, 0.088 A

all with Fermi-Dirac smearing of 0.1 eV and GPAW's default convergence criteria.
(si64 gives the grid as gpts=48^3: h = 0.22 would round up to 52^3.) Every density is checked:
mean(rho) x V must equal the valence count (also checked against GPAW's own count) within 1e-3,
else the script raises; the CHGCAR is read back with ``deepmd_charge.io.chgcar.read_chgcar`` and
compared with the array in memory, and the POSCAR with the structure.

Measured (one core, OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1, the other core busy):

    structure          SCF    electrons    rho min / max / mean (e/A^3)   negative points  CHGCAR.gz
    si64/rattled_a     61 s   256.000086   -1.208 / 0.786 / 0.1999        1.09 %, -5.08 e   6.1 MB
    si64/rattled_b     58 s   256.000086   -1.215 / 0.751 / 0.1999        1.09 %, -5.08 e   6.1 MB
    al_slab/rattled_a  55 s    48.000008   -1.504 / 0.275 / 0.0889        6.18 %, -2.42 e   4.5 MB
    al_slab/rattled_b  51 s    48.000008   -1.518 / 0.279 / 0.0889        6.35 %, -2.42 e   4.5 MB
    water/rattled_a     6 s    63.999998    0.0014 / 9.970 / 0.2674       none              1.8 MB
    water/rattled_b     5 s    63.999998    0.0012 / 9.981 / 0.2674       none              1.8 MB
    almg/rattled_a     39 s    87.999903   -4.133 / 0.282 / 0.1656        2.45 %, -7.05 e   3.9 MB
    almg/rattled_b     38 s    87.999903   -4.104 / 0.282 / 0.1656        2.46 %, -7.05 e   3.9 MB
    water/rattled_c     6 s    63.999998    0.0012 / 9.956 / 0.2674       none              1.8 MB
    water/rattled_d     5 s    63.999998    0.0012 / 9.928 / 0.2674       none              1.8 MB
    water/rattled_e     5 s    63.999998    0.0010 / 9.936 / 0.2674       none              1.8 MB

    water_fine/rattled_a  9 s  63.999998   0.0014 / 10.03 / 0.2674       none              2.6 MB
    diamond_fine/rattled_a 10 s  31.999996   0.0796 / 2.236 / 0.7051       none              0.4 MB
    mgo_fine/rattled_a   18 s    31.999945  -4.145 / 10.33 / 0.4282        2.63 %, -1.74 e   0.8 MB
    (rattled_b of each, and water_fine rattled_c: within a few % of these; `water_fine diamond_fine
    --water-extra 1` 46 s, `mgo_fine` 36 s, one core, the other busy)

(rattled_c-e: `water --water-extra 3`, 17.8 s with rattled_a/b skipped; 5.2-5.8 s of SCF each.)
All eight in 321 s (5.4 min; writing and reading back a CHGCAR.gz adds 1-2 s each); the output
folder holds 32 MB (33.0e6 bytes, GPAW logs included). Si64 at these settings takes 1 min per
structure, so no reduction of its cutoff or grid was needed. The Si, Al and Mg densities dip
negative within 0.5 A of the nuclei (PAW compensation charges; the minima sit on the nuclei), as in
the silicon example; in the slab's vacuum the density is zero to within +-7e-5 e/A^3 (Fourier
ripples, 2.7e-4 e in all). The water density stays positive and peaks at 10 e/A^3 on the O nuclei.

Usage (from the repository root; serial, one core)::

    OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 python benchmarks/make_materials.py [--out DIR] [--force] [--water-extra N] [material ...]

Structures whose CHGCAR.gz exists are skipped unless --force is given. The structures are
deterministic (redoing water into another folder gave byte-identical POSCARs); the densities of a
rerun differ only in the last written digit of a few values (GPAW's floating point; compare with
zcat), and the gzip header holds the time of writing, so the CHGCAR.gz bytes differ.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # so that `deepmd_charge` imports without installing the package
    sys.path.insert(0, str(ROOT))

import ase  # noqa: E402
import ase.data  # noqa: E402
import ase.units  # noqa: E402
import gpaw  # noqa: E402
from ase import Atoms  # noqa: E402
from ase.build import bulk, fcc111  # noqa: E402
from ase.geometry import get_distances  # noqa: E402
from ase.io import read  # noqa: E402
from gpaw import GPAW, PW, FermiDirac  # noqa: E402

from deepmd_charge.io.chgcar import format_poscar, read_chgcar, write_chgcar  # noqa: E402

SEEDS = {"rattled_a": 1, "rattled_b": 2}  # name -> seed of the rattle (and of the random choices)
IDEAL = "ideal"  # --ideal: the structure without its rattle (crystals and the slab; Al-Mg with the seed-1 decoration)
WATER_EXTRA_MAX = 24  # --water-extra: rattled_c (seed 3), rattled_d (seed 4), ... up to rattled_z
VALENCE = {"Si": 4, "Al": 3, "Mg": 2, "O": 6, "H": 1, "C": 4}  # with the setups chosen below
GRID_REFINEMENT = 2
A_SI, A_AL, A_C, A_MGO = 5.43, 4.05, 3.567, 4.212  # A
O_H, HOH = 0.97, 104.5  # A, degrees


def water_extra_seeds(n: int) -> dict:
    """The n extra water configurations of --water-extra: rattled_c with seed 3, rattled_d with seed 4, ..."""
    return {f"rattled_{chr(ord('c') + i)}": 3 + i for i in range(n)}


def by_element(atoms: Atoms, order) -> Atoms:
    """The atoms sorted element by element in `order` (stable), so POSCAR has one run each."""
    return atoms[np.argsort([order.index(s) for s in atoms.get_chemical_symbols()], kind="stable")]


def si64(seed: int, stdev: float = 0.05) -> Atoms:
    atoms = bulk("Si", "diamond", a=A_SI, cubic=True).repeat((2, 2, 2))
    atoms.rattle(stdev=stdev, seed=seed)
    return atoms


def al_slab(seed: int, stdev: float = 0.05) -> Atoms:
    atoms = fcc111("Al", size=(2, 2, 4), a=A_AL, vacuum=6.0)
    atoms.pbc = True  # plane waves: periodic images 12 A apart along z
    atoms.rattle(stdev=stdev, seed=seed)
    return atoms


def random_rotation(rng) -> np.ndarray:
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    return q if np.linalg.det(q) > 0 else -q


def water(seed: int, n_side: int = 2, density: float = 1.0) -> Atoms:
    """n_side^3 water molecules in a cubic box at `density` g/cm^3."""
    n_mol = n_side**3
    mass = n_mol * (ase.data.atomic_masses[8] + 2 * ase.data.atomic_masses[1])  # amu
    box = (mass * ase.units._amu * 1e3 / density * 1e24) ** (1 / 3)  # g / (g/cm^3) -> A^3 -> A
    half = np.radians(HOH) / 2
    local = O_H * np.array([[0, 0, 0], [np.sin(half), 0, np.cos(half)], [-np.sin(half), 0, np.cos(half)]])
    spacing = box / n_side
    sites = (np.indices((n_side,) * 3).reshape(3, -1).T + 0.5) * spacing
    rng = np.random.default_rng(seed)
    for _ in range(1000):
        oxygens = sites + rng.uniform(-0.3, 0.3, size=sites.shape)
        pos = np.concatenate([o + local @ random_rotation(rng).T for o in oxygens])
        atoms = Atoms("OH2" * n_mol, positions=pos, cell=[box] * 3, pbc=True)
        _, dist = get_distances(pos, cell=atoms.cell, pbc=True)
        molecule = np.repeat(np.arange(n_mol), 3)
        between = dist[molecule[:, None] != molecule[None, :]]
        d_oo = dist[::3, ::3][~np.eye(n_mol, dtype=bool)]
        if d_oo.min() >= 2.6 and between.min() >= 1.5:
            break
    else:
        raise RuntimeError(f"no water configuration found for seed {seed}")
    atoms.wrap()
    atoms = by_element(atoms, ["O", "H"])
    atoms.rattle(stdev=0.02, seed=seed)
    return atoms


def diamond(seed: int, stdev: float = 0.05) -> Atoms:
    atoms = bulk("C", "diamond", a=A_C, cubic=True)
    atoms.rattle(stdev=stdev, seed=seed)
    return atoms


def mgo(seed: int, stdev: float = 0.05) -> Atoms:
    atoms = by_element(bulk("MgO", "rocksalt", a=A_MGO, cubic=True), ["Mg", "O"])
    atoms.rattle(stdev=stdev, seed=seed)
    return atoms


def almg(seed: int, n_mg: int = 8, stdev: float = 0.05) -> Atoms:
    atoms = bulk("Al", "fcc", a=A_AL, cubic=True).repeat((2, 2, 2))
    symbols = np.array(atoms.get_chemical_symbols())
    symbols[np.random.default_rng(seed).choice(len(atoms), n_mg, replace=False)] = "Mg"
    atoms.set_chemical_symbols(symbols)
    atoms = by_element(atoms, ["Al", "Mg"])
    atoms.rattle(stdev=stdev, seed=seed)
    return atoms


# material -> (structure builder(seed), GPAW settings, title)
MATERIALS = {
    "si64": (si64, dict(mode=PW(300), kpts=(1, 1, 1), gpts=(48, 48, 48)), "Si64 crystal"),
    "al_slab": (al_slab, dict(mode=PW(300), kpts=(4, 4, 1), h=0.2), "Al(111) 4-layer slab"),
    "water": (water, dict(mode=PW(400), kpts=(1, 1, 1), h=0.2), "8 H2O liquid-density box"),
    "almg": (almg, dict(mode=PW(300), kpts=(2, 2, 2), h=0.2, setups={"Mg": "2"}), "Al24Mg8 fcc alloy"),
    # the same water boxes on a finer grid (72^3, 0.086 A): more points on the steep O peaks (issue 17)
    "water_fine": (water, dict(mode=PW(400), kpts=(1, 1, 1), gpts=(36, 36, 36)), "8 H2O liquid-density box"),
    # a second first-row system with steep peaks on a fine grid (40^3, 0.089 A; issue 17)
    "diamond_fine": (diamond, dict(mode=PW(500), kpts=(4, 4, 4), gpts=(20, 20, 20)), "C8 diamond"),
    # an oxide: O peaks like water's on a fine grid (48^3, 0.088 A); Mg with its 2-electron setup
    "mgo_fine": (
        mgo,
        dict(mode=PW(500), kpts=(4, 4, 4), gpts=(24, 24, 24), setups={"Mg": "2"}),
        "Mg4O4 rocksalt",
    ),
}


def make(material: str, name: str, out: Path, force: bool, seed: int) -> None:
    build, settings, title = MATERIALS[material]
    folder = out / material / name
    chgcar = folder / "CHGCAR.gz"
    if chgcar.exists() and not force:
        print(f"{material}/{name}: {chgcar} exists, skipped (use --force to redo)", flush=True)
        return
    folder.mkdir(parents=True, exist_ok=True)
    atoms = build(seed, stdev=0.0) if name == IDEAL else build(seed)  # stdev 0: no rattle
    n_valence = sum(VALENCE[s] for s in atoms.get_chemical_symbols())
    print(
        f"{material}/{name}: {atoms.get_chemical_formula()}, {len(atoms)} atoms, "
        f"V = {atoms.get_volume():.2f} A^3, {n_valence} valence electrons",
        flush=True,
    )
    atoms.calc = GPAW(**settings, xc="PBE", occupations=FermiDirac(0.1), txt=str(folder / "gpaw.txt"))
    start = time.perf_counter()
    energy = atoms.get_potential_energy()
    t_scf = time.perf_counter() - start
    rho = np.ascontiguousarray(atoms.calc.get_pseudo_density(gridrefinement=GRID_REFINEMENT), dtype=np.float64)
    volume = atoms.get_volume()
    electrons = rho.mean() * volume
    neg = rho < 0
    print(
        f"  SCF {t_scf:.1f} s, E = {energy:.4f} eV, grid {rho.shape} (spacing "
        f"{np.round(np.linalg.norm(atoms.cell[:], axis=1) / rho.shape, 4).tolist()} A), electrons {electrons:.6f}\n"
        f"  rho min {rho.min():.4f}  max {rho.max():.4f}  mean {rho.mean():.5f} e/A^3; "
        f"{neg.mean() * 100:.2f} % of points negative, holding {rho[neg].sum() * volume / rho.size:.3f} e",
        flush=True,
    )
    gpaw_count = atoms.calc.get_number_of_electrons()
    if abs(electrons - n_valence) > 1e-3 or gpaw_count != n_valence:
        raise RuntimeError(
            f"{material}/{name}: density integrates to {electrons:.6f} electrons, "
            f"expected {n_valence} (GPAW counts {gpaw_count})"
        )

    (folder / "POSCAR").write_text(format_poscar(atoms))
    write_chgcar(chgcar, atoms, rho, title=f"{title} {name} GPAW {gpaw.__version__} PBE valence pseudo density")
    back = read_chgcar(chgcar)
    poscar = read(folder / "POSCAR", format="vasp")
    if (
        back.shape != rho.shape
        or np.abs(back.total - rho).max() > 1e-8 * np.abs(rho).max()
        or abs(back.electrons() - n_valence) > 1e-3
        or poscar.get_chemical_symbols() != atoms.get_chemical_symbols()
        or np.abs(poscar.positions - atoms.positions).max() > 1e-8
    ):
        raise RuntimeError(f"{chgcar}: read-back check failed")
    print(
        f"  wrote {chgcar} ({chgcar.stat().st_size / 1e6:.1f} MB), read back; "
        f"{time.perf_counter() - start:.1f} s in all",
        flush=True,
    )


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "materials", nargs="*", metavar="MATERIAL", help=f"materials to make (default all: {', '.join(MATERIALS)})"
    )
    parser.add_argument("--out", type=Path, default=Path("/tmp/materials"), help="output folder (default %(default)s)")
    parser.add_argument("--force", action="store_true", help="recompute existing CHGCAR.gz files")
    parser.add_argument(
        "--water-extra",
        type=int,
        default=0,
        metavar="N",
        help="also make N more water configurations for training on several structures: "
        "rattled_c, rattled_d, ... (seeds 3, 4, ...; default 0)",
    )
    parser.add_argument(
        "--ideal",
        action="store_true",
        help="also make 'ideal': the structure without its rattle, a perfect crystal or ideal slab to train "
        "on (issue 12's ideal -> rattled pairs; not for water)",
    )
    args = parser.parse_args(argv)
    unknown = sorted(set(args.materials) - set(MATERIALS))
    if unknown:
        parser.error(f"unknown material(s) {unknown}; choose from {', '.join(MATERIALS)}")
    if not 0 <= args.water_extra <= WATER_EXTRA_MAX:
        parser.error(f"--water-extra must be between 0 and {WATER_EXTRA_MAX}")
    print(f"GPAW {gpaw.__version__}, ASE {ase.__version__}", flush=True)
    start = time.perf_counter()
    for material in args.materials or list(MATERIALS):
        seeds = dict(SEEDS, **water_extra_seeds(args.water_extra)) if material.startswith("water") else SEEDS
        if args.ideal and not material.startswith("water"):
            seeds = {IDEAL: 1, **seeds}
        for name, seed in seeds.items():
            make(material, name, args.out.resolve(), args.force, seed)
    print(f"total {time.perf_counter() - start:.1f} s", flush=True)


if __name__ == "__main__":
    main()
