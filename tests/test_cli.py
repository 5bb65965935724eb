"""End to end as a user runs it: dp-charge predict / test on a model made by convert, dp train, dp freeze."""

import json

import numpy as np
import pytest

from conftest import EXAMPLE_DFT, run
from deepmd_charge.grid import cartesian_points
from deepmd_charge.io.chgcar import read_chgcar, write_chgcar
from deepmd_charge.io.cube import read_cube


def test_predict_like_and_test(trained, tmp_path):
    model = trained["model"]
    ref = EXAMPLE_DFT / "rattled_b" / "CHGCAR.gz"
    out = run(
        [
            "dp-charge",
            "predict",
            str(model),
            str(EXAMPLE_DFT / "rattled_b" / "POSCAR"),
            "-o",
            str(tmp_path / "CHGCAR_pred"),
            "--like",
            str(ref),
            "--quiet",
        ]
    )
    assert "electrons:" in out.stdout
    pred = read_chgcar(tmp_path / "CHGCAR_pred")
    dft = read_chgcar(ref)
    assert pred.shape == dft.shape
    count = float(out.stdout.split("electrons:")[1].split()[0])  # the model's own count, printed with 6 decimals
    # a reference of the same atoms: renormalised to its electron count (VASP's NELECT for a VASP CHGCAR)
    assert pred.electrons() == pytest.approx(dft.electrons(), rel=1e-9)
    assert f"normalized to {dft.electrons():g} electrons (factor {dft.electrons() / count:.6f})" in out.stdout
    # this GPAW-made reference has no augmentation block: the user is told what VASP does with the result
    assert "has no PAW augmentation occupancies: VASP with PAW POTCARs discards it" in out.stdout
    raw = pred.total * count / pred.electrons()  # the model's density before the scaling, as `test` scores it
    nmae = np.abs(raw - dft.total).sum() / np.abs(dft.total).sum()
    assert nmae < 0.5  # a 300-step model, far better than zero density

    t = run(
        [
            "dp-charge",
            "test",
            str(model),
            str(ref),
            str(trained["dir"] / "data"),
            "--json",
            str(tmp_path / "m.json"),
            "--plot",
            str(tmp_path / "parity.png"),
            "--slice",
            str(tmp_path / "slice.png"),
            "--quiet",
        ]
    )
    metrics = json.loads((tmp_path / "m.json").read_text())
    grid = metrics["inputs"][0]
    assert grid["points"] == 48**3
    assert grid["nmae"] == pytest.approx(nmae, rel=1e-6)
    assert grid["electrons_ref"] == pytest.approx(32.0, abs=1e-3)
    assert metrics["inputs"][1]["points"] == 20000  # the npy training system: every ghost point
    for key in ("MAE", "RMSE", "NMAE", "R^2", "overall"):
        assert key in t.stdout
    assert (tmp_path / "parity.png").stat().st_size > 10_000
    assert (tmp_path / "slice.png").stat().st_size > 10_000


def test_predict_cube_and_spacing(trained, tmp_path):
    out = run(
        [
            "dp-charge",
            "predict",
            str(trained["model"]),
            str(EXAMPLE_DFT / "perfect" / "POSCAR"),
            "-o",
            str(tmp_path / "rho.cube"),
            "--spacing",
            "0.4",
            "--quiet",
            "--threads",
            "1",
        ]
    )
    vol = read_cube(tmp_path / "rho.cube")
    assert vol.shape == (15, 15, 15)  # 5.43/0.4 = 13.6 -> 15, the next 2-3-5 number
    count = float(out.stdout.split("electrons:")[1].split()[0])
    assert vol.electrons() == pytest.approx(count, rel=1e-4)


def test_like_vasp_reference_gives_augmentation_and_electron_count(trained, tmp_path):
    """A reference with augmentation occupancies and the same atoms: its block is copied verbatim
    after the predicted grid, and the count is the reference's unless --electrons says otherwise."""
    dft = read_chgcar(EXAMPLE_DFT / "rattled_b" / "CHGCAR.gz")
    aug = "".join(
        f"augmentation occupancies {a:3d}   3\n  0.1000000E+00 -0.2000000E-01  0.3000000E-02\n" for a in range(1, 9)
    )
    ref = tmp_path / "CHGCAR_ref"
    write_chgcar(ref, dft.atoms, [dft.total * 1.01], trailers=[aug])  # 32.32 electrons
    out = run(
        [
            "dp-charge",
            "predict",
            str(trained["model"]),
            str(EXAMPLE_DFT / "rattled_b" / "POSCAR"),
            "-o",
            str(tmp_path / "CHGCAR"),
            "--like",
            str(ref),
            "--quiet",
        ]
    )
    pred = read_chgcar(tmp_path / "CHGCAR")
    assert pred.trailers[0] == aug and pred.shape == dft.shape
    assert pred.electrons() == pytest.approx(32.32, rel=1e-6)
    assert "note:" not in out.stdout


