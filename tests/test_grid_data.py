"""DeePMD-kit's grid layout (set.*/grid.npy + density.npy): CHGCAR -> grid layout -> ghost frames."""

import json
import sys

import numpy as np
import pytest

from conftest import EXAMPLE_DFT, run, tiny_input
from deepmd_charge.convert import CORE_RADIUS, ghost_frames_from_grid
from deepmd_charge.errors import InputError
from deepmd_charge.io.chgcar import read_chgcar
from deepmd_charge.io.grid_data import is_grid_system, read_grid_system

CLI = [sys.executable, "-m", "deepmd_charge.cli"]
FILES = [EXAMPLE_DFT / "rattled_a" / "CHGCAR.gz", EXAMPLE_DFT / "perfect" / "CHGCAR.gz"]


def nodes(vol, points):
    """Grid indices (i, j, k) of cartesian points that are grid nodes of `vol` (asserts they are)."""
    frac = points @ np.linalg.inv(vol.atoms.cell[:]) * vol.shape
    ijk = np.rint(frac).astype(int)
    assert np.abs(frac - ijk).max() < 1e-6
    return tuple((ijk % vol.shape).T)


@pytest.fixture(scope="module")
def grid_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("grid") / "g"
    run(CLI + ["convert", *map(str, FILES), "-o", str(out), "--format", "grid", "--points", "3000", "--seed", "1"])
    return out


def test_chgcar_to_grid_layout(grid_dir):
    assert is_grid_system(grid_dir)
    assert (grid_dir / "type_map.raw").read_text().split() == ["Si", "X"]
    assert (grid_dir / "type.raw").read_text().split() == ["0"] * 8  # real atoms only
    grid = np.load(grid_dir / "set.000" / "grid.npy")
    dens = np.load(grid_dir / "set.000" / "density.npy")
    assert grid.shape == (2, 3000, 3) and dens.shape == (2, 3000, 1)
    coord = np.load(grid_dir / "set.000" / "coord.npy")
    for f, path in enumerate(FILES):
        vol = read_chgcar(path)
        np.testing.assert_allclose(coord[f].reshape(-1, 3), vol.atoms.positions)
        # every point is a grid node, drawn once, away from nuclei, and carries the DFT value there
        idx = nodes(vol, grid[f])
        np.testing.assert_allclose(dens[f, :, 0], vol.total[idx], rtol=0, atol=0)
        assert len(set(zip(*idx))) == 3000
        d = np.linalg.norm(
            vol.atoms.positions[None] - grid[f][:, None], axis=-1
        )  # inside the cell, no images needed for
        assert d.min() >= CORE_RADIUS - 1e-9  # points this close to an atom in the cell


@pytest.mark.slow  # trains a model or builds the kernel
def test_grid_layout_back_to_ghost_frames_and_training(grid_dir, tmp_path):
    out = run(
        CLI + ["convert", str(grid_dir), "-o", str(tmp_path / "data"), "--points-per-frame", "200", "--seed", "0"]
    ).stdout
    assert "30 frames x 200 points" in out  # 2 frames x 3000 points -> 2 x 15 training frames
    import dpdata

    from deepmd_charge.convert import register_density

    register_density()
    system = dpdata.System(str(tmp_path / "data"), fmt="deepmd/npy")
    assert system.get_nframes() == 30 and system.get_atom_names() == ["Si", "X"]
    assert list(system["atom_numbs"]) == [8, 200]
    grid = np.load(grid_dir / "set.000" / "grid.npy")
    dens = np.load(grid_dir / "set.000" / "density.npy")[:, :, 0]
    # every ghost is one of its grid-layout frame's points (the two in turn: even frames from the
    # first, odd ones from the second; the files share a grid, not densities), with that point's
    # density, used once
    for f in range(2):
        lookup = {tuple(np.round(p, 8)): v for p, v in zip(grid[f], dens[f])}
        ghosts = system["coords"][f::2, 8:].reshape(-1, 3)
        labels = system.data["density"][f::2, 8:].reshape(-1)
        assert all(lookup[tuple(np.round(p, 8))] == v for p, v in zip(ghosts, labels))
        assert len({tuple(np.round(p, 8)) for p in ghosts}) == 3000
    # and DeePMD-kit trains on it
    work = tmp_path / "train"
    work.mkdir()
    inp = tiny_input(tmp_path / "data", steps=20)
    inp["training"]["disp_freq"] = 10
    (work / "input.json").write_text(json.dumps(inp))
    run(["dp", "--tf", "train", "input.json"], cwd=work)
    lcurve = np.loadtxt(work / "lcurve.out")
    assert np.all(np.isfinite(lcurve))


