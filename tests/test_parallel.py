"""Streaming and MPI prediction give the same file as the in-memory serial path."""

import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import EXAMPLE_DFT, run
from deepmd_charge.io.chgcar import read_chgcar, write_chgcar, write_chgcar_slabs


def _mpiexec():
    local = Path(sys.executable).parent / "mpiexec"
    return str(local) if local.exists() else shutil.which("mpiexec")


def test_streamed_chgcar_equals_one_shot(tmp_path):
    vol = read_chgcar(EXAMPLE_DFT / "perfect" / "CHGCAR.gz")
    rho = vol.total[:, :, :47]  # 48*48*47 values: not a multiple of 5 per slab
    slabs = [(k, min(k + 7, 47), rho[:, :, k : min(k + 7, 47)]) for k in range(0, 47, 7)]
    for name in ("a", "b.gz", "b.xz"):
        totals = write_chgcar_slabs(tmp_path / name, vol.atoms, rho.shape, [(slabs, vol.trailers[0])])
        assert totals[0] == pytest.approx(rho.sum(), rel=1e-12)
    write_chgcar(tmp_path / "ref", vol.atoms, [rho], trailers=vol.trailers)
    assert (tmp_path / "a").read_text() == (tmp_path / "ref").read_text()
    for name in ("b.gz", "b.xz"):
        np.testing.assert_array_equal(read_chgcar(tmp_path / name).total, read_chgcar(tmp_path / "ref").total)
    with pytest.raises(ValueError, match="out of order"):
        write_chgcar_slabs(tmp_path / "c", vol.atoms, rho.shape, [(slabs[::-1], "")])
    assert not (tmp_path / "c").exists()
    # two blocks: a spin-polarised file
    write_chgcar_slabs(tmp_path / "spin", vol.atoms, rho.shape, [(slabs, ""), (slabs, "")])
    spin = read_chgcar(tmp_path / "spin")
    assert spin.block_names == ["total", "magnetization"]
    np.testing.assert_array_equal(spin.blocks[1], spin.blocks[0])


def test_mpi_two_ranks_same_file_as_serial(trained, tmp_path, monkeypatch):
    model = str(trained["model"])
    poscar = str(EXAMPLE_DFT / "rattled_b" / "POSCAR")
    run(
        [
            "dp-charge",
            "predict",
            model,
            poscar,
            "-o",
            str(tmp_path / "serial"),
            "--grid",
            "20",
            "24",
            "30",
            "--quiet",
            "--threads",
            "1",
        ]
    )
    monkeypatch.setenv("DP_CHARGE_CACHE", str(tmp_path / "cache"))  # an empty kernel cache: first use
    out = run(
        [
            _mpiexec(),
            "-n",
            "2",
            "dp-charge",
            "predict",
            model,
            poscar,
            "-o",
            str(tmp_path / "mpi"),
            "--grid",
            "20",
            "24",
            "30",
            "--quiet",
            "--threads",
            "1",
            "--slab-points",
            "1500",
        ]
    )
    assert "on 2 MPI ranks" in out.stdout
    assert "(tabulated networks)" in out.stdout
    assert out.stderr.count("building the prediction kernel") == 1  # one rank builds, the other waits
    assert out.stdout.count("electrons:") == 1  # only rank 0 reports
    a, b = read_chgcar(tmp_path / "serial").total, read_chgcar(tmp_path / "mpi").total
    assert np.abs(a - b).max() <= 1e-10


def test_mpi_trajectory_one_file_per_frame_as_serial(trained, tmp_path):
    import ase.io
    from ase.build import bulk

    frames = [bulk("Si", "diamond", a=5.43 + 0.05 * i, cubic=True) for i in range(2)]
    ase.io.write(tmp_path / "md.xyz", frames)
    model, traj = str(trained["model"]), str(tmp_path / "md.xyz")
    run(
        [
            "dp-charge",
            "predict",
            model,
            traj,
            "-o",
            str(tmp_path / "serial"),
            "--grid",
            "8",
            "8",
            "12",
            "--quiet",
            "--threads",
            "1",
        ]
    )
    out = run(
        [
            _mpiexec(),
            "-n",
            "2",
            "dp-charge",
            "predict",
            model,
            traj,
            "-o",
            str(tmp_path / "mpi"),
            "--grid",
            "8",
            "8",
            "12",
            "--quiet",
            "--threads",
            "1",
            "--slab-points",
            "200",
        ]
    )
    assert (
        out.stdout.count("on 2 MPI ranks") == 2 and out.stdout.count("== frame") == 2
    )  # rank 0 reports each frame once
    for n in range(2):
        a, b = read_chgcar(tmp_path / f"serial_{n:04d}"), read_chgcar(tmp_path / f"mpi_{n:04d}")
        np.testing.assert_allclose(b.atoms.cell[:], frames[n].cell[:], atol=1e-6)
        assert np.abs(a.total - b.total).max() <= 1e-10