def test_normalize(trained, tmp_path):
    run(
        [
            "dp-charge",
            "predict",
            str(trained["model"]),
            str(EXAMPLE_DFT / "perfect" / "POSCAR"),
            "-o",
            str(tmp_path / "CHGCAR"),
            "--grid",
            "12",
            "12",
            "12",
            "--normalize",
            "32",
            "--quiet",
        ]
    )
    assert read_chgcar(tmp_path / "CHGCAR").electrons() == pytest.approx(32.0, rel=1e-9)


@pytest.mark.parametrize(
    "args, message",
    [
        (["predict", "{model}", "{missing}", "-o", "{out}"], "no such file"),
        (["predict", "{model}", "{poscar}", "-o", "{out}", "--grid", "0", "4", "4"], "positive whole numbers"),
        (["predict", "{model}", "{poscar}", "-o", "{out}", "--spacing", "-1"], "must be a positive length"),
        (["predict", "{model}", "{water}", "-o", "{out}", "--grid", "4", "4", "4"], "does not know"),
        (["predict", "{junk}", "{poscar}", "-o", "{out}"], "not a frozen TensorFlow model"),
        (
            ["predict", "{model}", "{poscar}", "-o", "/nonexistent/dir/CHGCAR", "--grid", "4", "4", "4", "--quiet"],
            "does not exist",
        ),
        (["test", "{model}", "{tmp}"], "is a directory"),
        (["convert", "{junk}", "-o", "{tmp}/data"], "line"),
    ],
)
def test_user_mistakes_give_one_line_and_exit_2(trained, tmp_path, args, message):
    (tmp_path / "junk.pb").write_text("hello\n")
    (tmp_path / "water.xyz").write_text("3\n\nO 0 0 0\nH 0.96 0 0\nH -0.24 0.93 0\n")
    fill = {
        "model": trained["model"],
        "missing": tmp_path / "nope",
        "out": tmp_path / "OUT",
        "poscar": EXAMPLE_DFT / "perfect" / "POSCAR",
        "water": tmp_path / "water.xyz",
        "junk": tmp_path / "junk.pb",
        "tmp": tmp_path,
    }
    proc = run(["dp-charge"] + [a.format(**fill) for a in args], check=False)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    err_lines = proc.stderr.strip().splitlines()  # nothing else: native libraries' chatter is held back
    assert len(err_lines) == 1 and err_lines[0].startswith("dp-charge") and message in err_lines[0], proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "OUT").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary leftovers


@pytest.mark.parametrize("backend", [[], ["--tf"]])
def test_dp_doc_train_input_lists_charge_arguments(backend):
    from importlib import metadata

    registered = [ep.value for ep in metadata.entry_points(group="deepmd.backend")]
    assert "deepmd_charge.argcheck" in registered, "installed entry points are stale: run pip install -e .[test] again"
    out = run(["dp"] + backend + ["doc-train-input"]).stdout
    # the charge variants themselves, not the energy loss's own loss_func
    for path in (
        "fitting_net[charge]/radial_basis",
        "fitting_net[charge]/neuron",
        "loss[charge]/loss_func",
        "loss[charge]/huber_delta",
    ):
        assert path in out


@pytest.mark.parametrize("flag", ["--restart", "--init-model"])
def test_dp_train_restart_and_init_model(trained, tmp_path, flag):
    import shutil

    work = tmp_path / "w"
    shutil.copytree(trained["dir"], work, ignore=shutil.ignore_patterns("*.pb"))
    inp = json.loads((work / "input.json").read_text())
    inp["training"]["numb_steps"] = 400
    (work / "input.json").write_text(json.dumps(inp))
    run(["dp", "--tf", "train", "input.json", flag, "model.ckpt"], cwd=work)
    steps = list(np.loadtxt(work / "lcurve.out")[:, 0])
    assert steps[-1] == 400
    if flag == "--restart":  # continued from step 300, not from 0 (lcurve.out may keep the old rows)
        assert steps[-2] >= 300
    run(["dp", "--tf", "freeze", "-o", "model.pb"], cwd=work)
    assert (work / "model.pb").stat().st_size > 10_000


