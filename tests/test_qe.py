"""Quantum ESPRESSO save folders: charge-density.dat read/write, FFT grid <-> G-vectors, and
`dp-charge predict --qe-save` on real pw.x runs (a 2-atom Si cell at a low cutoff, under a second
each), which are skipped with a reason where pw.x is not installed."""

import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from ase.units import Bohr

from conftest import ROOT, run
from deepmd_charge.errors import InputError
from deepmd_charge.io.qe import ChargeDensityG, read_charge_density, read_save, read_save_density, write_charge_density

MODEL = ROOT / "examples" / "si64-paper" / "model.pb"
PSEUDO_DIR = "/usr/share/espresso/pseudo"
HAVE_QE = bool(shutil.which("pw.x") and shutil.which("pp.x") and os.path.isfile(f"{PSEUDO_DIR}/Si.pbe-rrkj.UPF"))
needs_qe = pytest.mark.skipif(
    not HAVE_QE,
    reason="Quantum ESPRESSO (pw.x, pp.x, Si.pbe-rrkj.UPF) is not installed: apt-get install quantum-espresso quantum-espresso-data",
)

CELL = np.array([[0.0, 2.715, 2.715], [2.715, 0.0, 2.715], [2.715, 2.715, 0.0]])
FRAC = np.array([[0.0, 0.0, 0.0], [0.27, 0.25, 0.24]])


# ---- without pw.x: the file format and the transforms ------------------------------------------------
def _sphere(b, gmax):
    r = np.arange(-6, 7)
    m = np.stack(np.meshgrid(r, r, r, indexing="ij"), -1).reshape(-1, 3)
    g = np.linalg.norm(m @ b, axis=1)
    m = m[g <= gmax]
    return m[np.argsort(np.linalg.norm(m @ b, axis=1), kind="stable")]


def _synthetic(gamma_only=False):
    b = 2 * np.pi * np.linalg.inv(CELL / Bohr).T
    miller = _sphere(b, 2.2)
    if gamma_only:  # one of each (G, -G) pair, as pw.x stores them with K_POINTS gamma
        keep = [i for i, m in enumerate(miller) if tuple(m) >= tuple(-m)]
        miller = miller[keep]
    rng = np.random.default_rng(0)
    x = np.linspace(0, 1, 16, endpoint=False)
    X, Y, _ = np.meshgrid(x, x, x, indexing="ij")
    rho = 0.2 + 0.05 * np.cos(2 * np.pi * (X + Y)) + 0.02 * rng.normal(size=X.shape)  # e/A^3, not band-limited
    cd = ChargeDensityG(gamma_only=gamma_only, b=b, miller=miller, rho=[np.zeros(len(miller), complex)]).from_grid(
        [rho]
    )
    return cd, rho


@pytest.mark.parametrize("gamma_only", [False, True])
def test_file_round_trip_and_grid_identity(tmp_path, gamma_only):
    cd, rho = _synthetic(gamma_only)
    path = tmp_path / "charge-density.dat"
    write_charge_density(path, cd)
    back = read_charge_density(path)
    assert back.gamma_only == gamma_only and back.nspin == 1 and np.array_equal(back.miller, cd.miller)
    assert np.array_equal(back.rho[0], cd.rho[0]) and np.array_equal(back.b, cd.b)
    grid = back.to_grid((16, 16, 16))[0]
    # a low-pass filter of rho: the same mean (electron count), not the same values
    assert grid.mean() == pytest.approx(rho.mean(), rel=1e-12)
    assert back.electrons() == pytest.approx(rho.mean() * abs(np.linalg.det(CELL)), rel=1e-12)
    assert 1e-4 < np.abs(grid - rho).max()
    again = back.from_grid([grid])  # band-limited now: G -> r -> G is the identity
    assert np.abs(again.rho[0] - back.rho[0]).max() < 1e-15
    assert np.allclose(
        back.to_grid((20, 18, 16))[0].mean(), grid.mean(), rtol=1e-12
    )  # any grid that holds the G-vectors


