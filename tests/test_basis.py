"""Radial basis sums (superposition of atomic densities): numpy and TensorFlow agree, the fit works."""

import json

import numpy as np
import pytest
from ase.build import bulk

from conftest import run
from deepmd_charge.tf.basis import basis_sums_numpy, least_squares, phi


def test_phi_is_smooth_and_zero_outside():
    r = np.array([0.0, 1e-9, 1.0, 3.999, 4.0, 5.0, -1.0])
    f = phi(r, 4.0, 8)
    assert f.shape == (7, 8)
    assert np.all(f[[0, 4, 5, 6]] == 0)  # empty slot, at and beyond rcut
    assert np.all(f[3] < 1e-5)  # the cosine cutoff takes it smoothly to zero
    assert f[2].max() > 0.3


def test_phi_numpy_and_tensorflow_agree():
    from deepmd.tf.env import tf

    r = np.random.default_rng(0).random((5, 7)) * 5.5
    r[0, :3] = 0.0
    with tf.Graph().as_default(), tf.Session() as sess:
        got = sess.run(phi(tf.constant(r), 5.0, 12, xp=tf))
    np.testing.assert_allclose(got, phi(r, 5.0, 12), atol=1e-12)


def test_basis_sums_against_a_brute_force_loop_in_a_skewed_cell():
    atoms = bulk("NaCl", "rocksalt", a=4.1)  # primitive fcc cell: non-orthogonal, two elements
    atoms.rattle(0.1, seed=2)
    types = np.array([0 if s == "Na" else 1 for s in atoms.get_chemical_symbols()])
    pts = np.random.default_rng(1).random((6, 3)) @ atoms.cell[:] + 7.3  # outside the cell: wrapped
    rcut, k = 4.5, 6
    got = basis_sums_numpy(atoms.cell[:], atoms.positions, types, pts, 2, rcut, k)
    want = np.zeros((len(pts), 2, k))
    rng = range(-5, 6)
    for p, x in enumerate(pts):
        for a, y in enumerate(atoms.positions):
            for i in rng:
                for j in rng:
                    for m in rng:
                        d = np.linalg.norm(x - y - np.array([i, j, m]) @ atoms.cell[:])
                        want[p, types[a]] += phi(np.array([d]), rcut, k)[0]
    np.testing.assert_allclose(got, want.reshape(len(pts), -1), atol=1e-10)


def test_least_squares_recovers_weights():
    rng = np.random.default_rng(4)
    feats = rng.random((500, 10))
    w = rng.normal(size=10)
    w_fit, b = least_squares(feats, feats @ w + 0.3)
    np.testing.assert_allclose(w_fit, w, atol=1e-3)
    assert abs(b - 0.3) < 1e-3


@pytest.mark.slow  # trains a model or builds the kernel
def test_two_element_superposition_is_fitted_before_training(tmp_path):
    """A density that IS a superposition of two atomic densities is fitted at step 0.

    This checks that the graph's per-element neighbour slots match the numpy fit: with the
    elements mixed up, the step-0 error would be as large as the density's own spread.
    """
    atoms = bulk("NaCl", "rocksalt", a=5.0, cubic=True)
    atoms.rattle(0.15, seed=5)
    types = np.array([0 if s == "Na" else 1 for s in atoms.get_chemical_symbols()])
    rng = np.random.default_rng(0)
    nframes, npts = 20, 100
    sysdir = tmp_path / "data"
    (sysdir / "set.000").mkdir(parents=True)
    coords, dens = [], []
    for _ in range(nframes):
        pts = rng.random((npts, 3)) @ atoms.cell[:]
        d = np.linalg.norm(
            pts[:, None, :]
            - np.concatenate(
                [atoms.positions + s @ atoms.cell[:] for s in np.ndindex(3, 3, 3) for s in [np.array(s) - 1]]
            )[None],
            axis=2,
        )
        tt = np.tile(types, 27)
        rho = (np.where(tt == 0, 0.2 * np.exp(-((d / 1.0) ** 2)), 0.5 * np.exp(-((d / 0.7) ** 2))) * (d < 4.0)).sum(
            axis=1
        )
        coords.append(np.concatenate([atoms.positions, pts]).reshape(-1))
        dens.append(np.concatenate([np.zeros(len(atoms)), rho]))
    np.save(sysdir / "set.000" / "coord.npy", np.array(coords))
    np.save(sysdir / "set.000" / "box.npy", np.tile(atoms.cell[:].reshape(-1), (nframes, 1)))
    np.save(sysdir / "set.000" / "density.npy", np.array(dens))
    (sysdir / "type.raw").write_text("\n".join(map(str, list(types) + [2] * npts)) + "\n")
    (sysdir / "type_map.raw").write_text("Na\nCl\nX\n")
    spread = np.abs(np.array(dens)[:, len(atoms) :] - np.mean(np.array(dens)[:, len(atoms) :])).mean()
    inp = {
        "model": {
            "type_map": ["Na", "Cl", "X"],
            "descriptor": {
                "type": "se_e2_a",
                "sel": [40, 40, 0],
                "rcut": 4.0,
                "neuron": [4, 8],
                "axis_neuron": 2,
                "seed": 1,
            },
            "fitting_net": {"type": "charge", "neuron": [8], "radial_neuron": [], "radial_basis": 24, "seed": 1},
        },
        "learning_rate": {"type": "exp", "start_lr": 1e-4, "stop_lr": 1e-5, "smooth": True},
        "training": {
            "training_data": {"systems": str(sysdir)},
            "numb_steps": 1,
            "disp_freq": 1,
            "save_freq": 1,
            "seed": 1,
        },
    }
    (tmp_path / "input.json").write_text(json.dumps(inp))
    run(["dp", "--tf", "train", "input.json"], cwd=tmp_path)
    step0 = np.loadtxt(tmp_path / "lcurve.out", ndmin=2)[0]
    mae0 = step0[2]  # step, rmse_trn, mae_trn, lr
    assert mae0 < 0.05 * spread, (mae0, spread)
