import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE_DFT = ROOT / "examples" / "silicon" / "dft"
SHARED = ROOT.parent / "shared" / "data"
CORPUS = SHARED / "chgcar-corpus"

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

#: fixtures that run `dp train` or pw.x (once per session or module): tests using them are "slow";
#: tests that train or build the kernel themselves carry @pytest.mark.slow
SLOW_FIXTURES = {"trained", "model", "qe"}


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "slow: trains a model, builds the kernel or runs DFT (deselect with -m 'not slow')"
    )


def pytest_collection_modifyitems(config, items):
    for item in items:
        if SLOW_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


needs_shared = pytest.mark.skipif(not CORPUS.is_dir(), reason="../shared/data is not present (fresh clone)")


def run(cmd, cwd=None, check=True):
    """Run a command; return CompletedProcess with text output."""
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise AssertionError(
            f"{' '.join(map(str, cmd))} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        )
    return proc


def convert_example(out, points: int, seed: int):
    """dp-charge convert of the shipped Si8 density (rattled_a) into `out`: `points` points, `seed`."""
    cmd = [sys.executable, "-m", "deepmd_charge.cli", "convert", str(EXAMPLE_DFT / "rattled_a" / "CHGCAR.gz")]
    return run([*cmd, "-o", str(out), "--points", str(points), "--seed", str(seed)])


def tiny_input(systems, steps=300):
    return {
        "model": {
            "type_map": ["Si", "X"],
            "descriptor": {
                "type": "se_e2_a",
                "sel": [40, 0],
                "rcut": 4.0,
                "rcut_smth": 0.5,
                "neuron": [8, 16],
                "axis_neuron": 4,
                "seed": 1,
            },
            "fitting_net": {"type": "charge", "neuron": [32, 32], "seed": 1},
        },
        "learning_rate": {"type": "exp", "start_lr": 0.003, "stop_lr": 1e-4, "smooth": True},
        "training": {
            "training_data": {"systems": str(systems)},
            "numb_steps": steps,
            "disp_freq": 100,
            "save_freq": steps,
            "seed": 1,
        },
    }


@pytest.fixture(scope="session")
def trained(tmp_path_factory):
    """convert -> dp train (300 steps) -> dp freeze on the shipped Si8 GPAW data: a real, tiny model."""
    work = tmp_path_factory.mktemp("train")
    convert_example(work / "data", points=20000, seed=0)
    (work / "input.json").write_text(json.dumps(tiny_input(work / "data")))
    train = run(["dp", "--tf", "train", "input.json"], cwd=work)
    run(["dp", "--tf", "freeze", "-o", "model.pb"], cwd=work)
    return {"dir": work, "model": work / "model.pb", "train_log": train.stdout + train.stderr}


@pytest.fixture(scope="session")
def model(trained):
    from deepmd_charge import DeepCharge

    return DeepCharge(trained["model"])