def test_gamma_only_file_gives_the_full_file_density():
    full, _ = _synthetic(False)
    half, _ = _synthetic(True)
    assert len(half.miller) == (len(full.miller) + 1) // 2
    assert np.abs(full.to_grid((16, 16, 16))[0] - half.to_grid((16, 16, 16))[0]).max() < 1e-14


def test_bad_density_files(tmp_path):
    cd, _ = _synthetic()
    path = tmp_path / "charge-density.dat"
    write_charge_density(path, cd)
    raw = path.read_bytes()
    (tmp_path / "cut.dat").write_bytes(raw[:-100])
    with pytest.raises(InputError, match="truncated or corrupt: record 4"):
        read_charge_density(tmp_path / "cut.dat")
    (tmp_path / "junk.dat").write_bytes(b"hello world, not fortran")
    with pytest.raises(InputError, match="not a pw.x charge-density.dat"):
        read_charge_density(tmp_path / "junk.dat")
    (tmp_path / "h5").mkdir()
    (tmp_path / "h5" / "charge-density.hdf5").write_bytes(b"\x89HDF")
    with pytest.raises(InputError, match="built with HDF5"):
        read_charge_density(tmp_path / "h5" / "charge-density.dat")
    with pytest.raises(InputError, match="cannot hold its G-vectors"):
        cd.to_grid((4, 4, 4))
    with pytest.raises(InputError, match="no such pw.x save folder"):
        read_save(tmp_path / "nope.save")


# ---- real pw.x runs ------------------------------------------------------------------------------
def _pw_input(prefix, kpoints="automatic\n1 1 1 0 0 0", extra_system="", extra_electrons="", frac=FRAC):
    cell = "\n".join(" ".join(f"{x:.10f}" for x in v) for v in CELL)
    pos = "\n".join("Si " + " ".join(f"{x:.10f}" for x in p) for p in frac)
    return f"""&CONTROL
  prefix = '{prefix}'
  outdir = './out'
  pseudo_dir = '{PSEUDO_DIR}'
/
&SYSTEM
  ibrav = 0, nat = 2, ntyp = 1, ecutwfc = 12
{extra_system}/
&ELECTRONS
  conv_thr = 1e-10
{extra_electrons}/
ATOMIC_SPECIES
Si 28.085 Si.pbe-rrkj.UPF
CELL_PARAMETERS angstrom
{cell}
ATOMIC_POSITIONS crystal
{pos}
K_POINTS {kpoints}
"""


def _run_qe(exe, work, stem, text, ok_codes=(0,)):
    (work / f"{stem}.in").write_text(text)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    with open(work / f"{stem}.in") as fin:
        proc = subprocess.run([exe], check=False, stdin=fin, capture_output=True, text=True, cwd=work, env=env)
    (work / f"{stem}.out").write_text(proc.stdout)
    assert proc.returncode in ok_codes and "JOB DONE" in proc.stdout, proc.stdout[-2000:]
    return proc.stdout


def _energy(out):
    return float(out.split("!    total energy")[1].split("=")[1].split()[0])


