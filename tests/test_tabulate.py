"""The tabulated prediction graph (tf/tabulate.py, tf/table_sum.cc) gives the plain graph's density."""

import json

import numpy as np
import pytest
from ase.build import bulk

from conftest import run


@pytest.mark.parametrize("degree, strides, tol", [(3, None, 1e-9), (5, (2.0**-7, 2.0**-4), 1e-10)])
def test_table_interpolates_smooth_functions(degree, strides, tol):
    from deepmd_charge.tf.tabulate import Table

    # derivatives of order 4 up to about 12, smoother than the embedding nets in x (3e-12 there)
    def f(x):
        return np.stack([np.sin(x), np.exp(-(x**2)), np.tanh(0.7 * x - 1)], axis=1)

    table = Table(f, -0.37, 2.1, 30.0, degree=degree, strides=strides)
    x = np.concatenate(
        [np.random.default_rng(0).uniform(-0.37, 30.0, 5000), [table.upper, table.upper - 1e-12, 29.999]]
    )
    assert np.abs(table(x) - f(x)).max() < tol
    # outside the range: the value at the nearest end
    np.testing.assert_allclose(table(np.array([-5.0])), f(np.array([table.lower])), atol=tol)
    assert table.coef.shape[1:] == (degree + 1, 3)


def _points_near_atoms(atoms, distances, seed=0):
    rng = np.random.default_rng(seed)
    dirs = rng.normal(size=(len(distances), 3))
    dirs /= np.linalg.norm(dirs, axis=1)[:, None]
    centres = atoms.positions[rng.integers(0, len(atoms), len(distances))]
    return centres + dirs * np.asarray(distances)[:, None]


@pytest.mark.parametrize(
    "quintic, env, fused",
    [
        (False, {}, "net"),  # the default in float64: the kernel computes the whole fitting net
        (True, {}, "net"),
        (False, {"DP_CHARGE_FUSE_TAIL": "0"}, "first"),  # the first layer only
        (False, {"DP_CHARGE_FUSE_FIRST_LAYER": "0"}, "none"),  # TensorFlow computes the fitting net
    ],
)
def test_tabulated_equals_plain_graph(trained, model, quintic, env, fused, monkeypatch):
    from deepmd_charge import DeepCharge
    from deepmd_charge.tf import tabulate

    if env:
        for k, v in env.items():
            monkeypatch.setenv(k, v)
        model = DeepCharge(trained["model"])
    if quintic:  # the kernel reads 4 or 6 coefficients a row: the quintic tables of earlier versions
        for name, value in {"DEGREE": 5, "FINE_STRIDE": 2.0**-7, "COARSE_STRIDE": 2.0**-4}.items():
            monkeypatch.setattr(tabulate, name, value)
        model = DeepCharge(trained["model"])
        op = next(o for o in model.session.graph.get_operations() if o.type == "ChargeDescriptor")
        assert op.inputs[3].shape[1] == 6
    assert model.tabulated, model.why_not_tabulated
    plain = DeepCharge(trained["model"], tabulate=False)
    assert not plain.tabulated
    atoms = bulk("Si", "diamond", a=5.43, cubic=True)
    atoms.rattle(0.1, seed=3)
    atoms.set_cell(atoms.cell[:] @ np.array([[1, 0, 0], [0.3, 1, 0], [0.1, -0.2, 1.05]]), scale_atoms=True)  # skewed
    pts = np.concatenate(
        [
            np.random.default_rng(1).random((500, 3)) @ atoms.cell[:],
            _points_near_atoms(atoms, np.linspace(0.05, 0.6, 60)),  # near nuclei (and inside CORE_RADIUS)
            _points_near_atoms(atoms, np.linspace(3.9, 4.05, 30), seed=2),  # neighbours crossing rcut (4 A)
            atoms.positions[:3],  # exactly on nuclei: NaN descriptor rows reach the kernel, then are replaced
        ]
    )
    np.testing.assert_allclose(model.predict_points(atoms, pts), plain.predict_points(atoms, pts), rtol=0, atol=1e-10)
    _assert_nets_never_run(model, fused)


