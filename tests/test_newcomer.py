"""A new user's first hour (issue 14): every silent surprise is a clear message or works.

convert into an existing folder, several compositions, type_map mistakes in dp train, --like with
another cell, trajectories, --channel with the wrong model, references from another DFT code,
--diff, --planar-average, --version.
"""

import json
import sys

import ase.io
import numpy as np
import pytest
from ase.build import bulk

from conftest import EXAMPLE_DFT, run, tiny_input
from deepmd_charge import cli
from deepmd_charge.io.chgcar import read_chgcar, write_chgcar
from deepmd_charge.io.cube import read_cube

CLI = [sys.executable, "-m", "deepmd_charge.cli"]


def _one_line(proc, message):
    assert proc.returncode != 0, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and message in errors[0], proc.stderr
    return errors[0]


def _sige(tmp_path):
    """The rattled_b Si8 density with two atoms renamed Ge: a second composition."""
    vol = read_chgcar(EXAMPLE_DFT / "rattled_b" / "CHGCAR.gz")
    atoms = vol.atoms.copy()
    symbols = atoms.get_chemical_symbols()
    symbols[1] = symbols[5] = "Ge"
    atoms.set_chemical_symbols(symbols)
    path = tmp_path / "CHGCAR_SiGe"
    write_chgcar(path, atoms, [vol.total])
    return path


# ---- convert ------------------------------------------------------------------------------------
def test_convert_refuses_to_replace_data_unless_overwrite(tmp_path):
    chgcar = str(EXAMPLE_DFT / "perfect" / "CHGCAR.gz")
    args = ["convert", chgcar, "-o", str(tmp_path / "data"), "--points", "400", "--points-per-frame", "100"]
    run(CLI + args + ["--seed", "1"])
    before = np.load(tmp_path / "data" / "set.000" / "coord.npy")
    proc = run(CLI + args + ["--seed", "2"], check=False)
    assert proc.returncode == 2
    _one_line(proc, "already holds training data (1 set(s)); add --overwrite to replace it")
    np.testing.assert_array_equal(np.load(tmp_path / "data" / "set.000" / "coord.npy"), before)  # untouched
    run(CLI + args + ["--seed", "2", "--overwrite"])
    assert not np.array_equal(np.load(tmp_path / "data" / "set.000" / "coord.npy"), before)
    # a folder that convert did not write is never replaced, --overwrite or not
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    proc = run(CLI + ["convert", chgcar, "-o", str(tmp_path / "mine"), "--points", "400", "--overwrite"], check=False)
    _one_line(proc, "exists and is not a deepmd/npy system")
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"


@pytest.mark.slow  # trains a model or builds the kernel
def test_several_compositions_hint_lists_every_element_and_trains(tmp_path):
    files = [str(EXAMPLE_DFT / "rattled_a" / "CHGCAR.gz"), str(_sige(tmp_path))]
    out = run(
        CLI
        + [
            "convert",
            *files,
            "-o",
            str(tmp_path / "data"),
            "--points",
            "400",
            "--points-per-frame",
            "100",
            "--seed",
            "0",
        ]
    )
    hint = json.loads(out.stdout.split('"type_map": ')[1].split(", descriptor")[0])
    assert hint == ["Si", "Ge", "X"]
    # a second convert of other compositions into the same folder is refused too
    proc = run(CLI + ["convert", files[0], "-o", str(tmp_path / "data"), "--points", "400"], check=False)
    _one_line(proc, "already holds training data (2 set(s))")

    inp = tiny_input(tmp_path / "data", steps=10)
    inp["training"].update(disp_freq=5, save_freq=10)
    # the old hint, ["Si", "X"]: one line naming the element to add and the type_map to use
    (tmp_path / "old.json").write_text(json.dumps(inp))
    line = _one_line(run(["dp", "--tf", "train", "old.json"], cwd=tmp_path, check=False), "lacks")
    assert (
        line.startswith("dp: error: old.json: the training data has type(s) ['Ge']")
        and '"type_map": ["Si", "Ge", "X"]' in line
    )
    # following the hint trains
    inp["model"]["type_map"] = hint
    inp["model"]["descriptor"]["sel"] = [40, 40, 0]
    (tmp_path / "input.json").write_text(json.dumps(inp))
    run(["dp", "--tf", "train", "input.json"], cwd=tmp_path)
    assert np.loadtxt(tmp_path / "lcurve.out")[-1, 0] == 10