def test_foreign_full_grid_drops_points_at_nuclei_and_wraps(tmp_path):
    """Data written by other tools may hold every grid node, nuclei included, and points outside the cell."""
    vol = read_chgcar(FILES[1])
    idx = np.indices(vol.shape).reshape(3, -1).T
    points = (idx / vol.shape) @ vol.atoms.cell[:] + vol.atoms.cell[0]  # shifted by a lattice vector
    folder = tmp_path / "foreign"
    (folder / "set.000").mkdir(parents=True)
    (folder / "type.raw").write_text("0\n" * 8)
    (folder / "type_map.raw").write_text("Si\nX\n")
    np.save(folder / "set.000" / "coord.npy", vol.atoms.positions.reshape(1, -1))
    np.save(folder / "set.000" / "box.npy", np.asarray(vol.atoms.cell[:]).reshape(1, 9))
    np.save(folder / "set.000" / "grid.npy", points[None])
    np.save(folder / "set.000" / "density.npy", vol.total.reshape(1, -1, 1))
    (system,) = ghost_frames_from_grid(folder, points_per_frame=1000, seed=0)
    ghosts = system["coords"][:, 8:].reshape(-1, 3)
    frac = ghosts @ np.linalg.inv(vol.atoms.cell[:])
    assert frac.min() >= 0 and frac.max() < 1
    d = np.linalg.norm(vol.atoms.positions[None] - ghosts[:, None], axis=-1)
    assert d.min() >= CORE_RADIUS  # the 8 nodes on nuclei are gone (no NaN descriptor)
    np.testing.assert_allclose(system["density"][:, 8:].reshape(-1), vol.total[nodes(vol, ghosts)])
    assert system["coords"].shape[0] == (vol.total.size - 8) // 1000


def test_bad_grid_layout_is_one_line_naming_the_file(grid_dir, tmp_path):
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(grid_dir, bad)
    np.save(bad / "set.000" / "density.npy", np.zeros((2, 17, 1)))
    with pytest.raises(InputError, match="density.npy.*shape"):
        list(read_grid_system(bad))
    proc = run(CLI + ["convert", str(bad), "-o", str(tmp_path / "x")], check=False)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1 and "density.npy" in proc.stderr
    assert not (tmp_path / "x").exists()
    proc = run(CLI + ["convert", str(grid_dir), "-o", str(tmp_path / "y"), "--format", "grid"], check=False)
    assert proc.returncode == 2 and "--format grid converts CHGCAR/cube files" in proc.stderr
    proc = run(CLI + ["convert", str(grid_dir), str(FILES[0]), "-o", str(tmp_path / "z")], check=False)
    assert proc.returncode == 2 and "separately" in proc.stderr
    proc = run(CLI + ["convert", str(tmp_path), "-o", str(tmp_path / "w")], check=False)
    assert proc.returncode == 2 and "not in the grid layout" in proc.stderr


def test_dp_charge_test_scores_the_grid_layout_like_its_ghost_frames(trained, grid_dir, tmp_path):
    run(CLI + ["convert", str(grid_dir), "-o", str(tmp_path / "data"), "--seed", "3"])
    rows = {}
    for name, data in (("grid", grid_dir), ("ghost", tmp_path / "data")):
        run(CLI + ["test", str(trained["model"]), str(data), "--json", str(tmp_path / f"{name}.json"), "--quiet"])
        rows[name] = json.loads((tmp_path / f"{name}.json").read_text())["inputs"][0]
    g, h = rows["grid"], rows["ghost"]
    assert g["points"] == h["points"] == 6000  # the same points, read from either layout
    assert g["mae"] == pytest.approx(h["mae"], rel=1e-9)
    assert g["rmse"] == pytest.approx(h["rmse"], rel=1e-9)
