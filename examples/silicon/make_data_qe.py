"""Make 8-atom diamond-silicon charge densities with Quantum ESPRESSO, written as VASP CHGCARs.

Writes, for four structures in the conventional cubic cell (a = 5.43 A, ``ase.build.bulk('Si',
'diamond', a=5.43, cubic=True)``):

    <out>/<name>/CHGCAR.gz   valence (pseudo) density, VASP CHGCAR format, gzipped
    <out>/<name>/POSCAR      the structure (VASP 5, direct coordinates)
    <out>/<name>/qe/         pw.in, pw.out, pp.in, pp.out and pp.x's rho.cube (kept for inspection)

    perfect     the perfect crystal
    rattled_1   atoms.rattle(stdev=0.1, seed=11)
    rattled_2   atoms.rattle(stdev=0.1, seed=12)
    rattled_3   atoms.rattle(stdev=0.1, seed=13)

The default output folder is /tmp/qe_si8.

Quantum ESPRESSO 6.7 (Debian package quantum-espresso 6.7-2+b1; pw.x prints "PWSCF v.6.7MaX"),
serial (no mpirun, OMP_NUM_THREADS=1, nice -n 10); ASE 3.29.0 only builds the structures, the
pw.x input is written by hand. pw.x settings: calculation='scf', PBE from the pseudopotential
Si.pbe-rrkj.UPF (norm-conserving RRKJ, 4 valence electrons, MD5 d7f89eb60b7b396f5f4f9eaa825fcfdc,
in /usr/share/espresso/pseudo), ecutwfc=30 Ry, ecutrho=120 Ry (4 x ecutwfc), 3x3x3 unshifted
Monkhorst-Pack k-points (Gamma-centred; 4 irreducible points for the perfect crystal, which has 24
symmetry operations, 14 for the rattled cells, which keep only time reversal), no spin,
occupations='smearing' with Gaussian smearing degauss=0.002 Ry (0.027 eV), conv_thr=1e-10 Ry,
everything else default. The FFT grid is pw.x's default for this cell and cutoff: 36 x 36 x 36
for every structure (same cell), i.e. a spacing of 0.151 A.

Smearing: the gap on the 3x3x3 k-grid is 0.73 eV for the perfect crystal but only 0.16-0.19 eV
for the rattled cells. With degauss=0.005 Ry (0.068 eV) 0.002-0.004 electrons sat in the
conduction bands and the rattled_2 density differed from the degauss=0.002 Ry one by up to
1.9e-4 e/A^3 (mean 2.8e-5); with 0.002 Ry the conduction-band occupation is < 1e-5 e, so the
densities are those of the insulating ground state (the perfect crystal's is unchanged to 1e-10).

pp.x (plot_num=0, iflag=3, output_format=6) then writes the valence density on that FFT grid
twice: as the ``filplot`` file (10 significant digits) and as a Gaussian cube file (5 significant
digits, format 6E13.5, and voxel vectors rounded to 1e-6 bohr, which makes the cube cell 1.1e-6
too long and its electron count 32.0001). Both use the periodic convention: N points per axis,
point i at fractional i/N, origin 0, no repeated end point. (pp.x wraps the atoms in the cube into
(0, 1]: the atom at the origin is listed at the far corner - harmless for periodic readers.) The
CHGCAR is made from the filplot values (e/bohr^3 -> e/A^3 with ase.units.Bohr), so as not to
inherit the cube's rounding; the cube is read with the project's
``deepmd_charge.io.cube.read_cube`` and must agree point by point to within its rounding (5e-5
relative), which checks grid shape, axis order and origin against an independent file format.
Further checks: the cell and atoms in both pp.x files match the ASE structure; the density
integrates to 32 electrons within 1e-3; for the perfect crystal the density has the diamond
symmetries with element [0,0,0] at the origin (inversion through the bond centre (1/8,1/8,1/8) to
1.4e-7 e/A^3 and the two-fold axis along x through the origin atom exactly; both would fail by
0.2 e/A^3 if the grid were shifted by half a step); the CHGCAR and POSCAR read back identically
with ``deepmd_charge.io.chgcar.read_chgcar`` / ase.

Results (valence pseudo density in e/A^3 on the 36^3 grid, electrons = rho.mean() * V, V = 160.103 A^3):

    name       shortest   SCF    k    E (Ry)         electrons    min      max      mean
               Si-Si (A)  iters
    perfect    2.351       9     4   -62.95678938   32.000000   0.02158  0.58219  0.199871
    rattled_1  2.128      12    14   -62.83309826   32.000000   0.02077  0.76646  0.199871
    rattled_2  2.042      11    14   -62.80667090   32.000000   0.01976  0.86588  0.199871
    rattled_3  1.961      12    14   -62.78696196   32.000000   0.01961  0.94193  0.199871

No negative values (norm-conserving: no augmentation charges, unlike the GPAW/PAW data of
make_data.py). The maximum grows with the shortest bond.

Timings (2 cores shared with other work, load average ~2.5, one pw.x at a time): pw.x 2.7 s for
the perfect crystal (4 k-points) and 9.0-9.7 s for each rattled cell (14 k-points), pp.x 0.5 s
each, writing CHGCAR.gz + POSCAR 0.1 s; 34 s in all (30 s CPU). Files: CHGCAR.gz 0.15 MB
(perfect) / 0.32 MB (rattled); the kept cube files are 0.6 MB each.

Every structure is reproducible (fixed rattle seeds; pw.x's random start of the wavefunctions
uses a fixed seed): a second run gave bit-identical CHGCARs. Structures whose CHGCAR.gz exists are
skipped unless --force is given. pw.x's scratch folder (wavefunctions, charge-density.dat) and the
filplot file are deleted after use (--keep-scratch keeps the scratch folder).

Usage (from anywhere)::

    python examples/silicon/make_data_qe.py [--outdir /tmp/qe_si8] [--force] [names...]
"""