def test_type_map_without_ghost_is_one_line(trained, tmp_path):
    inp = tiny_input(trained["dir"] / "data", steps=10)
    inp["model"]["type_map"] = ["Si"]
    inp["model"]["descriptor"]["sel"] = [40]
    (tmp_path / "input.json").write_text(json.dumps(inp))
    proc = run(["dp", "--tf", "train", "input.json"], cwd=tmp_path, check=False)
    line = _one_line(proc, "needs model/type_map with the elements followed by the ghost type for grid points last")
    assert line.startswith("dp: error: input.json:") and "got ['Si']" in line


# ---- predict ------------------------------------------------------------------------------------
def test_like_with_another_cell_is_an_error(trained, tmp_path):
    proc = run(
        [
            "dp-charge",
            "predict",
            str(trained["model"]),
            str(EXAMPLE_DFT / "perfect" / "POSCAR"),
            "-o",
            str(tmp_path / "OUT"),
            "--like",
            str(EXAMPLE_DFT / "rattled_c" / "CHGCAR.gz"),
            "--quiet",
        ],
        check=False,
    )
    assert proc.returncode == 2
    line = _one_line(
        proc, "has another cell than the structure (a, b, c = 5.5386 5.5386 5.5386 A against 5.4300 5.4300 5.4300 A"
    )
    assert "use --grid NX NY NZ" in line
    assert not (tmp_path / "OUT").exists()


def _frames():
    frames = []
    for seed in range(3):
        atoms = bulk("Si", "diamond", a=5.43 + 0.05 * seed, cubic=True)
        atoms.rattle(0.05, seed=seed)
        frames.append(atoms)
    return frames


@pytest.mark.parametrize("name, fmt", [("md.xyz", "extxyz"), ("XDATCAR", "vasp-xdatcar"), ("md.traj", "traj")])
def test_trajectory_every_frame_one_output_each(trained, model, tmp_path, name, fmt):
    frames = _frames()
    path = tmp_path / name
    ase.io.write(path, frames, format=fmt)
    out = run(
        [
            "dp-charge",
            "predict",
            str(trained["model"]),
            str(path),
            "-o",
            str(tmp_path / "rho.cube"),
            "--grid",
            "6",
            "6",
            "8",
            "--quiet",
        ]
    )
    assert out.stdout.count("electrons:") == 3 and "wrote 3 files" in out.stdout
    for n, atoms in enumerate(frames):
        vol = read_cube(tmp_path / f"rho_{n:04d}.cube")
        np.testing.assert_allclose(vol.atoms.cell[:], atoms.cell[:], atol=1e-5)  # frame n, not the last one
        np.testing.assert_allclose(
            vol.total, model.predict(atoms, grid=(6, 6, 8)), rtol=1e-4, atol=1e-6
        )  # cube: 5 digits
    assert not (tmp_path / "rho.cube").exists()


def test_trajectory_index_and_one_model_load(trained, tmp_path, monkeypatch, capsys):
    from deepmd_charge import predict

    path = tmp_path / "md.xyz"
    ase.io.write(path, _frames())
    loads = []
    original = predict.DeepCharge.__init__

    def counting(self, *args, **kwargs):
        loads.append(1)
        original(self, *args, **kwargs)

    monkeypatch.setattr(predict.DeepCharge, "__init__", counting)
    code = cli.main(
        [
            "predict",
            str(trained["model"]),
            str(path),
            "-o",
            str(tmp_path / "CHGCAR.gz"),
            "--grid",
            "4",
            "4",
            "4",
            "--quiet",
        ]
    )
    assert code == 0 and len(loads) == 1
    assert sorted(p.name for p in tmp_path.glob("CHGCAR*")) == ["CHGCAR_0000.gz", "CHGCAR_0001.gz", "CHGCAR_0002.gz"]
    # one selected frame: the output name as given
    assert (
        cli.main(
            [
                "predict",
                str(trained["model"]),
                str(path),
                "-o",
                str(tmp_path / "last"),
                "--grid",
                "4",
                "4",
                "4",
                "--quiet",
                "--index",
                "-1",
            ]
        )
        == 0
    )
    last = read_chgcar(tmp_path / "last")
    np.testing.assert_allclose(last.atoms.cell[:], _frames()[2].cell[:], atol=1e-6)
    capsys.readouterr()
    assert cli.main(["predict", str(trained["model"]), str(path), "-o", str(tmp_path / "x"), "--index", "5"]) == 2
    assert "--index: frame 5 does not exist: " in capsys.readouterr().err


