"""The atomic prior never hurts (issue 12) and training never ends worse than it started (issue 17).

- the regularised superposition fit on a perfect crystal stays bounded between the neighbour
  distances it saw (numpy only, fast);
- every learning-rate schedule the project writes or documents decays smoothly to stop_lr at the
  last step, and the charge fitting smooths a coarse staircase;
- `dp train` warns when the training error stays well above the prior's.
"""

import ast
import json
import logging
import re
import subprocess
import sys

import numpy as np
import pytest
from ase.build import bulk
from scipy.spatial import cKDTree

from conftest import EXAMPLE_DFT, ROOT, convert_example, run, tiny_input
from deepmd_charge.grid import periodic_images
from deepmd_charge.tf.basis import basis_sums_numpy, least_squares, phi, regularised_fit

RCUT, K = 5.0, 16


def bonded_density(atoms, pts):
    """A density that is NOT a radial superposition: atomic shells plus bond charges."""
    pos, _ = periodic_images(atoms, RCUT)
    d = cKDTree(pts).sparse_distance_matrix(cKDTree(pos), RCUT, output_type="coo_matrix")
    rho = np.zeros(len(pts))
    np.add.at(rho, d.row, 0.3 * np.exp(-((d.data / 0.9) ** 2)) - 0.4 * np.exp(-((d.data / 0.3) ** 2)))
    dist = np.linalg.norm(pos[:, None] - pos[None], axis=2)
    i, j = np.nonzero((dist > 0) & (dist < 2.6))
    mid = (pos[i] + pos[j]) / 2
    rho += 0.5 * np.exp(-((np.linalg.norm(pts[:, None] - mid[None], axis=2) / 0.5) ** 2)).sum(axis=1)
    return rho


def sample(atoms, n, rng):
    pts = rng.random((n, 3)) @ atoms.cell[:]
    feats = basis_sums_numpy(atoms.cell[:], atoms.positions, np.zeros(len(atoms), int), pts, 1, RCUT, K)
    return feats, bonded_density(atoms, pts)


@pytest.fixture(scope="module")
def crystal_data():
    rng = np.random.default_rng(0)
    perfect = bulk("Si", "diamond", a=5.43, cubic=True)
    rattled = perfect.copy()
    rattled.rattle(0.1, seed=3)
    return {
        "perfect": sample(perfect, 2000, rng),
        "rattled": sample(rattled, 2000, rng),
        "rattled2": sample(rattled, 2000, rng),
    }


def test_perfect_crystal_fit_stays_bounded_between_seen_distances(crystal_data):
    """Fitted on a perfect crystal, scored on a rattled one: better than no prior (the mean)."""
    feats, labels = crystal_data["perfect"]
    feats_t, labels_t = crystal_data["rattled"]
    no_prior = np.abs(labels_t - labels.mean()).mean()
    r = np.linspace(0.05, RCUT, 500)

    def scores(w, b):
        return np.abs(feats_t @ w + b - labels_t).mean(), np.abs(phi(r, RCUT, K) @ w).max()

    w, b, report = regularised_fit(feats, labels)
    mae, peak = scores(w, b)
    assert mae < 0.75 * no_prior, (mae, no_prior)
    assert peak <= np.abs(labels).max(), peak  # the radial density stays within the labels' range
    assert report.condition > 1e5 and report.ridge >= 1e-3 and report.dof < K - 2
    # the nearly unregularised fit of before: the same check fails (the test can tell them apart)
    mae_old, peak_old = scores(*least_squares(feats, labels, 1e-6))
    assert mae_old > 2 * no_prior and peak_old > np.abs(labels).max(), (mae_old, peak_old, no_prior)


def test_well_sampled_fit_is_left_almost_unregularised(crystal_data):
    feats, labels = crystal_data["rattled"]
    w, b, report = regularised_fit(feats, labels)
    w0, b0 = least_squares(feats, labels, 1e-6)
    feats_t, labels_t = crystal_data["rattled2"]
    mae, mae0 = (np.abs(feats_t @ ww + bb - labels_t).mean() for ww, bb in ((w, b), (w0, b0)))
    assert mae < 1.05 * mae0, (mae, mae0)
    assert report.mae_held <= 1.05 * min(report.mae_held_unreg, report.mae_held) + 1e-12