@pytest.fixture(scope="module")
def qe(tmp_path_factory):
    if not HAVE_QE:
        pytest.skip("Quantum ESPRESSO is not installed")
    work = tmp_path_factory.mktemp("qe")
    out = {"work": work}
    out["full"] = _run_qe("pw.x", work, "full", _pw_input("full"))
    out["gamma"] = _run_qe("pw.x", work, "gamma", _pw_input("gamma", kpoints="gamma"))
    _run_qe(
        "pp.x",
        work,
        "pp",
        "&INPUTPP\n  prefix = 'full'\n  outdir = './out'\n  filplot = 'rho.filplot'\n  plot_num = 0\n/\n",
    )
    # a save folder for warm starts (as a user makes one: the same input, electron_maxstep = 0), and a spin-polarised one
    _run_qe("pw.x", work, "pre", _pw_input("start", extra_electrons="  electron_maxstep = 0\n"), ok_codes=(0, 2))
    _run_qe(
        "pw.x",
        work,
        "spin",
        _pw_input(
            "spin",
            extra_system="  nspin = 2, occupations = 'smearing', degauss = 0.02, starting_magnetization(1) = 0.5\n",
            extra_electrons="  electron_maxstep = 0\n",
        ),
        ok_codes=(0, 2),
    )
    (work / "POSCAR").write_text(
        "Si2\n1.0\n"
        + "\n".join(" ".join(map(str, v)) for v in CELL)
        + "\nSi\n2\nDirect\n"
        + "\n".join(" ".join(map(str, p)) for p in FRAC)
        + "\n"
    )
    return out


def _filplot(path):
    lines = path.read_text().splitlines()
    n1, n2, n3, _, _, _, nat, ntyp = (int(x) for x in lines[1].split()[:8])
    start = 7 + ntyp + nat
    return np.array(" ".join(lines[start:]).split(), dtype=float).reshape((n1, n2, n3), order="F")


@needs_qe
def test_pw_density_file_matches_pp_x_and_round_trips(qe, tmp_path):
    save = read_save(qe["work"] / "out" / "full.save")
    assert save.nspin == 1 and save.nelec == 8 and not save.gamma_only and save.fft_grid == (18, 18, 18)
    assert save.atoms.get_chemical_symbols() == ["Si", "Si"]
    assert np.allclose(save.atoms.cell[:], CELL, atol=1e-8) and np.allclose(
        save.atoms.get_scaled_positions(), FRAC, atol=1e-8
    )
    cd = read_save_density(save)
    assert cd.electrons() == pytest.approx(8.0, abs=1e-6)  # rho(G=0) * Omega, Omega from the file's reciprocal vectors
    rho = cd.to_grid(save.fft_grid)[0]
    pp = _filplot(qe["work"] / "rho.filplot") / Bohr**3  # pp.x: e/bohr^3, x fastest, 10 significant digits
    assert np.abs(rho - pp).max() < 1e-9 * np.abs(pp).max() + 1e-12
    assert rho.mean() * save.atoms.get_volume() == pytest.approx(8.0, abs=1e-6)
    back = cd.from_grid([rho])
    assert np.abs(back.rho[0] - cd.rho[0]).max() < 1e-15
    write_charge_density(tmp_path / "c.dat", back)
    assert np.array_equal(read_charge_density(tmp_path / "c.dat").miller, cd.miller)
    write_charge_density(tmp_path / "same.dat", cd)
    assert (tmp_path / "same.dat").read_bytes() == save.density_file.read_bytes()  # byte for byte what pw.x wrote


@needs_qe
def test_pw_gamma_tricks_file_gives_the_same_density(qe):
    full, gamma = (read_save(qe["work"] / "out" / f"{p}.save") for p in ("full", "gamma"))
    a, b = (read_save_density(s) for s in (full, gamma))
    assert gamma.gamma_only and len(b.miller) == (len(a.miller) + 1) // 2
    ra, rb = a.to_grid(full.fft_grid)[0], b.to_grid(gamma.fft_grid)[0]
    assert np.abs(ra - rb).max() < 1e-5 * ra.max()  # two converged SCF runs of the same Gamma-point problem


@pytest.fixture(scope="module")
def shipped():
    from deepmd_charge import DeepCharge

    return DeepCharge(MODEL, threads=1)