def test_trajectory_with_a_bad_frame_writes_nothing(trained, tmp_path):
    frames = _frames()
    frames[2][0].symbol = "O"  # an element the model does not know, in the last frame
    ase.io.write(tmp_path / "md.xyz", frames)
    proc = run(
        [
            "dp-charge",
            "predict",
            str(trained["model"]),
            str(tmp_path / "md.xyz"),
            "-o",
            str(tmp_path / "OUT"),
            "--grid",
            "4",
            "4",
            "4",
        ],
        check=False,
    )
    _one_line(proc, "md.xyz frame 2: has element(s) ['O'] that the model does not know")
    assert not list(tmp_path.glob("OUT*"))


def test_trajectory_with_like_checks_every_frame_first(trained, tmp_path):
    frames = _frames()  # cells of 5.43, 5.48, 5.53 A
    ase.io.write(tmp_path / "md.xyz", frames)
    write_chgcar(tmp_path / "like", frames[0], [np.ones((6, 6, 8))])
    base = [
        "dp-charge",
        "predict",
        str(trained["model"]),
        str(tmp_path / "md.xyz"),
        "-o",
        str(tmp_path / "OUT"),
        "--like",
        str(tmp_path / "like"),
        "--quiet",
    ]
    proc = run(base, check=False)
    _one_line(proc, f"{tmp_path / 'like'} (for {tmp_path / 'md.xyz'} frame 1): has another cell than the structure")
    assert not list(tmp_path.glob("OUT*"))
    run(base + ["--index", "0"])
    assert read_chgcar(tmp_path / "OUT").shape == (6, 6, 8)


# ---- test ---------------------------------------------------------------------------------------
def test_magnetization_channel_with_a_total_density_model_is_an_error(trained, tmp_path):
    vol = read_chgcar(EXAMPLE_DFT / "rattled_b" / "CHGCAR.gz")
    write_chgcar(tmp_path / "CHGCAR", vol.atoms, [vol.total, 0.05 * vol.total])  # 1.6 muB
    proc = run(
        ["dp-charge", "test", str(trained["model"]), str(tmp_path / "CHGCAR"), "--channel", "magnetization", "--quiet"],
        check=False,
    )
    assert proc.returncode == 2
    line = _one_line(proc, "This looks like a total-density model: leave out --channel magnetization")
    assert "its total density holds 32.000, its magnetization 1.600 muB" in line
    ok = run(["dp-charge", "test", str(trained["model"]), str(tmp_path / "CHGCAR"), "--quiet"])
    assert "electrons pred vs DFT" in ok.stdout and "(e/A^3)" in ok.stdout and "muB" not in ok.stdout


def test_check_channel_recognises_a_magnetization_model():
    from types import SimpleNamespace

    from deepmd_charge.errors import InputError
    from deepmd_charge.evaluate import check_channel, table_header

    blocks = [np.full((2, 2, 2), 2.0), np.full((2, 2, 2), 0.1)]  # cell volume 8: 16 electrons, 0.8 muB
    vol = SimpleNamespace(block_names=["total", "magnetization"], electrons=lambda b: float(blocks[b].mean() * 8))
    result = {"name": "CHGCAR", "vol": vol, "metrics": {"electrons_pred": 0.75}}
    with pytest.raises(InputError, match="looks like a magnetization model: add --channel magnetization"):
        check_channel(result, "mag.pb", "total")
    check_channel(result, "mag.pb", "magnetization")  # the right channel: no complaint
    header = table_header("magnetization")
    assert "moment pred vs DFT (muB)" in header and "(muB/A^3)" in header and "e/A^3" not in header


