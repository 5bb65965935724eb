"""dp train with the charge fitting on 2 Horovod ranks (where Horovod is installed: it is optional,
docs/large-systems.md says how to build it)."""

import importlib.util
import json
import os
import shutil
import sys

import numpy as np
import pytest

from conftest import EXAMPLE_DFT, convert_example, run, tiny_input

has_horovod = importlib.util.find_spec("horovod") is not None and shutil.which("mpirun") is not None


@pytest.mark.slow
@pytest.mark.skipif(not has_horovod, reason="Horovod (optional) or mpirun is not installed")
def test_two_horovod_ranks_train_a_charge_model(tmp_path):
    convert_example(tmp_path / "data", points=8000, seed=0)
    inp = tiny_input(tmp_path / "data", steps=40)
    inp["training"]["disp_freq"] = 20
    (tmp_path / "input.json").write_text(json.dumps(inp))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "DP_INTRA_OP_PARALLELISM_THREADS": "1"}
    import subprocess

    proc = subprocess.run(
        ["mpirun", "-np", "2", "dp", "--tf", "train", "input.json"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=env,
    )
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-3000:]
    assert "World Size:        2" in log or "World Size: 2" in log
    lcurve = np.loadtxt(tmp_path / "lcurve.out")
    assert np.all(np.isfinite(lcurve)) and lcurve[-1, 1] < lcurve[0, 1]  # rmse fell
    run(["dp", "--tf", "freeze", "-o", "model.pb"], cwd=tmp_path)
    out = run(
        [
            sys.executable,
            "-m",
            "deepmd_charge.cli",
            "test",
            str(tmp_path / "model.pb"),
            str(EXAMPLE_DFT / "rattled_b" / "CHGCAR.gz"),
            "--quiet",
        ]
    )
    assert "110592" in out.stdout  # scored on the whole 48^3 grid of an unseen cell
