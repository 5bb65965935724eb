"""Physics of a real (tiny) trained model: invariances, chunking, nuclei, agreement with DeePMD-kit."""

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk
from scipy.spatial.transform import Rotation

import deepmd_charge.predict as predict_mod
from conftest import EXAMPLE_DFT
from deepmd_charge.errors import InputError
from deepmd_charge.io.chgcar import read_chgcar


@pytest.fixture(scope="module")
def structure():
    atoms = read_chgcar(EXAMPLE_DFT / "rattled_b" / "CHGCAR.gz").atoms
    pts = np.random.default_rng(7).random((400, 3)) @ atoms.cell[:]
    return atoms, pts


def test_matches_stock_deepmd_eval(model, trained, structure):
    """Our chunked neighbour lists give DeePMD-kit's own answer (all ghosts as atoms of one frame)."""
    from deepmd.tf.infer import DeepDOS

    atoms, pts = structure
    ours = model.predict_points(atoms, pts)
    stock = DeepDOS(str(trained["model"]))
    coords = np.concatenate([atoms.positions, pts]).reshape(1, -1)
    _, atomic = stock.eval(coords, atoms.cell[:].reshape(1, 9), [0] * len(atoms) + [1] * len(pts), atomic=True)
    np.testing.assert_allclose(ours, atomic.reshape(-1)[len(atoms) :], atol=1e-10)


def test_rotation_translation_permutation_invariance(model, structure):
    atoms, pts = structure
    ref = model.predict_points(atoms, pts)
    rot = Rotation.from_euler("zyx", [37, -21, 64], degrees=True).as_matrix()
    shift = np.array([0.37, -1.21, 2.9])
    moved = Atoms(
        atoms.get_chemical_symbols(), positions=atoms.positions @ rot.T + shift, cell=atoms.cell[:] @ rot.T, pbc=True
    )
    np.testing.assert_allclose(model.predict_points(moved, pts @ rot.T + shift), ref, atol=1e-8)
    perm = np.random.default_rng(3).permutation(len(atoms))
    np.testing.assert_allclose(model.predict_points(atoms[perm], pts), ref, atol=1e-8)
    # periodicity: a point one lattice vector away has the same density
    np.testing.assert_allclose(model.predict_points(atoms, pts + atoms.cell[1] - 2 * atoms.cell[2]), ref, atol=1e-8)


def test_same_prediction_whatever_the_chunking(model, structure, monkeypatch):
    atoms, _ = structure
    ref = model.predict(atoms, grid=(12, 14, 16))
    monkeypatch.setattr(predict_mod, "BIN_LENGTH", 0.5)
    monkeypatch.setattr(model, "chunk_points", 37)
    np.testing.assert_allclose(model.predict(atoms, grid=(12, 14, 16)), ref, atol=1e-10)
    monkeypatch.setattr(predict_mod, "BIN_LENGTH", 100.0)  # one bin for the whole cell
    monkeypatch.setattr(model, "chunk_points", 10**6)
    np.testing.assert_allclose(model.predict(atoms, grid=(12, 14, 16)), ref, atol=1e-10)


def test_supercell_gives_the_same_density(model, structure):
    """Linear in system size and correct across periodic images: a 2x1x1 supercell repeats the cell."""
    atoms, _ = structure
    rho = model.predict(atoms, grid=(8, 8, 8))
    rho2 = model.predict(atoms.repeat((2, 1, 1)), grid=(16, 8, 8))
    np.testing.assert_allclose(rho2[:8], rho, atol=1e-10)
    np.testing.assert_allclose(rho2[8:], rho, atol=1e-10)


def test_perfect_crystal_with_grid_points_on_nuclei(model):
    """A perfect crystal's grid contains the nuclei: the density there must be finite and smooth."""
    atoms = bulk("Si", "diamond", a=5.43, cubic=True)
    rho = model.predict(atoms, grid=(24, 24, 24))
    assert np.all(np.isfinite(rho))
    on_nucleus = rho[0, 0, 0]
    near = model.predict_points(atoms, np.array([[0.15, 0.0, 0.0], [0.0, -0.15, 0.0], [0.0, 0.0, 0.15]]))
    assert abs(on_nucleus - near.mean()) < 0.5 * (rho.max() - rho.min())
    # the nucleus at (1/4,1/4,1/4) is equivalent by symmetry to the one at the origin
    assert rho[6, 6, 6] == pytest.approx(on_nucleus, abs=1e-8)


def test_grid_prediction_equals_the_same_points_one_by_one(model):
    """The grid path finds near-nucleus points from the nuclei (grid.grid_points_near_atoms), the
    point path by a search of every point: a skewed, rattled cell whose grid holds points on and
    next to nuclei gives the same density both ways, also in slabs of planes."""
    from deepmd_charge.grid import cartesian_points

    atoms = bulk("Si", "diamond", a=5.43, cubic=True)
    atoms.set_cell(atoms.cell[:] @ np.array([[1, 0, 0], [0.2, 1, 0], [0.1, -0.1, 1]]), scale_atoms=True)
    atoms.positions[1:] += np.random.default_rng(4).normal(scale=0.03, size=(len(atoms) - 1, 3))
    shape = (20, 20, 20)  # atom 0 at the origin is on a grid point
    rho = model.predict(atoms, grid=shape)
    pts = cartesian_points(atoms.cell[:], shape)
    np.testing.assert_allclose(rho.ravel(), model.predict_points(atoms, pts), rtol=0, atol=1e-12)
    slabs = list(model.iter_slabs(atoms, shape, slab_points=20 * 20 * 3))
    assert len(slabs) == 7
    np.testing.assert_allclose(np.concatenate([s[2] for s in slabs], axis=2), rho, rtol=0, atol=1e-12)