from __future__ import annotations

import argparse
import io
import os
import re
import shutil
import subprocess
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
from ase.build import bulk  # noqa: E402
from ase.io.espresso import write_espresso_in  # noqa: E402
from ase.units import Bohr  # noqa: E402

from deepmd_charge.io.chgcar import read_chgcar, write_chgcar  # noqa: E402
from deepmd_charge.io.cube import read_cube  # noqa: E402

A_LATTICE = 5.43  # A
N_VALENCE = 32.0  # 8 Si x 4 valence electrons
PSEUDO_DIR = "/usr/share/espresso/pseudo"
PSEUDO = "Si.pbe-rrkj.UPF"
ECUTWFC = 30.0  # Ry
ECUTRHO = 4 * ECUTWFC
KPTS = (3, 3, 3)
SMEARING, DEGAUSS = "gaussian", 0.002  # Ry (0.027 eV)
CONV_THR = 1e-10  # Ry
NICE = 10

# name -> (rattle stdev in A, rattle seed)
STRUCTURES = {
    "perfect": (0.0, None),
    "rattled_1": (0.10, 11),
    "rattled_2": (0.10, 12),
    "rattled_3": (0.10, 13),
}


def log(*args):
    print(*args, flush=True)


def make_structure(name: str):
    stdev, seed = STRUCTURES[name]
    atoms = bulk("Si", "diamond", a=A_LATTICE, cubic=True)
    if stdev:
        atoms.rattle(stdev=stdev, seed=seed)
    return atoms


def pw_input(atoms, prefix: str, outdir: str) -> str:
    text = io.StringIO()
    write_espresso_in(
        text,
        atoms,
        input_data={
            "control": {
                "calculation": "scf",
                "prefix": prefix,
                "outdir": outdir,
                "pseudo_dir": PSEUDO_DIR,
                "tprnfor": True,
                "tstress": True,
            },
            "system": {
                "ecutwfc": ECUTWFC,
                "ecutrho": ECUTRHO,
                "occupations": "smearing",
                "smearing": SMEARING,
                "degauss": DEGAUSS,
            },
            "electrons": {"conv_thr": CONV_THR},
        },
        pseudopotentials={"Si": PSEUDO},
        kpts=KPTS,
    )
    return text.getvalue()


def pp_input(prefix: str, outdir: str) -> str:
    return f"""&INPUTPP
  prefix = '{prefix}'
  outdir = '{outdir}'
  filplot = 'rho.filplot'
  plot_num = 0
/
&PLOT
  iflag = 3
  output_format = 6
  fileout = 'rho.cube'
/
"""