def test_spin_model_writes_two_blocks(trained, tmp_path):
    """--spin-model adds the magnetisation block (here the same model stands in for a spin model)."""
    model = str(trained["model"])
    out = run(
        [
            "dp-charge",
            "predict",
            model,
            str(EXAMPLE_DFT / "perfect" / "POSCAR"),
            "-o",
            str(tmp_path / "CHGCAR"),
            "--grid",
            "12",
            "12",
            "12",
            "--spin-model",
            model,
            "--quiet",
        ]
    )
    assert "magnetization:" in out.stdout
    vol = read_chgcar(tmp_path / "CHGCAR")
    assert vol.block_names == ["total", "magnetization"]
    np.testing.assert_allclose(vol.blocks[1], vol.blocks[0], rtol=1e-10)
    moment = float(out.stdout.split("magnetization:")[1].split()[0])
    assert moment == pytest.approx(vol.electrons(1), rel=1e-6)


def test_float32_model_trains_and_predicts(trained, tmp_path):
    from conftest import tiny_input

    inp = tiny_input(trained["dir"] / "data", steps=100)  # DeePMD-kit saves its checkpoint on a display step
    inp["model"]["descriptor"]["precision"] = "float32"
    inp["model"]["fitting_net"]["precision"] = "float32"
    (tmp_path / "input.json").write_text(json.dumps(inp))
    run(["dp", "--tf", "train", "input.json"], cwd=tmp_path)
    run(["dp", "--tf", "freeze", "-o", "model.pb"], cwd=tmp_path)
    from deepmd_charge import DeepCharge

    rho = DeepCharge(tmp_path / "model.pb").predict(
        read_chgcar(EXAMPLE_DFT / "perfect" / "CHGCAR.gz").atoms, grid=(8, 8, 8)
    )
    assert np.all(np.isfinite(rho)) and rho.std() > 0


def test_a_hybrid_descriptor_trains_and_predicts_on_the_plain_graph(trained, tmp_path):
    """Other DeePMD-kit descriptors work without the se_e2_a extras (basis, radial sums, tables).

    The charge fitting read se_e2_a's rcut_r, which a hybrid descriptor lacks: dp train failed
    with an AttributeError before its first step.
    """
    from conftest import tiny_input

    inp = tiny_input(trained["dir"] / "data", steps=100)
    se_a = inp["model"]["descriptor"]
    # two ranges (se_e2_r and se_e3 fail inside DeePMD-kit with the ghost's sel 0)
    short = dict(se_a, sel=[20, 0], rcut=3.0, neuron=[4, 8], axis_neuron=2, seed=2)
    inp["model"]["descriptor"] = {"type": "hybrid", "list": [se_a, short]}
    (tmp_path / "input.json").write_text(json.dumps(inp))
    run(["dp", "--tf", "train", "input.json"], cwd=tmp_path)
    run(["dp", "--tf", "freeze", "-o", "model.pb"], cwd=tmp_path)
    from deepmd_charge import DeepCharge

    with DeepCharge(tmp_path / "model.pb") as dc:
        assert not dc.tabulated and "hybrid" in dc.why_not_tabulated
        atoms = read_chgcar(EXAMPLE_DFT / "perfect" / "CHGCAR.gz").atoms
        rho = dc.predict(atoms, grid=(8, 8, 8))
        shift = [0.3, -0.2, 0.1]  # a rigid shift of atoms and grid: the same density, shifted
        moved = atoms.copy()
        moved.positions += shift
        shifted = dc.predict_points(moved, cartesian_points(atoms.cell, (8, 8, 8)) + shift)
    assert np.all(np.isfinite(rho)) and rho.std() > 0
    np.testing.assert_allclose(shifted, rho.reshape(-1), atol=1e-9)


@pytest.mark.parametrize(
    "change, message",
    [
        (("descriptor", "sel", [40, 10]), "must have sel 0"),
        (("loss", "loss_func", "l4"), "loss_func"),
        (("fitting_net", "radial_basis", 1), "radial_basis must be 0 (off) or at least 2"),
        (("type_embedding", "neuron", [4]), "radial_basis needs an se_e2_a descriptor without type embedding"),
    ],
)
def test_dp_train_setup_mistakes_are_one_line(trained, tmp_path, change, message):
    from conftest import tiny_input

    inp = tiny_input(trained["dir"] / "data", steps=10)
    section, key, value = change
    if section == "loss":
        inp["loss"] = {"type": "charge", key: value}
    elif section == "type_embedding":  # with an explicit basis, which mixed types cannot build
        inp["model"]["type_embedding"] = {key: value}
        inp["model"]["fitting_net"]["radial_basis"] = 16
    else:
        inp["model"][section][key] = value
    (tmp_path / "input.json").write_text(json.dumps(inp))
    proc = run(["dp", "--tf", "train", "input.json"], cwd=tmp_path, check=False)
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("dp: error:")]
    assert len(errors) == 1 and message in errors[0]