def test_fit_report_says_how_well_posed_the_fit_was(crystal_data):
    lines = regularised_fit(*crystal_data["perfect"])[2].lines()
    assert len(lines) == 2
    assert re.search(
        r"condition number [0-9.e+]+, ridge [0-9e+-]+ .* -> [0-9.]+ effective degrees of freedom", lines[0]
    )
    assert re.search(r"MAE [0-9.]+ in-sample, [0-9.]+ on held-out points \([0-9.]+ unregularised\)", lines[1])


# ---- learning-rate schedules -------------------------------------------------------------------


def lr_ends_smoothly(lr: dict, steps: int) -> bool:
    """The schedule is within one smooth step of stop_lr at the last step, and never drops by more
    than twice the smooth per-step factor (start_lr / stop_lr)^(1 / steps) (or 10%) at once."""
    from deepmd.dpmodel.utils.learning_rate import BaseLR

    sched = BaseLR(**{**lr, "type": lr.get("type", "exp")}, num_steps=steps)
    values = np.array([sched.value(t) for t in range(steps)])
    per_step = (lr["start_lr"] / lr["stop_lr"]) ** (1 / steps)
    drops = values[:-1] / values[1:] if steps > 1 else np.ones(1)
    return bool(values[-1] <= 1.05 * lr["stop_lr"] * per_step and drops.max() <= max(1.1, per_step**2))


def shipped_inputs():
    """Every learning_rate section in the repository's JSON files, Markdown and Python sources."""
    from deepmd_charge import recipe

    proc = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True)
    if proc.returncode == 0:
        files = proc.stdout.split()
    else:  # an exported copy, not a git checkout: every file but the build and work folders
        skip = ("build/", ".", "examples/silicon/work/")
        files = [str(p.relative_to(ROOT)) for p in ROOT.rglob("*") if p.is_file()]
        files = [f for f in files if not f.startswith(skip) and "/." not in f and "egg-info" not in f]
    found = []
    for name in files:
        path = ROOT / name
        if name.endswith(".json"):
            data = json.loads(path.read_text())
            if "learning_rate" in data:
                found.append((name, data["learning_rate"], data.get("training", {}).get("numb_steps")))
        elif name.endswith((".md", ".py")) and not name.startswith("tests/test_prior"):
            text = path.read_text()
            for m in re.finditer(r'"learning_rate":\s*(\{[^{}]*\})', text):
                block = m.group(1).replace("true", "True").replace("false", "False")
                # a benchmark's start_lr may be a variable (its --lr / --start-lr option, default 0.005)
                block = re.sub(r":\s*(start_lr|lr)\s*([,}])", r": 0.005\2", block)
                # dp-charge input's recipe (deepmd_charge/recipe.py) names its constants
                block = block.replace("START_LR", repr(recipe.START_LR)).replace("STOP_LR", repr(recipe.STOP_LR))
                steps = re.search(r'"numb_steps":\s*(\d+)', text[m.end() : m.end() + 400])
                found.append((name, ast.literal_eval(block), int(steps.group(1)) if steps else None))
    return found


#: inputs kept as the record of how a shipped model was trained (before issue 17); dp train smooths
#: their coarse staircase by itself now (smooth_lr_schedule), which the test checks instead
RECORDS = {"examples/si64-paper/input.json"}


def test_every_shipped_lr_schedule_decays_smoothly_to_stop_lr():
    from deepmd_charge.tf.fitting import MIN_LR_STAIRS

    found = shipped_inputs()
    for name, lr, steps in [f for f in found if f[0] in RECORDS]:
        assert not lr.get("smooth") and steps / lr.get("decay_steps", 5000) < MIN_LR_STAIRS, name
    found = [f for f in found if f[0] not in RECORDS]
    names = {n for n, _, _ in found}
    assert {
        "README.md",
        "docs/templates.md",
        "tests/conftest.py",
        "benchmarks/si8_one_structure.py",
        "benchmarks/materials.py",
    } <= names, names
    bad = []
    for name, lr, steps in found + [("tests/conftest.py tiny_input", tiny_input("data")["learning_rate"], 300)]:
        for n in {steps or 3000, 1000, 8000}:
            if not lr_ends_smoothly(lr, n):
                bad.append((name, lr, n))
    assert not bad, bad


