"""Pictures and output names: geometry and numbers behind them (no model needed)."""

import numpy as np
import pytest
from ase import Atoms

from deepmd_charge.errors import InputError
from deepmd_charge.plot import (
    axis_index,
    parity_plot,
    planar_average,
    planar_average_plot,
    plane_geometry,
    plane_index,
    short_names,
    slice_plot,
)
from deepmd_charge.trajectory import frame_name, may_hold_frames, select_frames


@pytest.mark.parametrize(
    "output, name",
    [
        ("CHGCAR_pred", "CHGCAR_pred_0007"),
        ("rho.cube", "rho_0007.cube"),
        ("CHGCAR.gz", "CHGCAR_0007.gz"),
        ("rho.cube.gz", "rho_0007.cube.gz"),
        ("out/CHGCAR", "out/CHGCAR_0007"),
        ("Si.vasp", "Si_0007.vasp"),
    ],
)
def test_frame_name(output, name):
    assert frame_name(output, 7) == name


def test_which_files_may_hold_frames():
    assert may_hold_frames("md.xyz") and may_hold_frames("XDATCAR") and may_hold_frames("run.traj")
    assert not any(may_hold_frames(n) for n in ("POSCAR", "CONTCAR_relaxed", "CHGCAR.gz", "rho.cube"))


def test_select_frames(tmp_path):
    import ase.io
    from ase.build import bulk

    ase.io.write(tmp_path / "md.xyz", [bulk("Si", "diamond", 5.43 + 0.01 * i, cubic=True) for i in range(5)])
    assert select_frames(tmp_path / "md.xyz") == [0, 1, 2, 3, 4]
    assert select_frames(tmp_path / "md.xyz", "1::2") == [1, 3]
    assert select_frames(tmp_path / "md.xyz", "-1") == [4]
    with pytest.raises(InputError, match="should be a frame number or a slice"):
        select_frames(tmp_path / "md.xyz", "a:b")
    with pytest.raises(InputError, match="selects no frame of the 5"):
        select_frames(tmp_path / "md.xyz", "7:")


def test_short_names_keep_what_tells_inputs_apart():
    assert short_names(["../dft/a/CHGCAR.gz", "/tmp/b/CHGCAR.gz", "data"]) == ["a/CHGCAR.gz", "b/CHGCAR.gz", "data"]
    assert short_names(["x/CHGCAR", "x/CHG"]) == ["CHGCAR", "CHG"]


def test_axis_names():
    assert [axis_index(a) for a in ("a", "B", "z", 1)] == [0, 1, 2, 1]
    with pytest.raises(InputError, match="--axis: should be a, b or c"):
        axis_index("w")


def test_plane_position_in_angstrom_for_an_oblique_cell():
    cell = np.array([[4.0, 0, 0], [2.0, 3.0, 0], [1.0, 1.0, 6.0]])  # height along c: 6 A
    u2, v2, height, _ = plane_geometry(cell, 2)
    assert height == pytest.approx(6.0)
    np.testing.assert_allclose(u2, [4.0, 0.0])
    np.testing.assert_allclose(v2, [2.0, 3.0])
    assert plane_index((8, 8, 60), cell, 2, 1.5) == (15, pytest.approx(1.5))
    assert plane_index((8, 8, 60), cell, 2, None) == (30, pytest.approx(3.0))
    with pytest.raises(InputError, match="--slice-at: must lie in the cell: 0 to 6.000 A along c"):
        plane_index((8, 8, 60), cell, 2, 7.0)


def test_planar_average_of_a_known_profile():
    cell = np.diag([3.0, 4.0, 10.0])
    z = np.arange(20) / 20
    rho = np.broadcast_to(1 + np.cos(2 * np.pi * z), (6, 8, 20)).copy()
    rho[0, 0, :] += 8.0  # one column: raises each plane's mean by 8/48
    heights, avg = planar_average(rho, cell, 2)
    np.testing.assert_allclose(heights, z * 10.0)
    np.testing.assert_allclose(avg, 1 + np.cos(2 * np.pi * z) + 8 / 48)


def test_slice_error_scale_is_robust_and_atoms_are_found(tmp_path):
    atoms = Atoms("Si2", positions=[[1.0, 1.0, 2.0], [3.0, 3.0, 4.5]], cell=[5.0, 5.0, 6.0], pbc=True)
    rng = np.random.default_rng(0)
    ref = rng.random((20, 20, 24))
    pred = ref + 1e-3 * rng.standard_normal(ref.shape)
    pred[3, 3, 8] += 5.0  # one saturated pixel in the plane at 2.0 A (index 8 of 24)
    info = slice_plot(tmp_path / "s.png", ref, pred, atoms=atoms, axis=2, position=2.0)
    assert info["index"] == 8 and info["position"] == pytest.approx(2.0)
    assert info["max_abs_error"] > 4.9 and info["error_limit"] < 0.01  # the outlier does not set the scale
    assert (tmp_path / "s.png").stat().st_size > 20_000
    from deepmd_charge.plot import _atoms_near_plane

    _, _, _, (e1, e2, normal) = plane_geometry(atoms.cell[:], 2)
    sites = _atoms_near_plane(atoms, 2, 8 / 24, e1, e2, normal)
    assert [(round(x, 6), round(y, 6), s, round(d, 6)) for x, y, s, d in sites] == [(1.0, 1.0, "Si", 0.0)]


def test_pictures_are_written(tmp_path):
    atoms = Atoms("Al", positions=[[0, 0, 5.0]], cell=[2.9, 2.9, 20.0], pbc=True)
    z = np.arange(80) / 80 * 20.0
    ref = np.broadcast_to(np.exp(-((z - 5.0) ** 2)), (8, 8, 80)).copy()
    pred = 1.02 * ref
    dat = planar_average_plot(tmp_path / "pa.png", ref, pred, atoms, axis=2, title="slab")
    assert np.loadtxt(dat).shape == (80, 4)
    parity_plot(tmp_path / "p.png", {"a/CHGCAR": (ref, pred), "b/CHGCAR": (ref[:4], ref[:4])}, log=True)
    assert (tmp_path / "pa.png").stat().st_size > 20_000 and (tmp_path / "p.png").stat().st_size > 20_000