def run_qe(exe: str, inp: str, workdir: Path, stem: str) -> float:
    (workdir / f"{stem}.in").write_text(inp)
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    t0 = time.perf_counter()
    with open(workdir / f"{stem}.in") as fin, open(workdir / f"{stem}.out", "w") as fout:
        proc = subprocess.run(
            ["nice", "-n", str(NICE), exe], stdin=fin, stdout=fout, stderr=subprocess.STDOUT, cwd=workdir, env=env
        )
    dt = time.perf_counter() - t0
    text = (workdir / f"{stem}.out").read_text()
    if proc.returncode != 0 or "JOB DONE" not in text:
        raise RuntimeError(f"{exe} failed (exit {proc.returncode}), see {workdir / (stem + '.out')}")
    return dt


def parse_pw_out(text: str) -> dict:
    def grab(pattern, conv=str, default=None):
        m = re.search(pattern, text)
        return conv(m.group(1)) if m else default

    info = dict(
        version=grab(r"Program PWSCF (v\.\S+)"),
        md5=grab(r"MD5 check sum:\s*(\S+)"),
        nks=grab(r"number of k points=\s*(\d+)", int),
        nsym=grab(r"(\d+) Sym\. Ops\.", int, 1),
        energy=grab(r"!\s+total energy\s+=\s+(\S+) Ry", float),
        fermi=grab(r"the Fermi energy is\s+(\S+) ev", float),
        iters=grab(r"convergence has been achieved in\s+(\d+) iterations", int),
        wall=grab(r"PWSCF\s+:.*CPU\s+(.*)WALL", str.strip),
    )
    m = re.search(r"Dense\s+grid:.*FFT dimensions: \(\s*(\d+),\s*(\d+),\s*(\d+)\)", text)
    info["fft"] = tuple(int(x) for x in m.groups()) if m else None
    if info["iters"] is None or info["energy"] is None:
        raise RuntimeError("pw.x did not converge")
    return info


def read_filplot(path: Path):
    """pp.x's filplot: header, then nr1x*nr2x*nr3 values (x fastest) in e/bohr^3.

    Returns (cell in A, fractional positions, rho in e/A^3 as (nx, ny, nz))."""
    lines = path.read_text().splitlines()
    nr1x, nr2x, nr3x, nr1, nr2, nr3, nat, ntyp = (int(x) for x in lines[1].split()[:8])
    if (nr1x, nr2x, nr3x) != (nr1, nr2, nr3):
        raise RuntimeError(f"{path}: padded FFT grid {nr1x, nr2x, nr3x} vs {nr1, nr2, nr3} not handled")
    tok = lines[2].split()
    ibrav, alat = int(tok[0]), float(tok[1])
    if ibrav != 0:
        raise RuntimeError(f"{path}: ibrav={ibrav}, expected 0")
    at = np.array([[float(x) for x in lines[3 + i].split()] for i in range(3)])
    i = 7 + ntyp  # line 7 holds gcutm, dual, ecut, plot_num
    frac = np.array([[float(x) for x in lines[i + k].split()[1:4]] for k in range(nat)])  # alat units
    values = np.array(" ".join(lines[i + nat :]).split(), dtype=np.float64)
    n = nr1 * nr2 * nr3
    if values.size != n:
        raise RuntimeError(f"{path}: expected {n} values, found {values.size}")
    cell = at * alat * Bohr
    positions = frac * alat * Bohr  # tau is in units of alat (Cartesian)
    rho = values.reshape((nr1, nr2, nr3), order="F") / Bohr**3
    return cell, positions, rho


def same_sites(pos_a, pos_b, cell) -> float:
    """Largest distance (A) between matching atoms, modulo lattice vectors."""
    d = (pos_a - pos_b) @ np.linalg.inv(cell)
    d -= np.round(d)
    return float(np.abs(d @ cell).max())


def check_perfect_symmetry(rho):
    """Diamond with an atom at the origin: inversion through the bond centre (1/8,1/8,1/8) and the
    two-fold axes along x, y, z through the origin atom. Both fail if element [0,0,0] is not at
    the origin (e.g. shifted by half a grid step)."""
    n = rho.shape[0]
    assert rho.shape == (n, n, n) and n % 4 == 0
    i = np.arange(n)
    s = n // 4
    inv = rho[np.ix_((s - i) % n, (s - i) % n, (s - i) % n)]
    inv_half = rho[np.ix_((s - 1 - i) % n, (s - 1 - i) % n, (s - 1 - i) % n)]
    c2 = rho[np.ix_(i, (-i) % n, (-i) % n)]
    c2_half = rho[np.ix_(i, (-1 - i) % n, (-1 - i) % n)]
    d_inv, d_inv_half = np.abs(inv - rho).max(), np.abs(inv_half - rho).max()
    d_c2, d_c2_half = np.abs(c2 - rho).max(), np.abs(c2_half - rho).max()
    log(
        f"  symmetry: inversion through (1/8,1/8,1/8) max|diff| {d_inv:.1e} (if [0,0,0] were half a "
        f"step off: {d_inv_half:.1e}); C2 about x through the origin atom {d_c2:.1e} ({d_c2_half:.1e})"
    )
    tol = 1e-6 * np.abs(rho).max()
    if not (d_inv < tol < d_inv_half and d_c2 < tol < d_c2_half):
        raise RuntimeError("perfect-crystal density lacks the diamond symmetries where expected")