@needs_qe
def test_predict_into_save_then_pw_starts_from_it(qe, shipped):
    from deepmd_charge.scf_start import predict_into_qe_save

    work = qe["work"]
    save = work / "out" / "start.save"
    original = (save / "charge-density.dat").read_bytes()
    out = run(
        [
            sys.executable,
            "-m",
            "deepmd_charge.cli",
            "predict",
            str(MODEL),
            str(work / "POSCAR"),
            "--qe-save",
            str(save),
            "--quiet",
            "--threads",
            "1",
        ]
    )
    assert "18x18x18" in out.stdout and "normalized to 8.000000" in out.stdout
    assert (save / "charge-density.dat.orig").read_bytes() == original
    cd = read_save_density(read_save(save))
    assert cd.electrons() == pytest.approx(8.0, rel=1e-12)
    # pw.x will start from the model's density on its grid, up to the G sphere's low-pass filter
    atoms = read_save(save).atoms
    raw = shipped.predict(atoms, grid=(18, 18, 18))
    count = raw.mean() * atoms.get_volume()
    pred = raw * 8.0 / count
    assert np.abs(cd.from_grid([pred]).rho[0] - cd.rho[0]).max() < 1e-12 * np.abs(cd.rho[0]).max()
    start = cd.to_grid((18, 18, 18))[0]
    assert 0 < np.abs(start - pred).sum() / np.abs(pred).sum() < 0.02
    # a second prediction keeps the first original; --electrons sets the count
    r = predict_into_qe_save([shipped], atoms, save, electrons=8.5)
    assert r.electrons == pytest.approx(8.5, rel=1e-12) and r.electrons_predicted == pytest.approx(count, rel=1e-9)
    assert (save / "charge-density.dat.orig").read_bytes() == original
    assert read_save_density(read_save(save)).electrons() == pytest.approx(8.5, rel=1e-12)
    predict_into_qe_save([shipped], atoms, save)
    warm = _run_qe("pw.x", work, "warm", _pw_input("start", extra_electrons="  startingpot = 'file'\n"))
    assert "The initial density is read from file" in warm and "renormalised" not in warm  # already 8 electrons
    assert _energy(warm) == pytest.approx(_energy(qe["full"]), abs=1e-7)  # Ry: the same ground state


def _poscar(path, frac):
    path.write_text(
        "Si\n1.0\n"
        + "\n".join(" ".join(map(str, v)) for v in CELL)
        + f"\nSi\n{len(frac)}\nDirect\n"
        + "\n".join(" ".join(map(str, p)) for p in frac)
        + "\n"
    )
    return path


@needs_qe
@pytest.mark.parametrize(
    "case, message",
    [
        (
            "moved",
            "is a pw.x run of another structure than POSCAR: atom 2 (Si) sits 0.0768 A from where the structure has it",
        ),
        ("fewer", "another structure than POSCAR: 2 atoms, the structure 1"),
        ("spin", "spin-polarised run (nspin = 2): give a magnetisation model too"),
        ("missing", "no such pw.x save folder"),
    ],
)
def test_qe_save_of_another_run_is_refused(qe, shipped, tmp_path, case, message):
    import ase.io

    from deepmd_charge.scf_start import predict_into_qe_save

    save = qe["work"] / "out" / ("spin.save" if case == "spin" else "start.save")
    frac = {"moved": FRAC + [[0, 0, 0], [0.02, 0, 0]], "fewer": FRAC[:1]}.get(case, FRAC)
    atoms = ase.io.read(_poscar(tmp_path / "POSCAR", frac))
    if case == "missing":
        save = tmp_path / "none.save"
    before = (save / "charge-density.dat").read_bytes() if save.exists() else None
    with pytest.raises(InputError, match=message.replace("(", r"\(").replace(")", r"\)")):
        predict_into_qe_save([shipped], atoms, save, "POSCAR")
    if before is not None:
        assert (save / "charge-density.dat").read_bytes() == before


