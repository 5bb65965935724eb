"""Committee of models: mean and deviation (predict, test), uncertainty metrics, select."""

import json

import numpy as np
import pytest
from ase.io import read, write

from conftest import EXAMPLE_DFT, convert_example, run, tiny_input
from deepmd_charge.errors import InputError
from deepmd_charge.io.chgcar import read_chgcar
from deepmd_charge.io.cube import read_cube
from deepmd_charge.metrics import rank_correlation, uncertainty_score

POSCAR_A = EXAMPLE_DFT / "rattled_a" / "POSCAR"


@pytest.fixture(scope="module")
def second(trained, tmp_path_factory):
    """A second tiny model, as a committee member should be: other grid points, other seeds."""
    work = tmp_path_factory.mktemp("second")
    convert_example(work / "data", points=20000, seed=7)
    config = tiny_input(work / "data", steps=200)
    for part in (config["model"]["descriptor"], config["model"]["fitting_net"], config["training"]):
        part["seed"] = 7
    (work / "input.json").write_text(json.dumps(config))
    run(["dp", "--tf", "train", "input.json"], cwd=work)
    run(["dp", "--tf", "freeze", "-o", "model.pb"], cwd=work)
    return work / "model.pb"


# ---- metrics on known arrays -------------------------------------------------------------------
def test_rank_correlation_known_values():
    assert rank_correlation([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert rank_correlation([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert rank_correlation([1, 2, 3, 4, 5], [5, 6, 7, 8, 7]) == pytest.approx(
        0.8207826816681233
    )  # scipy.stats.spearmanr
    assert np.isnan(rank_correlation([1, 2, 3], [1, 1, 1]))


def test_uncertainty_score_known_values():
    ref = np.zeros(1000)
    pred = np.arange(1000) * 1e-3  # |error| grows with the index
    perfect = uncertainty_score(pred, ref, std=pred * 2)
    assert perfect["spearman"] == pytest.approx(1.0)
    assert perfect["worst_in_top_dev"] == 1.0  # the 10 worst points are the 10 largest deviations
    assert perfect["dev_err_ratio"] == pytest.approx(2.0)
    assert perfect["dev_max"] == pytest.approx(2 * 0.999)
    inverted = uncertainty_score(pred, ref, std=pred[::-1].copy())
    assert inverted["spearman"] == pytest.approx(-1.0) and inverted["worst_in_top_dev"] == 0.0
    flagged = np.zeros(1000)
    flagged[[999, 998, 997, 996, 995]] = 1.0  # 5 of the 10 worst among the 50 most deviating
    flagged[:45] = 0.5
    assert uncertainty_score(pred, ref, std=flagged)["worst_in_top_dev"] == pytest.approx(0.5)


def test_dev_scale_fit_known_values():
    from deepmd_charge.metrics import dev_scale_fit

    ref = np.zeros(4)
    pred = np.array([3.0, -4.0, 0.0, 0.0])  # RMS error sqrt(25 / 4) = 2.5
    assert dev_scale_fit(pred, ref, std=np.full(4, 0.5)) == pytest.approx(5.0)
    assert dev_scale_fit(pred, ref, std=np.abs(pred)) == pytest.approx(1.0)  # already the error's size
    assert uncertainty_score(pred, ref, std=np.full(4, 0.25))["dev_scale_fit"] == pytest.approx(10.0)
    assert np.isnan(dev_scale_fit(pred, ref, std=np.zeros(4)))


# ---- the Python API -----------------------------------------------------------------------------
def test_identical_members_give_the_single_model_and_zero_deviation(model):
    from deepmd_charge.committee import Committee

    atoms = read(POSCAR_A)
    com = Committee([model, model])
    mean, std = com.predict(atoms, grid=(12, 12, 12), return_std=True)
    np.testing.assert_array_equal(mean, model.predict(atoms, grid=(12, 12, 12)))
    assert np.all(std == 0)
    pts = np.random.default_rng(0).uniform(0, 5, size=(50, 3))
    m, s = com.predict_points(atoms, pts, return_std=True)
    np.testing.assert_array_equal(m, model.predict_points(atoms, pts))
    assert np.all(s == 0)


def test_committee_mean_and_std_of_two_models(model, second):
    from deepmd_charge.committee import Committee

    atoms = read(POSCAR_A)
    com = Committee([model, second])
    a, b = model.predict(atoms, grid=(12, 12, 10)), com.members[1].predict(atoms, grid=(12, 12, 10))
    # slab by slab (3 planes at a time) equals the whole grid at once
    slabs = list(com.iter_slabs(atoms, (12, 12, 10), slab_points=12 * 12 * 3, with_std=True))
    assert [(k0, k1) for k0, k1, _, _ in slabs] == [(0, 3), (3, 6), (6, 9), (9, 10)]
    mean = np.concatenate([s[2] for s in slabs], axis=2)
    std = np.concatenate([s[3] for s in slabs], axis=2)
    np.testing.assert_allclose(mean, (a + b) / 2, rtol=0, atol=1e-12)
    np.testing.assert_allclose(std, np.abs(a - b) / 2, rtol=0, atol=1e-12)
    assert std.max() > 1e-4  # the two members really differ
    scaled = Committee([model, second], dev_scale=3.0)
    m3, s3 = scaled.predict(atoms, grid=(12, 12, 10), return_std=True)
    np.testing.assert_array_equal(m3, mean)  # the scale touches the deviation only
    np.testing.assert_allclose(s3, 3.0 * std, rtol=1e-12, atol=0)
    pts = np.random.default_rng(1).uniform(0, 5, size=(20, 3))
    np.testing.assert_allclose(
        scaled.predict_points(atoms, pts, return_std=True)[1],
        3.0 * com.predict_points(atoms, pts, return_std=True)[1],
        rtol=1e-12,
        atol=0,
    )
    for bad in (0, -1, float("nan"), "x"):
        with pytest.raises(InputError, match="positive number"):
            Committee([model, second], dev_scale=bad)


def test_mismatched_type_map_is_a_clear_error(model):
    from types import SimpleNamespace

    from deepmd_charge.committee import Committee

    other = object.__new__(type(model))  # a DeepCharge whose model (tf/session.py) knows water
    other.session, other.model_file = SimpleNamespace(type_map=["O", "H", "X"]), "water.pb"
    with pytest.raises(InputError, match="water.pb.*type_map.*must share"):
        Committee([model, other])


def test_split_models_rule():
    from deepmd_charge.committee import split_models

    assert split_models(["a.pb", "b.PB", "CHGCAR", "c.pb"]) == (["a.pb", "b.PB"], ["CHGCAR", "c.pb"])
    assert split_models(["model", "data"]) == (["model"], ["data"])  # the first is always a model
    with pytest.raises(InputError, match="no data follow"):
        split_models(["a.pb", "b.pb"])


# ---- the command line ---------------------------------------------------------------------------
def test_predict_committee_writes_mean_and_std(trained, second, tmp_path):
    out = run(
        [
            "dp-charge",
            "predict",
            str(trained["model"]),
            str(second),
            str(POSCAR_A),
            "-o",
            str(tmp_path / "CHGCAR"),
            "--std",
            str(tmp_path / "std.cube"),
            "--grid",
            "12",
            "12",
            "10",
            "--quiet",
            "--slab-points",
            "300",
        ]
    )
    from deepmd_charge import DeepCharge

    atoms = read(POSCAR_A)
    a, b = (
        DeepCharge(trained["model"]).predict(atoms, grid=(12, 12, 10)),
        DeepCharge(second).predict(atoms, grid=(12, 12, 10)),
    )
    mean = read_chgcar(tmp_path / "CHGCAR").total
    std = read_cube(tmp_path / "std.cube").total
    np.testing.assert_allclose(mean, (a + b) / 2, atol=1e-6 * np.abs(a).max())  # CHGCAR: 11 significant digits
    np.testing.assert_allclose(std, np.abs(a - b) / 2, atol=1e-5 * np.abs(a - b).max())
    line = next(line for line in out.stdout.splitlines() if line.startswith("committee deviation"))
    assert f"{std.mean():.3e}"[:4] in line and "max" in line
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # temporary std store removed


def test_predict_committee_like_takes_the_references_augmentation_and_electron_count(trained, second, tmp_path):
    """As for one model: --like of the same atoms gives its grid, augmentation block and electron count."""
    from deepmd_charge.io.chgcar import write_chgcar

    dft = read_chgcar(EXAMPLE_DFT / "rattled_b" / "CHGCAR.gz")
    aug = "".join(f"augmentation occupancies {a:3d}   2\n  0.1000000E+00 -0.2000000E-01\n" for a in range(1, 9))
    like = tmp_path / "CHGCAR_ref"
    write_chgcar(like, dft.atoms, [dft.total * 1.01], trailers=[aug])  # 32.32 electrons
    ref = read_chgcar(like)
    models = [str(trained["model"]), str(second)]
    out = run(["dp-charge", "predict", *models, str(EXAMPLE_DFT / "rattled_b" / "POSCAR"), "-o", str(tmp_path / "CHGCAR"),
               "--like", str(like), "--quiet"])  # fmt: skip
    got = read_chgcar(tmp_path / "CHGCAR")
    assert got.shape == ref.shape
    assert got.electrons() == pytest.approx(ref.electrons(), rel=1e-8)
    assert f"normalized to {ref.electrons():g} electrons" in out.stdout
    assert got.trailers[0] == aug  # the PAW occupancies, copied verbatim
    # other atoms in the same cell (a vacancy): the reference's grid only, and a note saying so
    vacancy = read(POSCAR_A)
    del vacancy[3]
    vacancy.write(tmp_path / "POSCAR_vac", format="vasp")
    other = run(["dp-charge", "predict", *models, str(tmp_path / "POSCAR_vac"), "-o", str(tmp_path / "CHGCAR_other"),
                 "--like", str(like), "--quiet"])  # fmt: skip
    assert "normalized to" not in other.stdout and "not used" in other.stdout
    assert read_chgcar(tmp_path / "CHGCAR_other").shape == ref.shape


def test_test_committee_reports_ranking_metrics(trained, second, tmp_path):
    out = run(
        [
            "dp-charge",
            "test",
            str(trained["model"]),
            str(second),
            str(EXAMPLE_DFT / "perfect" / "CHGCAR.gz"),
            str(trained["dir"] / "data"),
            "--json",
            str(tmp_path / "m.json"),
            "--slice",
            str(tmp_path / "s.png"),
            "--quiet",
        ]
    )
    assert "spearman" in out.stdout and "worst1%@top5%" in out.stdout
    assert (tmp_path / "s.png").stat().st_size > 10_000  # five panels, deviation included
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert metrics["model"] == [str(trained["model"]), str(second)]
    for entry in metrics["inputs"] + [metrics["overall"]]:
        assert -1 <= entry["spearman"] <= 1 and 0 <= entry["worst_in_top_dev"] <= 1
        assert entry["dev_mean"] > 0 and entry["dev_err_ratio"] == pytest.approx(entry["dev_mean"] / entry["mae"])
    fit = metrics["overall"]["dev_scale_fit"]
    assert f"--dev-scale {fit:.2f}" in out.stdout
    # calibrated with the factor these inputs give: the deviation's RMS is the error's, the ranking unchanged
    again = run(
        ["dp-charge", "test", str(trained["model"]), str(second), str(EXAMPLE_DFT / "perfect" / "CHGCAR.gz")]
        + [str(trained["dir"] / "data"), "--json", str(tmp_path / "c.json"), "--quiet", "--dev-scale", repr(fit)]
    )
    from deepmd_charge.committee import Committee

    with Committee([trained["model"], second]) as com:  # the Python API finds the same factor on one grid
        fit_perfect = com.calibrate(EXAMPLE_DFT / "perfect" / "CHGCAR.gz")
        assert com.dev_scale == fit_perfect and fit_perfect == pytest.approx(metrics["inputs"][0]["dev_scale_fit"])
    calibrated_json = json.loads((tmp_path / "c.json").read_text())
    calibrated = calibrated_json["overall"]
    assert calibrated_json["dev_scale"] == fit and metrics["dev_scale"] == 1.0
    assert calibrated["dev_scale_fit"] == pytest.approx(fit, rel=1e-9)  # always relative to the raw deviation
    assert calibrated["dev_err_ratio"] == pytest.approx(fit * metrics["overall"]["dev_err_ratio"], rel=1e-9)
    assert calibrated["dev_mean"] == pytest.approx(fit * metrics["overall"]["dev_mean"], rel=1e-9)
    assert calibrated["spearman"] == pytest.approx(metrics["overall"]["spearman"], abs=1e-12)
    assert f"x {fit:g} (--dev-scale)" in again.stdout and f"--dev-scale {fit:.2f}" in again.stdout


def test_select_ranks_and_writes_k_poscars(trained, second, tmp_path):
    perfect = read(EXAMPLE_DFT / "perfect" / "POSCAR")
    far = perfect.copy()
    far.rattle(stdev=0.4, seed=3)  # far from the training structure (rattled 0.1 A)
    write(tmp_path / "pool.extxyz", [read(POSCAR_A), far, perfect])
    args = [
        "dp-charge",
        "select",
        str(tmp_path / "pool.extxyz"),
        "--models",
        str(trained["model"]),
        str(second),
        "-n",
        "2",
    ]
    out = run(args + ["-o", str(tmp_path / "picked")])
    table = (tmp_path / "picked" / "ranking.txt").read_text()
    assert table.strip() in out.stdout
    order = [line.split()[-1] for line in table.splitlines()[1:]]
    assert sorted(order) == [f"{tmp_path / 'pool.extxyz'}@{i}" for i in range(3)]
    assert order[0].endswith("@1")  # the strongly rattled structure is the most uncertain
    picked = [read(tmp_path / "picked" / f"00{r}" / "POSCAR") for r in (1, 2)]
    assert np.allclose(picked[0].positions, far.positions, atol=1e-6)
    assert not (tmp_path / "picked" / "003").exists()
    again = run(args + ["-o", str(tmp_path / "again")])  # deterministic
    assert (tmp_path / "again" / "ranking.txt").read_text() == table and again.returncode == 0


@pytest.mark.parametrize(
    "args, message",
    [
        (["select", "{pool}", "--models", "{model}", "{model}", "-n", "3", "-o", "{out}"], "candidates hold only 1"),
        (["select", "{pool}", "--models", "{model}", "-n", "1", "-o", "{out}"], "two or more models"),
        (["select", "{pool}", "--models", "{model}", "{model}", "-n", "0", "-o", "{out}"], "positive number"),
        (["predict", "{model}", "{pool}", "-o", "{out}", "--std", "{tmp}/std"], "needs a committee"),
        (["predict", "{model}", "{pool}", "{pool}", "-o", "{out}"], "not a frozen TensorFlow model"),
        (["test", "{model}", "{model}"], "no data follow"),
        (["test", "{model}", "{pool}", "--dev-scale", "2"], "two or more models"),
        (["predict", "{model}", "{model}", "{pool}", "-o", "{out}", "--dev-scale", "0"], "positive number"),
        (
            ["select", "{pool}", "--models", "{model}", "{model}", "-n", "1", "-o", "{out}", "--dev-scale", "-1"],
            "--dev-scale",
        ),
    ],
)
def test_committee_mistakes_give_one_line_and_exit_2(trained, tmp_path, args, message):
    fill = {"model": trained["model"], "pool": POSCAR_A, "out": tmp_path / "OUT", "tmp": tmp_path}
    proc = run(["dp-charge"] + [a.format(**fill) for a in args], check=False)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    err_lines = proc.stderr.strip().splitlines()
    assert len(err_lines) == 1 and message in err_lines[0], proc.stderr
    assert not (tmp_path / "OUT").exists() and not (tmp_path / "std").exists()


def test_committee_under_mpi_is_a_clear_error(trained, tmp_path):
    from test_parallel import _mpiexec

    model = str(trained["model"])
    proc = run(
        [
            _mpiexec(),
            "-n",
            "2",
            "dp-charge",
            "predict",
            model,
            model,
            str(POSCAR_A),
            "-o",
            str(tmp_path / "OUT"),
            "--grid",
            "8",
            "8",
            "8",
            "--quiet",
        ],
        check=False,
    )
    assert proc.returncode != 0
    assert "committee of models does not run under MPI" in proc.stderr
    assert not (tmp_path / "OUT").exists()


def test_write_selection_refuses_a_used_folder_and_writes_in_rank_order(tmp_path):
    from ase.build import bulk

    from deepmd_charge.select import write_selection

    ranked = [
        {
            "name": f"s{i}",
            "atoms": bulk("Si", "diamond", a=5.43 + 0.1 * i, cubic=True),
            "mean": 1.0 - i / 10,
            "max": 1.0,
        }
        for i in range(3)
    ]
    (tmp_path / "next").mkdir()
    (tmp_path / "next" / "old").write_text("x")
    with pytest.raises(InputError, match="next: exists and is not an empty folder"):
        write_selection(ranked, 2, tmp_path / "next")
    with pytest.raises(InputError, match="asks for 4 structures but the candidates hold only 3"):
        write_selection(ranked, 4, tmp_path / "new")
    written = write_selection(ranked, 2, tmp_path / "new")
    assert [p.parent.name for p in written] == ["001", "002"]
    assert read(written[1]).cell[0, 0] == pytest.approx(5.53)
    assert (tmp_path / "new" / "ranking.txt").read_text().splitlines()[2].split()[-1] == "s1"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["new", "next"]  # no temporary folder left