def test_reference_from_another_code_warns(trained, tmp_path):
    from deepmd_charge.grid import cartesian_points, near_nucleus_mask

    vol = read_chgcar(EXAMPLE_DFT / "rattled_b" / "CHGCAR.gz")
    # a norm-conserving-like reference: positive and smooth within 0.5 A of the nuclei
    near = near_nucleus_mask(vol.atoms, cartesian_points(vol.atoms.cell[:], vol.shape), 0.5).reshape(vol.shape)
    other = vol.total.copy()
    other[near] = 0.2
    other[~near] *= (vol.total.sum() - other[near].sum()) / other[~near].sum()  # the same electron count
    write_chgcar(tmp_path / "CHGCAR_other", vol.atoms, [other])
    write_chgcar(tmp_path / "CHGCAR_more", vol.atoms, [1.1 * vol.total])  # 35.2 electrons
    out = run(
        [
            "dp-charge",
            "test",
            str(trained["model"]),
            str(EXAMPLE_DFT / "rattled_b" / "CHGCAR.gz"),
            str(tmp_path / "CHGCAR_other"),
            str(tmp_path / "CHGCAR_more"),
            "--quiet",
            "--json",
            str(tmp_path / "m.json"),
        ]
    )
    warnings = [line for line in out.stderr.splitlines() if "warning" in line]
    assert len(warnings) == 2, out.stderr
    assert warnings[0].startswith(
        f"dp-charge test: warning: {tmp_path / 'CHGCAR_other'}: the error is concentrated within 0.5 A of the nuclei"
    )
    assert "another DFT code or pseudopotential" in warnings[0]
    assert (
        warnings[1].startswith(f"dp-charge test: warning: {tmp_path / 'CHGCAR_more'}: the model predicts")
        and "holds 35.200" in warnings[1]
    )
    inputs = json.loads((tmp_path / "m.json").read_text())["inputs"]
    assert inputs[0]["warnings"] == [] and inputs[0]["nmae_near_nuclei"] < 0.5
    assert inputs[1]["nmae_near_nuclei"] > 0.5 and len(inputs[1]["warnings"]) == 1


def test_diff_planar_average_and_pictures(trained, tmp_path):
    ref = EXAMPLE_DFT / "rattled_b" / "CHGCAR.gz"
    run(
        [
            "dp-charge",
            "predict",
            str(trained["model"]),
            str(EXAMPLE_DFT / "rattled_b" / "POSCAR"),
            "-o",
            str(tmp_path / "pred"),
            "--grid",
            "48",
            "48",
            "48",
            "--quiet",
        ]
    )  # not --like: it rescales to the reference's electrons
    out = run(
        [
            "dp-charge",
            "test",
            str(trained["model"]),
            str(ref),
            "--quiet",
            "--diff",
            str(tmp_path / "diff.vasp"),
            "--planar-average",
            str(tmp_path / "pa.png"),
            "--axis",
            "b",
            "--slice",
            str(tmp_path / "s.png"),
            "--slice-at",
            "1.4",
            "--plot",
            str(tmp_path / "p.png"),
            "--log",
        ]
    )
    dft, pred = read_chgcar(ref), read_chgcar(tmp_path / "pred")
    diff = read_chgcar(tmp_path / "diff.vasp")
    np.testing.assert_allclose(diff.total, pred.total - dft.total, atol=1e-9)  # written with 11 digits
    table = np.loadtxt(tmp_path / "pa.dat")
    assert table.shape == (48, 4)
    header = (tmp_path / "pa.dat").read_text().splitlines()[0]
    assert header.endswith("; rattled_b/CHGCAR.gz"), header  # the titles name the input, not its full path
    np.testing.assert_allclose(table[:, 0], np.arange(48) / 48 * 5.43, atol=1e-4)  # heights along b, A
    np.testing.assert_allclose(table[:, 1], dft.total.mean(axis=(0, 2)), rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(table[:, 3], table[:, 2] - table[:, 1], atol=1e-7)
    for name in ("pa.png", "s.png", "p.png"):
        assert (tmp_path / name).stat().st_size > 20_000
        assert f"wrote {tmp_path / name}" in out.stdout


def test_version():
    from deepmd_charge import __version__

    out = run(["dp-charge", "--version"])
    assert out.stdout.startswith(f"dp-charge {__version__} (deepmd-kit 3.")