def test_the_charge_fitting_smooths_a_coarse_staircase(caplog):
    from deepmd.tf.env import tf
    from deepmd.tf.utils.learning_rate import LearningRateSchedule

    from deepmd_charge.tf.fitting import smooth_lr_schedule

    stair = {"type": "exp", "start_lr": 5e-3, "stop_lr": 1e-5, "decay_steps": 5000}
    with tf.Graph().as_default():
        step = tf.train.get_or_create_global_step()
        lr = LearningRateSchedule(dict(stair))
        with caplog.at_level(logging.WARNING, logger="deepmd"):
            smooth_lr_schedule(lr)
            lr.build(step, 8000)
        assert abs(lr.value(7999) / 1e-5 - 1) < 0.01 and lr.value(4000) < 5e-3 / 10
        assert "smooth" in caplog.text and "1.0e-04" in caplog.text
        kept = LearningRateSchedule({**stair, "decay_rate": 0.02})  # an explicit decay_rate is respected
        smooth_lr_schedule(kept)
        kept.build(step, 8000)
        assert kept.value(4999) == 5e-3


# ---- divergence warning ------------------------------------------------------------------------


def test_divergence_warning_needs_a_sustained_rise(caplog):
    from deepmd_charge.tf.loss import ChargeLoss

    loss = ChargeLoss(starter_learning_rate=5e-3, ghost_type=1)
    loss.set_prior(0.02, "radial superposition")
    with caplog.at_level(logging.WARNING, logger="deepmd"):
        # one bad display, then recovery: no warning; step 0 never counts
        assert not any(loss.watch(s, m) for s, m in [(0, 0.5), (100, 0.05), (200, 0.01), (300, 0.05), (400, 0.05)])
        assert caplog.text == ""
        assert loss.watch(500, 0.04)  # the third display in a row above 1.5 x 0.02
        assert not loss.watch(600, 0.06)  # once only
    assert caplog.text.count("WARNING") == 1
    assert "start_lr" in caplog.text and "since step 300" in caplog.text


@pytest.mark.slow  # trains a model or builds the kernel
def test_dp_train_warns_when_the_network_makes_the_model_worse(tmp_path):
    """A far too high learning rate on the shipped Si8 data: dp train names start_lr."""
    convert_example(tmp_path / "data", points=4000, seed=0)
    inp = tiny_input(tmp_path / "data", steps=80)
    inp["learning_rate"] = {"type": "exp", "start_lr": 0.3, "stop_lr": 0.1, "smooth": True}
    inp["training"]["disp_freq"] = 10
    (tmp_path / "input.json").write_text(json.dumps(inp))
    out = run(["dp", "--tf", "train", "input.json"], cwd=tmp_path)
    log = out.stdout + out.stderr
    assert "effective degrees of freedom" in log and "held-out" in log
    assert re.search(r"WARNING.*training MAE .* has stayed above 1.5x .* lower learning_rate/start_lr", log), log[
        -3000:
    ]


def test_distance_shells_tell_an_ideal_lattice_in_any_cell_shape():
    """Perfect diamond Si has 3 shells of width 0 within 5 A, in the cubic and the primitive cell."""
    from deepmd_charge.grid import pair_distances
    from deepmd_charge.tf.basis import IDEAL_SHELL_WIDTH, distance_shells

    cubic = bulk("Si", "diamond", a=5.43, cubic=True)
    primitive = bulk("Si", "diamond", a=5.43)  # fcc vectors, 60 degrees apart
    for atoms in (cubic, primitive, cubic.repeat((1, 2, 1))):
        d = pair_distances(atoms.cell[:], atoms.positions, 5.0)
        assert len(d) == 28 * len(atoms)  # 4 + 12 + 12 neighbours per atom
        n, width = distance_shells(d)
        assert n == 3 and width < 1e-9
        np.testing.assert_allclose(np.unique(d.round(6)), 5.43 * np.sqrt([3 / 16, 1 / 2, 11 / 16]), atol=1e-6)
    rattled = cubic.copy()
    rattled.rattle(0.01, seed=1)
    assert distance_shells(pair_distances(rattled.cell[:], rattled.positions, 5.0))[1] > IDEAL_SHELL_WIDTH
    assert distance_shells(np.zeros(0)) == (0, 0.0)


