import json

import dpdata
import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk
from scipy.spatial import cKDTree

from conftest import EXAMPLE_DFT, run
from deepmd_charge.convert import frames_from_volumetric
from deepmd_charge.errors import InputError
from deepmd_charge.grid import (
    CORE_RADIUS,
    cartesian_points,
    fractional_points,
    grid_points_near_atoms,
    near_nucleus_mask,
    periodic_images,
    sample_indices,
    shape_from_spacing,
)
from deepmd_charge.io.chgcar import VolumetricData, read_chgcar


def test_fractional_and_cartesian_points_in_a_triclinic_cell():
    cell = np.array([[4.0, 0.0, 0.0], [1.3, 3.5, 0.0], [0.7, -0.9, 5.2]])
    shape = (3, 4, 5)
    frac = fractional_points(shape)
    assert frac.shape == (60, 3)
    # C order: index 0 is (0,0,0), index 1 is (0,0,1/5), index 5 is (0,1/4,0), index 20 is (1/3,0,0)
    np.testing.assert_allclose(frac[[0, 1, 5, 20]], [[0, 0, 0], [0, 0, 0.2], [0, 0.25, 0], [1 / 3, 0, 0]])
    cart = cartesian_points(cell, shape, [23])
    np.testing.assert_allclose(cart[0], (1 / 3) * cell[0] + 0 * cell[1] + (3 / 5) * cell[2])


def test_shape_from_spacing_is_fine_enough_and_fft_friendly():
    cell = np.diag([5.43, 7.0, 10.1])
    shape = shape_from_spacing(cell, 0.1)
    assert all(length / n <= 0.1 + 1e-12 for length, n in zip((5.43, 7.0, 10.1), shape))
    for n in shape:
        m = n
        for p in (2, 3, 5):
            while m % p == 0:
                m //= p
        assert m == 1
    with pytest.raises(InputError, match="positive"):
        shape_from_spacing(cell, 0.0)


@pytest.mark.parametrize("strategy", ["uniform", "weighted"])
def test_sampling_is_without_replacement(strategy):
    rho = np.random.default_rng(1).random((10, 10, 10))
    idx = sample_indices(rho, 1000, np.random.default_rng(0), strategy)
    assert len(np.unique(idx)) == 1000
    with pytest.raises(InputError):
        sample_indices(rho, 1001, np.random.default_rng(0), strategy)


def test_weighted_sampling_prefers_dense_points():
    rho = np.zeros((20, 20, 20))
    rho[:10] = 1.0  # half the grid dense
    idx = sample_indices(rho, 2000, np.random.default_rng(0), "weighted")
    dense = np.mean(rho.ravel()[idx] > 0)
    assert 0.6 < dense < 0.75  # p ~ (1 + 0.5) / (1 + 0.5 + 0.5) = 0.67, not uniform's 0.5


def test_periodic_images_cover_a_skewed_cell():
    atoms = Atoms("Si", scaled_positions=[[0.01, 0.02, 0.03]], cell=[[3, 0, 0], [2.5, 2.0, 0], [0, 0, 3]], pbc=True)
    pos, _ = periodic_images(atoms, 4.0)
    # every point of the cell must see all images within 4 A: compare with brute force over many images
    rng = np.random.default_rng(0)
    pts = rng.random((50, 3)) @ atoms.cell[:]
    shifts = np.array([(i, j, k) for i in range(-6, 7) for j in range(-6, 7) for k in range(-6, 7)])
    brute = atoms.positions[0] + shifts @ atoms.cell[:]
    for p in pts:
        n_brute = np.sum(np.linalg.norm(brute - p, axis=1) < 4.0)
        n_ours = np.sum(np.linalg.norm(pos - p, axis=1) < 4.0)
        assert n_ours == n_brute


@pytest.mark.parametrize("planes", [None, (3, 11)])
def test_grid_points_near_atoms_equals_a_search_of_every_point(planes):
    """The nuclei-first search (prediction's grid path) finds exactly the points a KD-tree search
    of every point finds, with the nearest nucleus image, in a skewed cell, for a slab of planes;
    with atoms on grid points, next to the cell's faces and two atoms closer than 2 * radius."""
    cell = np.array([[4.0, 0.0, 0.0], [1.3, 3.7, 0.0], [0.6, -0.9, 4.4]])
    frac = np.array([[0, 0, 0], [0.5, 0.25, 0.125], [0.999, 0.002, 0.5], [0.3, 0.7, 0.9], [0.3, 0.7, 0.92]])
    atoms = Atoms("Si5", scaled_positions=frac, cell=cell, pbc=True)
    shape, radius = (40, 36, 16), 0.29  # not a grid spacing: no point exactly at the radius
    flat, points, centers = grid_points_near_atoms(cell, shape, atoms.positions, radius, planes=planes)
    k0, k1 = planes or (0, shape[2])
    ijk = np.stack(np.meshgrid(*[np.arange(n) for n in shape[:2]], np.arange(k0, k1), indexing="ij"), -1).reshape(-1, 3)
    grid = (ijk / shape) @ cell
    pos, _ = periodic_images(atoms, radius)
    dist, near = cKDTree(pos).query(grid, k=1, distance_upper_bound=radius)
    expected = np.flatnonzero(dist < radius)
    assert len(expected) > 20
    np.testing.assert_array_equal(flat, expected)
    np.testing.assert_allclose(points, grid[expected], atol=1e-12)
    np.testing.assert_allclose(centers, pos[near[expected]], atol=1e-12)


