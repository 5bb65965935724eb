"""Ghost-centred training frames (tf/ghost_frame.py) give every grid point the descriptor it had.

The rewrite feeds DeePMD-kit's environment op one frame whose only centres are the ghosts, with
the real atoms' periodic images and a neighbour list built in the graph. These tests build
DeePMD-kit's se_e2_a descriptor on the same batch both ways and compare the grid points' rows.
"""

from __future__ import annotations

import numpy as np
import pytest

tf = pytest.importorskip("deepmd.tf.env").tf

from deepmd.tf.descriptor import DescrptSeA  # noqa: E402

from deepmd_charge.tf.ghost_frame import ghost_centred  # noqa: E402

RCUT = 4.0


def _batch(cell, n_real, n_ghost, nframes, rng):
    """Frames of one system: n_real atoms of types 0/1 (some outside the cell), then ghosts (type 2)."""
    frac_r = rng.uniform(-0.6, 1.6, size=(nframes, n_real, 3))  # unwrapped atoms, as rattled data has
    frac_g = rng.uniform(0.0, 1.0, size=(nframes, n_ghost, 3))
    xyz = np.concatenate([frac_r, frac_g], axis=1) @ cell
    types = np.array([0] * (n_real // 2) + [1] * (n_real - n_real // 2) + [2] * n_ghost)
    natoms = np.array([len(types), len(types), n_real // 2, n_real - n_real // 2, n_ghost], dtype=np.int32)
    return xyz.reshape(nframes, -1), np.tile(types, (nframes, 1)), natoms, np.tile(cell.reshape(9), (nframes, 1))


def _descriptors(xyz, types, natoms, box, mesh):
    """Ghost rows of se_e2_a for the batch as DeePMD-kit reads it, and for the ghost-centred frame."""
    n_ghost = int(natoms[-1])
    graph = tf.Graph()
    with graph.as_default():
        ph = dict(
            coord=tf.placeholder(tf.float64, [None, None]),
            atype=tf.placeholder(tf.int32, [None, None]),
            natoms=tf.placeholder(tf.int32, [5]),
            box=tf.placeholder(tf.float64, [None, 9]),
            mesh=tf.placeholder(tf.int32, [None]),
        )
        d = DescrptSeA(rcut=RCUT, rcut_smth=0.5, sel=[30, 30, 0], neuron=[4, 8], axis_neuron=2, seed=1)
        stock = d.build(ph["coord"], ph["atype"], ph["natoms"], ph["box"], ph["mesh"], {}, reuse=False)
        args = ghost_centred(ph["coord"], ph["atype"], ph["natoms"], ph["box"], ph["mesh"], ntypes=3, rcut=RCUT)
        ours = d.build(*args, {}, reuse=True)
        with tf.Session(graph=graph) as sess:
            sess.run(tf.global_variables_initializer())
            feed = {ph["coord"]: xyz, ph["atype"]: types, ph["natoms"]: natoms, ph["box"]: box, ph["mesh"]: mesh}
            a, b, n_new = sess.run([stock, ours, args[2]], feed)
    dim = d.get_dim_out()
    nframes = xyz.shape[0]
    a = a.reshape(nframes, -1, dim)[:, -n_ghost:]
    b = b.reshape(nframes, n_ghost, dim)
    return a, b, n_new


@pytest.mark.parametrize(
    "cell",
    [
        np.diag([5.43, 5.43, 5.43]),  # one image shell
        np.array([[3.2, 0.0, 0.0], [1.6, 2.77, 0.0], [0.3, 0.5, 3.0]]),  # triclinic, heights < rcut: two shells
        np.diag([12.0, 7.0, 9.0]),  # larger than rcut along every axis
    ],
    ids=["cubic", "triclinic-small", "orthorhombic-large"],
)
def test_ghost_rows_equal_deepmd_kits_own_frame(cell):
    rng = np.random.default_rng(3)
    xyz, types, natoms, box = _batch(cell, n_real=6, n_ghost=25, nframes=3, rng=rng)
    a, b, natoms_new = _descriptors(xyz, types, natoms, box, np.zeros(6, dtype=np.int32))
    assert natoms_new[0] == 3 * 25 and natoms_new[-1] == 3 * 25 and natoms_new[2] == natoms_new[3] == 0
    assert np.abs(a).max() > 1e-3  # the points do have neighbours
    np.testing.assert_allclose(b, a, rtol=1e-9, atol=1e-13)


def test_without_pbc_no_images_are_made():
    rng = np.random.default_rng(4)
    cell = np.diag([6.0, 6.0, 6.0])
    xyz, types, natoms, box = _batch(cell, n_real=6, n_ghost=20, nframes=2, rng=rng)
    a, b, natoms_new = _descriptors(xyz, types, natoms, box, np.zeros(0, dtype=np.int32))
    assert natoms_new[1] == 2 * 20 + 2 * 6  # the ghosts, then each frame's real atoms once
    np.testing.assert_allclose(b, a, rtol=1e-9, atol=1e-13)


def test_a_mesh_holding_a_neighbour_list_passes_through():
    """Prediction feeds ghost-centred frames already (predict.py): they must reach the op unchanged."""
    graph = tf.Graph()
    with graph.as_default():
        mesh = tf.placeholder(tf.int32, [None])
        coord = tf.placeholder(tf.float64, [None, None])
        args = ghost_centred(
            coord,
            tf.constant([[2, 0]]),
            tf.constant([1, 2, 0, 0, 1]),
            tf.zeros([1, 9], tf.float64),
            mesh,
            ntypes=3,
            rcut=RCUT,
        )
        with tf.Session(graph=graph) as sess:
            given = np.array([1] + [0] * 15 + [0, 1, 1], dtype=np.int32)
            out = sess.run(args, {mesh: given, coord: [[0.0, 0.0, 0.0, 1.0, 0.0, 0.0]]})
    np.testing.assert_array_equal(out[4], given)
    np.testing.assert_array_equal(out[2], [1, 2, 0, 0, 1])
    np.testing.assert_array_equal(out[0], [[0.0, 0.0, 0.0, 1.0, 0.0, 0.0]])