def test_progress_bar_counts_grid_points_with_nuclei_on_the_grid(model, capsys):
    """Points on nuclei are evaluated as spheres of extra points: the bar's total must not grow."""
    atoms = bulk("Si", "diamond", a=5.43, cubic=True)
    model.predict(atoms, grid=(24, 24, 24), progress=True)
    model.predict_points(atoms, np.array([[0.0, 0.0, 0.0], [1.0, 1.0, 1.0]]), progress=True)
    bars = capsys.readouterr().err
    assert "13.8k/13.8k" in bars and "2.00/2.00" in bars, bars[-500:]
    assert "/14" not in bars  # never a grown total


def test_unknown_element_is_a_clear_error(model):
    with pytest.raises(InputError, match=r"element\(s\) \['O'\] that the model does not know"):
        model.predict(Atoms("O", cell=[3, 3, 3], pbc=True), grid=(4, 4, 4))


def test_with_block_closes_the_session(trained, structure):
    """`with DeepCharge(...) as dc:` predicts inside the block and releases the session at its end."""
    from deepmd_charge import DeepCharge

    atoms, _ = structure
    with DeepCharge(trained["model"]) as dc:
        inside = dc.predict(atoms, grid=(4, 4, 4))
        assert not dc.session.closed
    assert np.all(np.isfinite(inside))
    assert dc.session.closed and dc.session.tf_session is None
    with pytest.raises(RuntimeError, match=r"model .*model\.pb was closed .*load it again"):
        dc.predict(atoms, grid=(4, 4, 4))
    dc.close()  # twice is harmless


def test_not_a_charge_model(tmp_path):
    from deepmd_charge import DeepCharge

    (tmp_path / "junk.pb").write_bytes(b"\x00\x01not a graph")
    with pytest.raises(InputError, match="not a frozen TensorFlow model|not a DeePMD-kit model"):
        DeepCharge(tmp_path / "junk.pb")
    with pytest.raises(InputError, match="no such model file"):
        DeepCharge(tmp_path / "missing.pb")


def test_training_logged_the_charge_statistics(trained):
    log = trained["train_log"]
    assert "charge neighbour statistics" in log
    assert "charge fitting: density mean" in log
    lcurve = np.loadtxt(trained["dir"] / "lcurve.out")
    assert lcurve[-1, 1] < 0.5 * lcurve[0, 1]  # rmse fell during 300 steps


def test_dp_compress_keeps_the_density(trained, structure):
    """dp compress rebuilds the model from its training script: the radial net must come along."""
    from conftest import run
    from deepmd_charge import DeepCharge

    atoms, pts = structure
    out = trained["dir"] / "model-compressed.pb"
    run(["dp", "--tf", "compress", "-i", str(trained["model"]), "-o", str(out)], cwd=trained["dir"])
    ref = DeepCharge(trained["model"]).predict_points(atoms, pts)
    np.testing.assert_allclose(DeepCharge(out).predict_points(atoms, pts), ref, atol=1e-6)


def test_a_deepmd_model_that_is_not_a_charge_model(tmp_path):
    """A frozen DeePMD-kit graph of another kind (here an energy model's training script) is refused."""
    import json

    from deepmd.tf.env import tf

    from deepmd_charge import DeepCharge

    graph = tf.Graph()
    with graph.as_default():
        for name, dtype in (
            ("t_coord", tf.float64),
            ("t_box", tf.float64),
            ("t_type", tf.int32),
            ("t_natoms", tf.int32),
            ("t_mesh", tf.int32),
        ):
            tf.placeholder(dtype, [None], name=name)
        tf.constant("Si", name="model_attr/tmap")
        tf.constant(6.0, tf.float64, name="descrpt_attr/rcut")
        tf.constant(json.dumps({"model": {"fitting_net": {"type": "ener"}}}), name="train_attr/training_script")
        tf.constant([0.0], tf.float64, name="o_atom_dos")
    (tmp_path / "ener.pb").write_bytes(graph.as_graph_def().SerializeToString())
    with pytest.raises(InputError, match="ener.pb: is not a deepmd-charge model"):
        DeepCharge(tmp_path / "ener.pb")


def test_ase_reads_the_predicted_chgcar(model, tmp_path):
    """VASP-format output that ASE's own CHGCAR reader (used by many tools) accepts, same numbers."""
    from ase.calculators.vasp import VaspChargeDensity

    from deepmd_charge.io.chgcar import write_chgcar

    atoms = read_chgcar(EXAMPLE_DFT / "rattled_b" / "CHGCAR.gz").atoms
    rho = model.predict(atoms, grid=(10, 12, 14))
    write_chgcar(tmp_path / "CHGCAR", atoms, [rho])
    theirs = VaspChargeDensity(str(tmp_path / "CHGCAR"))
    np.testing.assert_allclose(theirs.chg[0], rho, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(theirs.atoms[0].positions, atoms.positions, atol=1e-10)