def test_frames_label_the_grid_values_at_the_ghost_positions():
    vol = read_chgcar(EXAMPLE_DFT / "rattled_a" / "CHGCAR.gz")
    data = frames_from_volumetric(vol, points_per_frame=50, frames=4, seed=3)
    assert data["atom_names"] == ["Si", "X"]
    assert data["coords"].shape == (4, 58, 3)
    assert np.all(data["density"][:, :8] == 0)
    ghosts = data["coords"][:, 8:].reshape(-1, 3)
    frac = ghosts @ np.linalg.inv(vol.atoms.cell[:])
    ijk = np.rint(frac * np.array(vol.shape)).astype(int)
    np.testing.assert_allclose(frac * np.array(vol.shape), ijk, atol=1e-9)  # on grid points
    np.testing.assert_allclose(data["density"][:, 8:].ravel(), vol.total[tuple(ijk.T)])
    assert len({tuple(x) for x in ijk}) == 200  # no point twice across frames
    # same seed, same frames
    again = frames_from_volumetric(vol, points_per_frame=50, frames=4, seed=3)
    np.testing.assert_array_equal(again["coords"], data["coords"])


def test_points_on_nuclei_are_not_used_for_training():
    atoms = bulk("Si", "diamond", a=5.43, cubic=True)  # atom at the origin = grid point 0
    vol = VolumetricData(atoms=atoms, blocks=[np.ones((20, 20, 20))], trailers=[""], source="test")
    data = frames_from_volumetric(vol, points_per_frame=100, frames=79, seed=0)
    ghosts = data["coords"][:, 8:].reshape(-1, 3)
    assert not near_nucleus_mask(atoms, ghosts, CORE_RADIUS).any()


def test_dpdata_format_plugin_and_deepmd_npy(tmp_path):
    system = dpdata.System(
        str(EXAMPLE_DFT / "perfect" / "CHGCAR.gz"), fmt="vasp/chgcar", points_per_frame=100, n_points=1000, seed=0
    )
    assert len(system) == 10
    system.to("deepmd/npy", str(tmp_path / "sys"), set_size=10)
    assert (tmp_path / "sys" / "type_map.raw").read_text().split() == ["Si", "X"]
    labels = np.load(tmp_path / "sys" / "set.000" / "density.npy")
    assert labels.shape == (10, 108)


def test_cli_convert_several_files_every_set_holds_every_file(tmp_path):
    """Frames of the files in turn: DeePMD-kit's statistics (first batches of the first set) and
    its training (set after set) see every structure, not the first file alone."""
    files = [str(EXAMPLE_DFT / name / "CHGCAR.gz") for name in ("perfect", "rattled_a")]
    out = run(
        [
            "dp-charge",
            "convert",
            *files,
            "-o",
            str(tmp_path / "data"),
            "--points",
            "2000",
            "--points-per-frame",
            "100",
            "--seed",
            "1",
        ]
    )
    assert "20 frames x 100 points" in out.stdout
    sets = sorted(p.name for p in (tmp_path / "data").glob("set.*"))
    assert sets == ["set.000", "set.001"]
    perfect = read_chgcar(EXAMPLE_DFT / "perfect" / "CHGCAR.gz").atoms.positions
    for name in sets:
        coord = np.load(tmp_path / "data" / name / "coord.npy")
        assert coord.shape == (20, 108 * 3)
        atoms = coord[:, : 8 * 3].reshape(20, 8, 3)  # the real atoms come first
        is_perfect = np.abs(atoms - perfect).max(axis=(1, 2)) < 1e-6
        # frames alternate: perfect, rattled_a, perfect, ...
        assert is_perfect.tolist() == [True, False] * 10, (name, is_perfect)
    assert json.loads(out.stdout.split('"type_map": ')[1].split(", descriptor")[0]) == ["Si", "X"]


def test_convert_files_from_python(tmp_path):
    """What `dp-charge convert` does, as one call: frames sized, folder written, summary returned."""
    from deepmd_charge.convert import convert_files

    out = tmp_path / "data"
    s = convert_files([EXAMPLE_DFT / "perfect" / "CHGCAR.gz"], out, points=1000, points_per_frame=100, seed=0)
    assert (s.frames, s.wanted, s.written, s.type_map) == (10, 10, [out], ["Si", "X"])
    assert s.inputs[0][1:3] == ("Si8", (48, 48, 48)) and abs(s.inputs[0][3] - 32.0) < 1e-3
    assert np.load(out / "set.000" / "density.npy").shape == (10, 108)
    with pytest.raises(InputError, match=r"already holds training data \(1 set\(s\)\); replace it with overwrite=True"):
        convert_files([EXAMPLE_DFT / "perfect" / "CHGCAR.gz"], out, points=1000, points_per_frame=100)


def test_library_errors_name_parameters_not_options():
    from deepmd_charge.grid import check_shape

    with pytest.raises(InputError, match=r"^grid shape: needs three positive whole numbers NX NY NZ, got \(0, 4, 4\)$"):
        check_shape((0, 4, 4))
    with pytest.raises(InputError, match=r"^points: asks for 9 points but the grid has only 8$"):
        sample_indices(np.ones((2, 2, 2)), 9, np.random.default_rng(0))
    with pytest.raises(InputError, match=r"^spacing: must be a positive length"):
        shape_from_spacing(np.eye(3), -1.0)
