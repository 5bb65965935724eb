"""dp-charge input: the recommended input.json is derived from the data and trains as written."""

import json

import numpy as np
import pytest
from ase.build import bulk

from conftest import EXAMPLE_DFT, run
from deepmd_charge import recipe
from deepmd_charge.errors import InputError
from deepmd_charge.io.chgcar import write_chgcar


def _lr_at(jdata, step):
    from deepmd.dpmodel.utils.learning_rate import BaseLR

    params = dict(jdata["learning_rate"])
    return BaseLR(**params, num_steps=jdata["training"]["numb_steps"]).value(step)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    work = tmp_path_factory.mktemp("recipe")
    nacl = bulk("NaCl", "rocksalt", a=5.64)
    write_chgcar(work / "CHGCAR_nacl", nacl, [np.full((12, 12, 12), 0.3)])
    run(
        [
            "dp-charge",
            "convert",
            str(EXAMPLE_DFT / "rattled_a" / "CHGCAR.gz"),
            str(work / "CHGCAR_nacl"),
            "-o",
            str(work / "data"),
            "--points",
            "2000",
            "--seed",
            "0",
        ]
    )
    return work


def test_input_from_the_data(data):
    jdata = recipe.recommended_input([data / "data"], steps=1234)
    model = jdata["model"]
    assert model["type_map"][-1] == "X" and sorted(model["type_map"][:-1]) == ["Cl", "Na", "Si"]
    info = recipe.data_summary([data / "data"])
    for element, count in zip(info["elements"], info["max_neighbours"]):
        sel = model["descriptor"]["sel"][model["type_map"].index(element)]
        assert count <= sel <= count * recipe.SEL_MARGIN + 4
    assert model["descriptor"]["sel"][-1] == 0
    assert len(jdata["training"]["training_data"]["systems"]) == 2  # one system per composition
    # the learning rate decays every step and ends at stop_lr on the last step
    lr = [_lr_at(jdata, s) for s in (0, 1, 617, 1233, 1234)]
    assert lr[0] == pytest.approx(recipe.START_LR) and lr[-1] == pytest.approx(recipe.STOP_LR, rel=1e-6)
    assert all(a > b for a, b in zip(lr, lr[1:]))


@pytest.mark.slow  # trains a model or builds the kernel
def test_written_input_trains_as_is(data, tmp_path):
    si = tmp_path / "si"
    run(
        [
            "dp-charge",
            "convert",
            str(EXAMPLE_DFT / "rattled_a" / "CHGCAR.gz"),
            "-o",
            str(si),
            "--points",
            "1000",
            "--seed",
            "0",
        ]
    )
    out = run(["dp-charge", "input", str(si), "-o", str(tmp_path / "input.json"), "--steps", "20"], cwd=tmp_path)
    assert "20 steps" in out.stdout and "'Si', 'X'" in out.stdout
    jdata = json.loads((tmp_path / "input.json").read_text())
    jdata["model"]["descriptor"].update(neuron=[4, 8], axis_neuron=4)  # keep the test's training short
    jdata["model"]["fitting_net"]["neuron"] = [8]
    (tmp_path / "input.json").write_text(json.dumps(jdata))
    run(["dp", "--tf", "train", "input.json"], cwd=tmp_path)
    last = (tmp_path / "lcurve.out").read_text().strip().splitlines()[-1].split()
    assert int(last[0]) == 20 and float(last[-1]) == pytest.approx(recipe.STOP_LR, rel=1e-3)


def test_input_errors(data, tmp_path):
    with pytest.raises(InputError, match="no such data folder"):
        recipe.recommended_input([tmp_path / "nothing"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no deepmd/npy system"):
        recipe.recommended_input([tmp_path / "empty"])
    for bad in (["--steps", "0"], ["--minutes", "-1"], ["--rcut", "0.2"]):
        proc = run(["dp-charge", "input", str(data / "data"), "-o", str(tmp_path / "x.json"), *bad], check=False)
        assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "error:" in proc.stderr, proc.stderr
    assert not (tmp_path / "x.json").exists()