FULL = {"radial_neuron": [4, 8], "radial_basis": 6}


@pytest.mark.slow  # trains a model per case
@pytest.mark.parametrize(
    "precision, atol, radial, descriptor",
    [
        ("float64", 1e-10, FULL, {}),
        # 24 embedding columns: with AVX-512 one 16-column vector block and 8 columns of the plain loops
        ("float32", 2e-5, FULL, {"neuron": [4, 24]}),
        # fitting layers that add to the previous one without idt, then one of another width; float32
        # with the first layer only in the kernel (not the default), TensorFlow's tail after it
        ("float64", 1e-10, {**FULL, "neuron": [8, 8, 4], "resnet_dt": False}, {}),
        ("float32", 2e-5, {**FULL, "neuron": [8, 8, 4], "fuse_tail": False}, {}),
        ("float64", 1e-10, {"radial_neuron": [], "radial_basis": 0}, {}),  # se_e2_a and fitting net only
        ("float64", 1e-10, {"radial_neuron": [4, 8], "radial_basis": 0}, {}),
        # one embedding net per neighbour element (scope filter_type_all), resnet, another activation
        ("float64", 1e-10, FULL, {"type_one_side": True, "resnet_dt": True, "activation_function": "gelu"}),
    ],
)
def test_two_elements_unequal_sel(tmp_path, precision, atol, radial, descriptor, monkeypatch):
    """Per-element neighbour blocks of different sizes, with and without the radial parts, both
    precisions, descriptor and fitting-net options."""
    from deepmd_charge import DeepCharge

    radial = dict(radial)
    fuse_tail = radial.pop("fuse_tail", True)
    if not fuse_tail:
        monkeypatch.setenv("DP_CHARGE_FUSE_TAIL", "0")

    atoms = bulk("NaCl", "rocksalt", a=5.0, cubic=True)
    atoms.rattle(0.15, seed=5)
    types = np.array([0 if s == "Na" else 1 for s in atoms.get_chemical_symbols()])
    rng = np.random.default_rng(0)
    sysdir = tmp_path / "data"
    (sysdir / "set.000").mkdir(parents=True)
    pts = rng.random((4, 50, 3)) @ atoms.cell[:]
    np.save(
        sysdir / "set.000" / "coord.npy",
        np.concatenate([np.tile(atoms.positions, (4, 1, 1)), pts], axis=1).reshape(4, -1),
    )
    np.save(sysdir / "set.000" / "box.npy", np.tile(atoms.cell[:].reshape(-1), (4, 1)))
    rho = np.concatenate([np.zeros((4, len(atoms))), 0.1 + rng.random((4, 50))], axis=1)
    np.save(sysdir / "set.000" / "density.npy", rho)
    (sysdir / "type.raw").write_text("\n".join(map(str, list(types) + [2] * 50)) + "\n")
    (sysdir / "type_map.raw").write_text("Na\nCl\nX\n")
    inp = {
        "model": {
            "type_map": ["Na", "Cl", "X"],
            "descriptor": {
                "type": "se_e2_a",
                "sel": [20, 30, 0],
                "rcut": 4.0,
                "neuron": [4, 8],
                "axis_neuron": 2,
                "seed": 1,
                "precision": precision,
                **descriptor,
            },
            "fitting_net": {"type": "charge", "neuron": [8], **radial, "seed": 1, "precision": precision},
        },
        "learning_rate": {"type": "exp", "start_lr": 1e-3, "stop_lr": 1e-4, "smooth": True},
        "training": {
            "training_data": {"systems": str(sysdir)},
            "numb_steps": 20,
            "disp_freq": 20,
            "save_freq": 20,
            "seed": 1,
        },
    }
    (tmp_path / "input.json").write_text(json.dumps(inp))
    run(["dp", "--tf", "train", "input.json"], cwd=tmp_path)
    run(["dp", "--tf", "freeze", "-o", "model.pb"], cwd=tmp_path)
    fast = DeepCharge(tmp_path / "model.pb")
    assert fast.tabulated, fast.why_not_tabulated
    plain = DeepCharge(tmp_path / "model.pb", tabulate=False)
    test_pts = np.concatenate(
        [rng.random((300, 3)) @ atoms.cell[:], _points_near_atoms(atoms, np.linspace(0.1, 1.0, 40))]
    )
    a, b = fast.predict_points(atoms, test_pts), plain.predict_points(atoms, test_pts)
    assert np.ptp(b) > 1e-3  # not a constant model
    np.testing.assert_allclose(a, b, rtol=0, atol=atol)
    _assert_nets_never_run(fast, "net" if fuse_tail else "first")