@pytest.mark.slow  # trains a model
def test_an_ideal_lattice_switches_the_prior_off_for_good(tmp_path):
    """Training on the perfect crystal: a warning, no superposition fit, and the switch survives a
    restart, the freeze, and the tabulated prediction path."""
    from ase.io import read

    from deepmd_charge import DeepCharge
    from deepmd_charge.tf.tabulate import _constants

    cmd = [sys.executable, "-m", "deepmd_charge.cli", "convert", str(EXAMPLE_DFT / "perfect" / "CHGCAR.gz")]
    run([*cmd, "-o", str(tmp_path / "data"), "--points", "3000", "--seed", "0"])
    inp = tiny_input(tmp_path / "data", steps=40)
    inp["model"]["fitting_net"]["radial_basis"] = 6
    inp["training"].update(save_freq=20, disp_freq=10)  # DeePMD-kit saves only on display steps
    (tmp_path / "input.json").write_text(json.dumps(inp))
    out = run(["dp", "--tf", "train", "input.json"], cwd=tmp_path)
    log = out.stdout + out.stderr
    assert re.search(r"WARNING.*ideal lattice .* one of 2 values.* switched off", log), log[-3000:]
    assert "effective degrees of freedom" not in log  # no fit was made
    inp["training"]["numb_steps"] = 60
    (tmp_path / "input.json").write_text(json.dumps(inp))
    run(["dp", "--tf", "train", "--restart", "model.ckpt", "input.json"], cwd=tmp_path)
    run(["dp", "--tf", "freeze", "-o", "model.pb"], cwd=tmp_path)
    import tensorflow as tf

    graph_def = tf.compat.v1.GraphDef()
    graph_def.ParseFromString((tmp_path / "model.pb").read_bytes())
    consts = _constants(graph_def, ("fitting_attr/t_basis_", "charge_basis/"))
    assert consts["fitting_attr/t_basis_on"] == 0.0
    assert np.all(consts["charge_basis/weights"] == 0.0)  # never trained: its features are 0
    atoms = read(EXAMPLE_DFT / "rattled_a" / "POSCAR")
    pts = np.random.default_rng(1).random((400, 3)) @ atoms.cell[:]
    fast, plain = DeepCharge(tmp_path / "model.pb"), DeepCharge(tmp_path / "model.pb", tabulate=False)
    assert fast.tabulated, fast.why_not_tabulated
    np.testing.assert_allclose(fast.predict_points(atoms, pts), plain.predict_points(atoms, pts), rtol=0, atol=1e-10)


@pytest.mark.slow  # trains a model
def test_perfect_listed_first_with_a_rattled_cell_keeps_the_prior(tmp_path):
    """DeePMD-kit's statistics come from the first set: every set must hold every converted file."""
    files = [str(EXAMPLE_DFT / name / "CHGCAR.gz") for name in ("perfect", "rattled_a")]
    cmd = [sys.executable, "-m", "deepmd_charge.cli", "convert", *files]
    run([*cmd, "-o", str(tmp_path / "data"), "--points", "4000", "--seed", "0"])
    (tmp_path / "input.json").write_text(json.dumps(tiny_input(tmp_path / "data", steps=10)))
    out = run(["dp", "--tf", "train", "input.json"], cwd=tmp_path)
    log = out.stdout + out.stderr
    assert "ideal lattice" not in log and "effective degrees of freedom" in log, log[-3000:]