def run(name: str, out: Path, force: bool = False, keep_scratch: bool = False) -> dict | None:
    outdir = out / name
    chgcar = outdir / "CHGCAR.gz"
    if chgcar.exists() and not force:
        log(f"{name}: {chgcar} exists, skipped (use --force to redo)")
        return None
    work = outdir / "qe"
    work.mkdir(parents=True, exist_ok=True)
    atoms = make_structure(name)
    ideal = bulk("Si", "diamond", a=A_LATTICE, cubic=True)
    disp = np.linalg.norm(atoms.positions - ideal.positions, axis=1).max()
    dist = atoms.get_all_distances(mic=True)
    dmin = dist[dist > 0].min()
    log(f"{name}: {len(atoms)} atoms, a = {A_LATTICE} A, max displacement {disp:.3f} A, shortest Si-Si {dmin:.3f} A")

    scratch = "./scratch"
    t_pw = run_qe("pw.x", pw_input(atoms, "si8", scratch), work, "pw")
    info = parse_pw_out((work / "pw.out").read_text())
    t_pp = run_qe("pp.x", pp_input("si8", scratch), work, "pp")
    log(
        f"  pw.x {t_pw:.1f} s (pw.x says {info['wall']} wall), {info['iters']} SCF iterations, "
        f"{info['nks']} k-points, {info['nsym']} symmetry ops, E = {info['energy']:.8f} Ry, "
        f"E_F = {info['fermi']} eV, FFT grid {info['fft']}; pp.x {t_pp:.1f} s"
    )

    cell, fpos, rho = read_filplot(work / "rho.filplot")
    cube = read_cube(work / "rho.cube")
    if not np.allclose(cell, atoms.cell[:], atol=1e-6) or not np.allclose(cube.atoms.cell[:], atoms.cell[:], atol=1e-5):
        raise RuntimeError(f"{name}: pp.x cell differs from the input cell")
    d_fil, d_cube = same_sites(fpos, atoms.positions, cell), same_sites(cube.atoms.positions, atoms.positions, cell)
    if d_fil > 1e-6 or d_cube > 1e-5:
        raise RuntimeError(f"{name}: pp.x atoms differ from the input ({d_fil:.1e}, {d_cube:.1e} A)")
    if rho.shape != info["fft"] or cube.total.shape != rho.shape:
        raise RuntimeError(f"{name}: grid {rho.shape} / cube {cube.total.shape} vs FFT {info['fft']}")
    # cube values are printed as 0.12345E-01 (mantissa 0.1-1, 5 digits): rounding <= 5e-5 relative
    err = np.abs(cube.total - rho)
    bound = 5.001e-5 * np.abs(rho) + 1e-12
    log(
        f"  cube (read_cube) vs filplot: max|diff| {err.max():.2e} e/A^3, max relative "
        f"{(err / np.abs(rho)).max():.2e} (cube rounding bound 5e-5); cube atom at frac "
        f"{cube.atoms.get_scaled_positions(wrap=False)[0].round(6).tolist()} for input "
        f"{atoms.get_scaled_positions(wrap=False)[0].round(6).tolist()}"
    )
    if not np.all(err <= bound):
        raise RuntimeError(f"{name}: cube and filplot disagree beyond rounding -> grid convention problem")

    volume = atoms.get_volume()
    nel = rho.mean() * volume
    stats = dict(
        name=name,
        t_pw=t_pw,
        t_pp=t_pp,
        nel=nel,
        nel_cube=cube.electrons(),
        min=rho.min(),
        max=rho.max(),
        mean=rho.mean(),
        shape=rho.shape,
        dmin=dmin,
        disp=disp,
        **info,
    )
    log(
        f"  electrons {nel:.6f} (cube {stats['nel_cube']:.6f}); rho min {rho.min():.5f} max "
        f"{rho.max():.5f} mean {rho.mean():.6f} e/A^3; {(rho < 0).sum()} negative points"
    )
    if abs(nel - N_VALENCE) > 1e-3:
        raise RuntimeError(f"{name}: density integrates to {nel}, expected {N_VALENCE}")
    if name == "perfect":
        check_perfect_symmetry(rho)

    t1 = time.perf_counter()
    ase.io.write(outdir / "POSCAR", atoms, format="vasp", direct=True)
    write_chgcar(
        chgcar, atoms, rho, title=f"Si8 {name} QE {info['version']} PBE {PSEUDO} ecutwfc {ECUTWFC:g} Ry valence density"
    )
    data = read_chgcar(chgcar)
    diff = np.abs(data.total - rho).max() / np.abs(rho).max()
    back = ase.io.read(outdir / "POSCAR", format="vasp")
    pos_diff = np.abs(back.get_scaled_positions(wrap=False) - atoms.get_scaled_positions(wrap=False)).max()
    log(
        f"  wrote {chgcar} ({chgcar.stat().st_size / 1e6:.2f} MB) and POSCAR in "
        f"{time.perf_counter() - t1:.1f} s; read back: max|diff|/max|rho| {diff:.1e}, electrons "
        f"{data.electrons():.6f}, POSCAR max frac diff {pos_diff:.1e}"
    )
    if data.shape != rho.shape or not diff < 1e-9 or abs(data.electrons() - N_VALENCE) > 1e-3:
        raise RuntimeError(f"{chgcar}: read-back check failed")
    if not np.allclose(data.atoms.cell[:], atoms.cell[:], atol=1e-10) or pos_diff > 1e-10:
        raise RuntimeError(f"{chgcar}: structure read back differs")
    (work / "rho.filplot").unlink()
    if not keep_scratch:
        shutil.rmtree(work / scratch, ignore_errors=True)
    return stats


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "names", nargs="*", metavar="NAME", help=f"structures to make (default all: {', '.join(STRUCTURES)})"
    )
    parser.add_argument(
        "-o", "--outdir", type=Path, default=Path("/tmp/qe_si8"), help="output folder (default /tmp/qe_si8)"
    )
    parser.add_argument("--force", action="store_true", help="recompute existing CHGCAR.gz files")
    parser.add_argument(
        "--keep-scratch",
        action="store_true",
        help="keep pw.x's outdir (wavefunctions, charge-density.dat) in <name>/qe/scratch",
    )
    args = parser.parse_args(argv)
    unknown = [n for n in args.names if n not in STRUCTURES]
    if unknown:
        parser.error(f"unknown structure(s) {unknown}; choose from {', '.join(STRUCTURES)}")
    for exe in ("pw.x", "pp.x"):
        if shutil.which(exe) is None:
            sys.exit(f"{exe} not found on PATH (Debian/Ubuntu: apt install quantum-espresso)")
    if not Path(PSEUDO_DIR, PSEUDO).is_file():
        sys.exit(f"pseudopotential {PSEUDO_DIR}/{PSEUDO} not found")
    log(f"ASE {ase.__version__}; output in {args.outdir}")
    t0 = time.perf_counter()
    rows = [
        r for r in (run(n, args.outdir, args.force, args.keep_scratch) for n in args.names or list(STRUCTURES)) if r
    ]
    if rows:
        log(f"\n{rows[0]['version']}, MD5 of {PSEUDO}: {rows[0]['md5']}")
        log(
            f"{'name':10s} {'grid':>10s} {'iter':>4s} {'nk':>3s} {'E (Ry)':>14s} {'E_F (eV)':>8s} "
            f"{'electrons':>10s} {'min':>8s} {'max':>8s} {'mean':>9s} {'pw.x s':>7s} {'pp.x s':>6s}"
        )
        for r in rows:
            log(
                f"{r['name']:10s} {'x'.join(map(str, r['shape'])):>10s} {r['iters']:4d} {r['nks']:3d} "
                f"{r['energy']:14.8f} {r['fermi']:8.4f} {r['nel']:10.6f} {r['min']:8.5f} {r['max']:8.5f} "
                f"{r['mean']:9.6f} {r['t_pw']:7.1f} {r['t_pp']:6.1f}"
            )
    log(f"total {time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    main()