@needs_qe
def test_qe_save_mistake_on_the_command_line(qe, tmp_path):
    save = qe["work"] / "out" / "start.save"
    before = (save / "charge-density.dat").read_bytes()
    poscar = _poscar(tmp_path / "POSCAR", FRAC + [[0, 0, 0], [0.02, 0, 0]])
    proc = run(
        [
            sys.executable,
            "-m",
            "deepmd_charge.cli",
            "predict",
            str(MODEL),
            str(poscar),
            "--qe-save",
            str(save),
            "--quiet",
        ],
        check=False,
    )
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("dp-charge predict: error: ") and "another structure" in lines[0], (
        proc.stderr
    )
    assert (save / "charge-density.dat").read_bytes() == before


def test_save_xml_elements_and_spin(tmp_path):
    """data-file-schema.xml: structure in bohr -> Angstrom, elements from the pseudopotential copy
    (UPF), else from its file name or the label; lsda -> nspin 2."""
    save = tmp_path / "x.save"
    save.mkdir()
    (save / "Q1.upf").write_text('<UPF version="2.0.1">\n<PP_HEADER\n   element="Ge"\n/>\n')
    atoms = "\n".join(
        f'<atom name="{n}" index="{i + 1}">{" ".join(str(x / Bohr) for x in p)}</atom>'
        for i, (n, p) in enumerate(zip(["Q1", "Si_a"], FRAC @ CELL))
    )
    cell = "\n".join(f"<a{i + 1}>{' '.join(str(x / Bohr) for x in v)}</a{i + 1}>" for i, v in enumerate(CELL))
    (save / "data-file-schema.xml").write_text(f"""<?xml version="1.0"?>
<qes:espresso xmlns:qes="http://www.quantum-espresso.org/ns/qes/qes-1.0"><output>
<atomic_species ntyp="2"><species name="Q1"><pseudo_file>Q1.upf</pseudo_file></species>
<species name="Si_a"><pseudo_file>si_pbe_v1.uspp.F.UPF</pseudo_file></species></atomic_species>
<atomic_structure nat="2" alat="1.0"><atomic_positions>{atoms}</atomic_positions><cell>{cell}</cell></atomic_structure>
<basis_set><gamma_only>false</gamma_only><fft_grid nr1="18" nr2="20" nr3="24"></fft_grid></basis_set>
<magnetization><lsda>true</lsda><noncolin>false</noncolin></magnetization>
<band_structure><nelec>8.0</nelec></band_structure>
</output></qes:espresso>""")
    s = read_save(save)
    assert s.atoms.get_chemical_symbols() == ["Ge", "Si"]
    assert np.allclose(s.atoms.cell[:], CELL) and np.allclose(s.atoms.get_scaled_positions(), FRAC)
    assert s.fft_grid == (18, 20, 24) and s.nspin == 2 and s.nelec == 8.0 and not s.gamma_only
    with pytest.raises(InputError, match="charge-density.dat: no such file"):
        read_save_density(s)


@needs_qe
def test_spin_save_gets_total_and_magnetization(qe, shipped, tmp_path):
    """nspin = 2: the second model fills pw.x's second record (up - down), unscaled; the total is
    scaled to pw.x's count. (The density model stands in for a magnetisation model here.)"""
    from deepmd_charge.scf_start import predict_into_qe_save

    save = tmp_path / "spin.save"
    shutil.copytree(qe["work"] / "out" / "spin.save", save)
    atoms = read_save(save).atoms
    r = predict_into_qe_save([shipped, shipped], atoms, save)
    cd = read_save_density(read_save(save))
    assert cd.nspin == 2 and cd.electrons() == pytest.approx(8.0, rel=1e-12)
    assert r.magnetization == pytest.approx(r.electrons_predicted, rel=1e-12)
    mag = cd.to_grid((18, 18, 18))[1]
    assert mag.mean() * atoms.get_volume() == pytest.approx(r.electrons_predicted, rel=1e-9)
    with pytest.raises(InputError, match=r"not spin-polarised \(nspin = 1\): drop the magnetisation model"):
        predict_into_qe_save([shipped, shipped], atoms, qe["work"] / "out" / "start.save")