def _assert_nets_never_run(dc, fused):
    """What the density needs in the tabulated graph: one environment op, one kernel, no embedding
    or radial net, no concat of the fitting net's input (they would give the same numbers, slowly);
    fused "net": the kernel computes the whole fitting net, "first": its first layer, "none": none
    of it (no fitting-net MatMul of TensorFlow's / no first-layer MatMul / all of them run)."""
    needed, todo = set(), [dc.session.output.op]
    while todo:
        op = todo.pop()
        if op.name not in needed:
            needed.add(op.name)
            todo.extend(t.op for t in op.inputs)
            todo.extend(op.control_inputs)
    ops = [dc.session.graph.get_operation_by_name(n) for n in needed]
    assert [o.type for o in ops].count("ProdEnvMatA") == 1
    assert [o.type for o in ops].count("ChargeDescriptor") == 1
    slow = [
        o.name
        for o in ops
        if o.name.startswith(("tabulated/filter_type_", "tabulated/charge_radial/", "tabulated/o_descriptor"))
        or o.type == "ConcatV2"
        and o.name.startswith("tabulated/")
        and o.outputs[0].shape[-1] != 1  # not the output's
    ]
    assert not slow, slow
    kernel = next(o for o in ops if o.type == "ChargeDescriptor")
    mode = "net" if kernel.inputs[14].shape[0] > 0 else "first" if kernel.inputs[12].shape[1] > 0 else "none"
    matmuls = {o.name.split("/")[1] for o in ops if o.type == "MatMul" and "layer_" in o.name}
    assert (mode, any(m.startswith("layer_0_") for m in matmuls), bool(matmuls)) == {
        "net": ("net", False, False),
        "first": ("first", False, True),
        "none": ("none", True, True),
    }[fused]


def test_without_a_compiler_the_plain_graph_is_used(trained, monkeypatch, tmp_path):
    from deepmd_charge import DeepCharge
    from deepmd_charge.tf import kernel

    monkeypatch.setenv("CXX", "/bin/false")
    monkeypatch.setenv("DP_CHARGE_CACHE", str(tmp_path))
    kernel.load_kernel.cache_clear()
    try:
        dc = DeepCharge(trained["model"])
        assert not dc.tabulated and "kernel" in dc.why_not_tabulated
        atoms = bulk("Si", "diamond", a=5.43, cubic=True)
        assert np.all(np.isfinite(dc.predict(atoms, grid=(6, 6, 6))))
        assert not list(tmp_path.glob("*.so"))  # no half-built library left behind
    finally:
        kernel.load_kernel.cache_clear()


def test_a_table_build_failure_falls_back_to_the_plain_graph(trained, monkeypatch):
    """A model layout the tables do not handle never stops prediction: the plain graph runs, and
    the reason is kept (dp-charge predict prints it on its summary line)."""
    from deepmd_charge import DeepCharge
    from deepmd_charge.tf import tabulate

    def broken(*args, **kwargs):
        raise KeyError("filter_type_1/idt_1_0")

    monkeypatch.setattr(tabulate, "build_tabulated_graph", broken)
    dc = DeepCharge(trained["model"])
    assert not dc.tabulated and "could not be built" in dc.why_not_tabulated and "idt_1_0" in dc.why_not_tabulated
    assert np.all(np.isfinite(dc.predict(bulk("Si", "diamond", a=5.43, cubic=True), grid=(6, 6, 6))))
