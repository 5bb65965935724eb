import numpy as np
import pytest

from deepmd_charge.tf.fitting import check_ghost_setup
from deepmd_charge.tf.loss import ChargeLoss


def _loss_values(pred, label, natoms, loss_func="mse"):
    from deepmd.tf.env import tf

    graph = tf.Graph()
    with graph.as_default():
        loss = ChargeLoss(starter_learning_rate=1e-3, ghost_type=1, loss_func=loss_func)
        t_pred = tf.constant(pred.reshape(1, -1, 1))
        t_label = tf.constant(label.reshape(1, -1))
        l2, more = loss.build(
            tf.constant(1e-3, tf.float64),
            tf.constant(natoms, tf.int32),
            {"atom_dos": t_pred},
            {"density": t_label, "find_density": tf.constant(1.0, tf.float64)},
            "",
        )
        with tf.Session(graph=graph) as sess:
            return sess.run([l2, more["mse"], more["mae"]])


def test_loss_reads_ghost_atoms_only():
    natoms = np.array([7, 7, 3, 4])  # 3 real atoms (type 0), then 4 ghosts (type 1)
    pred = np.array([0.0, 0.0, 0.0, 1.0, 2.0, 3.0, 4.0])
    label = np.array([0.0, 0.0, 0.0, 1.5, 2.0, 2.0, 4.0])
    base = _loss_values(pred, label, natoms)
    np.testing.assert_allclose(base[1], (0.25 + 0 + 1 + 0) / 4)
    np.testing.assert_allclose(base[2], (0.5 + 0 + 1 + 0) / 4)
    # anything at the real atoms changes nothing
    pred2, label2 = pred.copy(), label.copy()
    pred2[:3] = [100.0, -5.0, 7.0]
    label2[:3] = [3.0, 1e3, -2.0]
    np.testing.assert_allclose(_loss_values(pred2, label2, natoms), base)


@pytest.mark.parametrize(
    "func, expected",
    [
        ("mae", (0.5 + 1) / 4),
        ("huber", (0.01 * (0.5 - 0.005) + 0.01 * (1 - 0.005)) / 4),
        ("relative", (0.5 / 1.51 + 1 / 2.01) / 4),
    ],
)
def test_loss_functions(func, expected):
    natoms = np.array([5, 5, 1, 4])
    pred = np.array([0.0, 1.0, 2.0, 3.0, 4.0])
    label = np.array([0.0, 1.5, 2.0, 2.0, 4.0])
    np.testing.assert_allclose(_loss_values(pred, label, natoms, func)[0], expected)


def test_unknown_loss_function_is_refused():
    with pytest.raises(ValueError, match="loss_func"):
        ChargeLoss(starter_learning_rate=1e-3, ghost_type=1, loss_func="l4")


class _Descriptor:
    def __init__(self, sel):
        self.sel_a = sel


def test_ghost_type_must_be_last_with_sel_zero():
    check_ghost_setup(["Si", "X"], _Descriptor([40, 0]))
    with pytest.raises(ValueError, match=r"must have sel 0.*use \[40, 0\]"):
        check_ghost_setup(["Si", "X"], _Descriptor([40, 10]))
    with pytest.raises(ValueError, match="type_map with the elements followed by the ghost"):
        check_ghost_setup(["Si"], _Descriptor([40]))
    with pytest.raises(ValueError, match="ghost"):  # forgot the ghost: the last type is an element
        check_ghost_setup(["Si", "O"], _Descriptor([40, 0]))


def test_neighbour_statistics_of_charge_data(tmp_path):
    """sel "auto" counts only real neighbours (ghost sel 0); the minimum distance is ghost-atom or atom-atom."""
    import dpdata
    from deepmd.utils.data_system import DeepmdDataSystem

    from conftest import EXAMPLE_DFT
    from deepmd_charge.grid import CORE_RADIUS
    from deepmd_charge.tf.neighbor_stat import update_sel_for_charge

    system = dpdata.System(
        str(EXAMPLE_DFT / "rattled_a" / "CHGCAR.gz"), fmt="vasp/chgcar", points_per_frame=100, n_points=2000, seed=0
    )
    system.to("deepmd/npy", str(tmp_path / "data"), set_size=len(system))
    data = DeepmdDataSystem([str(tmp_path / "data")], batch_size=1, test_size=1, rcut=5.0, type_map=["Si", "X"])
    model = {"descriptor": {"type": "se_e2_a", "sel": "auto", "rcut": 5.0}, "fitting_net": {"type": "charge"}}
    out, min_dist = update_sel_for_charge(data, ["Si", "X"], model)
    sel = out["descriptor"]["sel"]
    assert sel[1] == 0
    # diamond Si within 5 A of a point: about 26 atoms on average; 1.1 x the maximum, rounded up to 4
    assert 28 <= sel[0] <= 52 and sel[0] % 4 == 0
    assert CORE_RADIUS <= min_dist < 2.0
    assert model["descriptor"]["sel"] == "auto"  # the caller's dict is not modified
