"""Does a predicted density make pw.x converge in fewer SCF iterations? (Quantum ESPRESSO, Si8)

Train on ONE structure, predict new ones, and run each SCF twice with identical settings:

    default  pw.x from its default start (startingpot = 'atomic': overlapping atomic densities)
    warm     pw.x input + electron_maxstep = 0   (writes the save folder: pw.x's G-vectors)
             dp-charge predict model.pb POSCAR --qe-save OUTDIR/si8.save --threads 1
             pw.x input + startingpot = 'file'

Settings (both runs): pw.x 6.7 (Debian package), one core (OMP_NUM_THREADS=1, no MPI), 8-atom
cubic diamond Si (a = 5.43 A), Si.pbe-rrkj.UPF, ecutwfc 30 / ecutrho 120 Ry, 4x4x4 k-points,
Gaussian smearing 0.002 Ry (the vacancy has states in the gap), conv_thr 1e-8 Ry, everything else
pw.x's default (startingwfc 'atomic+random', Broyden mixing 0.7).

Steps:
 1. train structure: rattled 0.1 A (seed 11); its pw.x density (read from charge-density.dat with
    deepmd_charge.io.qe, written as a CHGCAR) -> dp-charge convert -> dp train (3000 steps, the
    README's input: se_e2_a sel [40, 0], rcut 5, fitting "charge", start_lr 5e-3) -> dp freeze;
 2. test structures, none seen in training (table below), each run 'default' and 'warm';
 3. also starts pw.x from the converged density itself (the ceiling of a perfect prediction);
 4. reports iterations, wall and CPU time of pw.x, of the pre-run and of the prediction (the whole
    `dp-charge predict` process: Python + TensorFlow start-up, model load, grid, FFT, write), the
    converged total energy, and how far each start is from the converged density (NMAE on pw.x's
    grid). On a loaded machine wall times mean little: CPU times and iterations are the measure.

Usage:
    python benchmarks/scf_warm_start.py [--workdir /tmp/scf_bench] [--steps 3000] [--only NAME ...]
    python benchmarks/scf_warm_start.py --curve rattle_0.10 [--fractions 0.1 0.25 0.5]   # after a main run

Needs pw.x and /usr/share/espresso/pseudo/Si.pbe-rrkj.UPF (Debian/Ubuntu:
``apt-get install quantum-espresso quantum-espresso-data``). Wall times depend on the machine's
load; iteration counts do not (pw.x's random wavefunction start uses a fixed seed).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ase.build import bulk  # noqa: E402  (after the path set-up above)
from ase.io.espresso import write_espresso_in  # noqa: E402
from ase.units import Ry  # noqa: E402

PSEUDO_DIR = "/usr/share/espresso/pseudo"
PSEUDO = "Si.pbe-rrkj.UPF"
A = 5.43
TRAIN = ("rattled 0.10 A", 0.10, 11, None, None)
# name -> (description, rattle stdev, seed, strain (x, y, z factors), vacancy index)
TESTS = {
    "rattle_0.05": ("rattled 0.05 A", 0.05, 21, None, None),
    "rattle_0.10": ("rattled 0.10 A", 0.10, 22, None, None),
    "rattle_0.15": ("rattled 0.15 A", 0.15, 23, None, None),
    "rattle_0.20": ("rattled 0.20 A", 0.20, 24, None, None),
    "strain": ("strain +2 % x, -1 % z, rattled 0.05 A", 0.05, 25, (1.02, 1.0, 0.99), None),
    "vacancy": ("Si7: one atom removed, rattled 0.05 A", 0.05, 26, None, 0),
}
USER_INPUT = {
    "model": {
        "type_map": ["Si", "X"],
        "descriptor": {"type": "se_e2_a", "sel": [40, 0], "rcut": 5.0, "seed": 1},
        "fitting_net": {"type": "charge", "seed": 1},
    },
    "learning_rate": {"type": "exp", "start_lr": 0.005, "stop_lr": 1e-5, "smooth": True},
    "training": {"training_data": {"systems": "data"}, "numb_steps": 3000, "seed": 1, "disp_freq": 500},
}
ENV1 = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
PYENV = dict(
    os.environ,
    PYTHONPATH=os.pathsep.join([str(ROOT)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]),
    TF_CPP_MIN_LOG_LEVEL="2",
)


def log(*a):
    print(*a, flush=True)


def make_atoms(spec):
    _, stdev, seed, strain, vacancy = spec
    atoms = bulk("Si", "diamond", a=A, cubic=True)
    if strain:
        atoms.set_cell(atoms.cell[:] * np.array(strain)[:, None], scale_atoms=True)
    if stdev:
        atoms.rattle(stdev=stdev, seed=seed)
    if vacancy is not None:
        del atoms[vacancy]
    return atoms


def pw_input(atoms, **electrons) -> str:
    """pw.x input of these settings for `atoms`; `electrons` adds to &ELECTRONS (startingpot, ...)."""
    text = io.StringIO()
    write_espresso_in(
        text,
        atoms,
        input_data={
            "control": {"calculation": "scf", "prefix": "si8", "outdir": "./out", "pseudo_dir": PSEUDO_DIR},
            "system": {
                "ecutwfc": 30,
                "ecutrho": 120,
                "occupations": "smearing",
                "smearing": "gaussian",
                "degauss": 0.002,
            },
            "electrons": {"conv_thr": 1.0e-8, **electrons},
        },
        pseudopotentials={"Si": PSEUDO},
        kpts=(4, 4, 4),
    )
    return text.getvalue()


def pw(workdir: Path, stem: str, text: str, allow_unconverged=False) -> dict:
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / f"{stem}.in").write_text(text)
    t0 = time.perf_counter()
    with open(workdir / f"{stem}.in") as fin, open(workdir / f"{stem}.out", "w") as fout:
        rc = subprocess.run(
            ["pw.x"], check=False, stdin=fin, stdout=fout, stderr=subprocess.STDOUT, cwd=workdir, env=ENV1
        ).returncode
    wall = time.perf_counter() - t0
    out = (workdir / f"{stem}.out").read_text()
    if "JOB DONE" not in out or (rc != 0 and not allow_unconverged):
        sys.exit(f"pw.x failed (exit {rc}): {workdir / (stem + '.out')}")
    it = re.search(r"convergence has been achieved in\s+(\d+) iterations", out)
    en = re.search(r"!\s+total energy\s+=\s+(\S+) Ry", out)
    cpu = re.search(r"PWSCF\s+:\s+(?:(\d+)m\s*)?([\d.]+)s CPU", out)
    return dict(
        wall=wall,
        iterations=int(it.group(1)) if it else None,
        energy_ry=float(en.group(1)) if en else None,
        cpu=(60 * int(cpu.group(1) or 0) + float(cpu.group(2))) if cpu else None,
        read_from_file="The initial density is read from file" in out,
    )


def save_density(save):
    """The total density of a pw.x save folder on its FFT grid, e/A^3."""
    from deepmd_charge.io.qe import read_save, read_save_density

    s = read_save(save)
    return read_save_density(s).to_grid(s.fft_grid)[0], s


def density_file_grid(path, save):
    from deepmd_charge.io.qe import read_charge_density

    return read_charge_density(path).to_grid(save.fft_grid)[0]


def nmae(a, ref):
    return float(np.abs(a - ref).sum() / np.abs(ref).sum())


def train(work: Path, steps: int) -> Path:
    from deepmd_charge.io.chgcar import write_chgcar

    model = work / "model.pb"
    if model.exists():
        log(f"train: {model} exists, reused")
        return model
    atoms = make_atoms(TRAIN)
    r = pw(work / "dft", "pw", pw_input(atoms))
    rho, save = save_density(work / "dft" / "out" / "si8.save")
    write_chgcar(work / "CHGCAR.gz", save.atoms, rho, title="Si8 rattled 0.1 A, pw.x 4x4x4 k")
    log(
        f"train structure: pw.x {r['iterations']} iterations, {r['wall']:.1f} s; grid {rho.shape}, "
        f"{rho.mean() * save.atoms.get_volume():.6f} electrons"
    )
    cmd = [sys.executable, "-m", "deepmd_charge.cli", "convert", "CHGCAR.gz", "-o", "data", "--seed", "1"]
    subprocess.run(cmd, cwd=work, env=PYENV, check=True, capture_output=True)
    inp = json.loads(json.dumps(USER_INPUT))
    inp["training"]["numb_steps"] = steps
    (work / "input.json").write_text(json.dumps(inp, indent=2))
    t0 = time.perf_counter()
    subprocess.run(["dp", "--tf", "train", "input.json"], cwd=work, env=PYENV, check=True, capture_output=True)
    log(f"dp train {steps} steps: {time.perf_counter() - t0:.0f} s (2 threads)")
    subprocess.run(["dp", "--tf", "freeze", "-o", "model.pb"], cwd=work, env=PYENV, check=True, capture_output=True)
    return model


def run_case(name, spec, work: Path, model: Path) -> dict:
    import ase.io

    case = work / name
    if case.exists():
        shutil.rmtree(case)
    atoms = make_atoms(spec)
    case.mkdir(parents=True)
    ase.io.write(case / "POSCAR", atoms, format="vasp", direct=True)
    nat = len(atoms)
    default = pw(case / "default", "pw", pw_input(atoms))
    pre = pw(case / "warm", "pre", pw_input(atoms, electron_maxstep=0), allow_unconverged=True)
    t0, c0 = time.perf_counter(), _children_cpu()
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "deepmd_charge.cli",
            "predict",
            str(model),
            str(case / "POSCAR"),
            "--qe-save",
            str(case / "warm" / "out" / "si8.save"),
            "--threads",
            "1",
            "--quiet",
        ],
        env=PYENV,
        capture_output=True,
        text=True,
        check=False,
    )
    predict_wall, predict_cpu = time.perf_counter() - t0, _children_cpu() - c0
    if proc.returncode:
        sys.exit(f"dp-charge predict failed: {proc.stdout}\n{proc.stderr}")
    inner = float(re.search(r"G-vectors, in ([\d.]+) s", proc.stdout).group(1))
    save_dir = case / "warm" / "out" / "si8.save"
    converged, save = save_density(case / "default" / "out" / "si8.save")
    start_pred = density_file_grid(save_dir / "charge-density.dat", save)
    start_atomic = density_file_grid(save_dir / "charge-density.dat.orig", save)
    warm = pw(case / "warm", "pw", pw_input(atoms, startingpot="file"))
    if not warm["read_from_file"]:
        sys.exit(f"{name}: pw.x did not read the density from file")
    # the ceiling: the same start from the converged density itself (a perfect prediction)
    pw(case / "exact", "pre", pw_input(atoms, electron_maxstep=0), allow_unconverged=True)
    shutil.copy(
        case / "default" / "out" / "si8.save" / "charge-density.dat",
        case / "exact" / "out" / "si8.save" / "charge-density.dat",
    )
    exact = pw(case / "exact", "pw", pw_input(atoms, startingpot="file"))
    row = dict(
        name=name,
        description=spec[0],
        atoms=nat,
        default=default,
        prerun=pre,
        warm=warm,
        exact=exact,
        predict_wall=predict_wall,
        predict_cpu=predict_cpu,
        predict_inner=inner,
        nmae_atomic=nmae(start_atomic, converged),
        nmae_pred=nmae(start_pred, converged),
        de_ev_per_atom=(warm["energy_ry"] - default["energy_ry"]) * Ry / nat,
    )
    row["total_warm"] = pre["wall"] + predict_wall + warm["wall"]
    row["total_warm_cpu"] = pre["cpu"] + predict_cpu + warm["cpu"]
    log(
        f"{name}: default {default['iterations']} it {default['wall']:.1f} s ({default['cpu']:.1f} s CPU) | warm {warm['iterations']} it "
        f"{warm['wall']:.1f} s ({warm['cpu']:.1f} s CPU) + pre-run {pre['wall']:.1f} s + predict {predict_wall:.1f} s "
        f"({predict_cpu:.1f} s CPU; {inner:.1f} s in-process) | from the converged density {exact['iterations']} it | start NMAE atomic "
        f"{100 * row['nmae_atomic']:.2f}% predicted {100 * row['nmae_pred']:.2f}% | dE {row['de_ev_per_atom']:.2e} eV/atom"
    )
    return row


def accuracy_curve(name, work: Path, model: Path, fractions) -> list:
    """How good must a start be? Iterations from rho_conv + f (rho_pred - rho_conv) for each f
    (f = 1: the prediction, f = 0: the converged density), on the structure `name` of a finished
    main run (its default/ folder holds the converged density)."""
    from deepmd_charge import DeepCharge
    from deepmd_charge.io.qe import read_charge_density, write_charge_density

    case = work / name
    conv_file = case / "default" / "out" / "si8.save" / "charge-density.dat"
    if not conv_file.is_file():
        sys.exit(f"{conv_file} missing: run the main benchmark for {name} first")
    atoms = make_atoms(TESTS[name])
    conv_grid, save = save_density(case / "default" / "out" / "si8.save")
    conv = read_charge_density(conv_file)
    pred = DeepCharge(model, threads=1).predict(save.atoms, grid=save.fft_grid)
    pred *= save.nelec / (pred.mean() * save.atoms.get_volume())
    pred_g = conv.from_grid([pred]).rho[0]
    rows = []
    for f in fractions:
        run_dir = case / f"curve_{f:g}"
        if run_dir.exists():
            shutil.rmtree(run_dir)
        pw(run_dir, "pre", pw_input(atoms, electron_maxstep=0), allow_unconverged=True)
        start = replace(conv, rho=[conv.rho[0] + f * (pred_g - conv.rho[0])])
        write_charge_density(run_dir / "out" / "si8.save" / "charge-density.dat", start)
        r = pw(run_dir, "pw", pw_input(atoms, startingpot="file"))
        err = nmae(start.to_grid(save.fft_grid)[0], conv_grid)
        rows.append((f, err, r["iterations"], r["cpu"]))
        log(
            f"{name}: start = converged + {f:g} x (prediction - converged): NMAE {100 * err:.3f}%, {r['iterations']} "
            f"iterations, {r['cpu']:.1f} s CPU"
        )
    return rows


def _children_cpu() -> float:
    import resource

    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def table(rows):
    lines = [
        "| structure | iterations: default, predicted, converged start | default pw.x wall (CPU) s | warm: pre-run + "
        "predict + pw.x = total, wall (CPU) s | start NMAE atomic / predicted | E warm - E default (eV/atom) |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['description']} | {r['default']['iterations']}, {r['warm']['iterations']}, "
            f"{r['exact']['iterations']} | {r['default']['wall']:.0f} ({r['default']['cpu']:.0f}) | "
            f"{r['prerun']['wall']:.0f} + {r['predict_wall']:.0f} + {r['warm']['wall']:.0f} = {r['total_warm']:.0f} "
            f"({r['total_warm_cpu']:.0f}) | "
            f"{100 * r['nmae_atomic']:.1f}% / {100 * r['nmae_pred']:.2f}% | {r['de_ev_per_atom']:+.1e} |"
        )
    it_d = np.array([r["default"]["iterations"] for r in rows], float)
    it_w = np.array([r["warm"]["iterations"] for r in rows], float)
    it_x = np.array([r["exact"]["iterations"] for r in rows], float)
    t_d = sum(r["default"]["wall"] for r in rows)
    t_w = sum(r["total_warm"] for r in rows)
    scf_w = sum(r["warm"]["wall"] for r in rows)
    c_d = sum(r["default"]["cpu"] for r in rows)
    c_w = sum(r["total_warm_cpu"] for r in rows)
    lines.append("")
    lines.append(
        f"iterations: {it_d.mean():.2f} -> {it_w.mean():.2f} on average, {100 * (1 - it_w / it_d).mean():.0f}% fewer "
        f"(mean of per-structure savings; from the converged density {it_x.mean():.2f}, "
        f"{100 * (1 - it_x / it_d).mean():.0f}% fewer); wall time of all runs: default {t_d:.0f} s, warm {t_w:.0f} s in all "
        f"({100 * (1 - t_w / t_d):+.0f}% less; pw.x SCF alone {scf_w:.0f} s, {100 * (1 - scf_w / t_d):.0f}% less); "
        f"CPU time: default {c_d:.0f} s, warm {c_w:.0f} s in all ({100 * (1 - c_w / c_d):+.0f}% less); "
        f"largest |dE| {max(abs(r['de_ev_per_atom']) for r in rows):.1e} eV/atom"
    )
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/scf_bench"))
    parser.add_argument("--steps", type=int, default=3000, help="dp train steps (default 3000)")
    parser.add_argument("--only", nargs="+", choices=list(TESTS), help="run only these test structures")
    parser.add_argument(
        "--curve", choices=list(TESTS), help="after a main run: iterations against the start's error on this structure"
    )
    parser.add_argument(
        "--fractions", type=float, nargs="+", default=[0.1, 0.25, 0.5], help="for --curve (default 0.1 0.25 0.5)"
    )
    args = parser.parse_args()
    for exe in ("pw.x", "dp"):
        if shutil.which(exe) is None:
            sys.exit(f"{exe} not found on PATH")
    if not Path(PSEUDO_DIR, PSEUDO).is_file():
        sys.exit(f"{PSEUDO_DIR}/{PSEUDO} not found (apt-get install quantum-espresso-data)")
    args.workdir.mkdir(parents=True, exist_ok=True)
    model = train(args.workdir, args.steps)
    if args.curve:
        rows = accuracy_curve(args.curve, args.workdir, model, args.fractions)
        log("\n| start | NMAE of the start | iterations | pw.x CPU (s) |\n|---|---|---|---|")
        for f, err, it, cpu in rows:
            log(f"| converged + {f:g} x (prediction - converged) | {100 * err:.2f}% | {it} | {cpu:.1f} |")
        return
    rows = [run_case(n, TESTS[n], args.workdir, model) for n in (args.only or TESTS)]
    (args.workdir / "results.json").write_text(json.dumps(rows, indent=2))
    log("\n" + table(rows))


if __name__ == "__main__":
    main()
