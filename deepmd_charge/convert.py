"""CHGCAR -> ghost-point training frames (a deepmd/npy system).

Each frame holds every real atom of the structure plus `points_per_frame` ghost atoms (type `X` by
default) placed on grid points drawn without replacement; the label `density` (e/A^3) is the DFT
density at the ghosts and 0 at real atoms (never read by the loss).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from ase import Atoms
from scipy.spatial import cKDTree

from deepmd_charge.errors import InputError
from deepmd_charge.grid import cartesian_points, sample_indices
from deepmd_charge.io.chgcar import VolumetricData

#: Grid points closer than this (Angstrom) to a nucleus are not used for training: the descriptor's
#: 1/r diverges there (a point exactly on a nucleus gives NaN). Prediction evaluates such points on
#: a sphere of this radius instead (see predict.py).
CORE_RADIUS = 0.1
LABEL = "density"


def periodic_images(atoms: Atoms, margin: float):
    """Positions and original indices of the atoms and all their images within `margin` of the cell."""
    cell = atoms.cell[:]
    # how many cells to repeat along each vector: the margin measured perpendicular to the faces
    normals = np.linalg.inv(cell).T
    reps = np.ceil(margin * np.linalg.norm(normals, axis=1)).astype(int)
    shifts = np.array(
        [(i, j, k) for i in range(-reps[0], reps[0] + 1) for j in range(-reps[1], reps[1] + 1) for k in range(-reps[2], reps[2] + 1)]
    )
    frac = atoms.get_scaled_positions(wrap=True)
    all_frac = (frac[None, :, :] + shifts[:, None, :]).reshape(-1, 3)
    index = np.tile(np.arange(len(atoms)), len(shifts))
    lo, hi = -margin * np.linalg.norm(normals, axis=1), 1 + margin * np.linalg.norm(normals, axis=1)
    keep = np.all((all_frac >= lo) & (all_frac < hi), axis=1)
    return all_frac[keep] @ cell, index[keep]


def near_nucleus_mask(atoms: Atoms, points: np.ndarray, radius: float) -> np.ndarray:
    """True for points closer than `radius` to any atom (periodic images included)."""
    if radius <= 0 or len(points) == 0:
        return np.zeros(len(points), dtype=bool)
    pos, _ = periodic_images(atoms, radius)
    dist, _ = cKDTree(pos).query(points, k=1, distance_upper_bound=radius)
    return dist < radius


def frames_from_volumetric(
    vol: VolumetricData,
    points_per_frame: int = 200,
    frames: int | None = None,
    n_points: int | None = 100_000,
    sampling: str = "uniform",
    seed: int | None = None,
    ghost: str = "X",
    channel: str = "total",
    core_radius: float = CORE_RADIUS,
    grid=None,
) -> dict:
    """dpdata System data: `frames` frames of all atoms + `points_per_frame` ghosts each.

    `frames` wins over `n_points` (total points); both are capped by the usable grid points.
    `grid` = usable_grid(vol, core_radius), when the caller has it already.
    """
    atoms = vol.atoms
    rho = vol.block(channel)
    if ghost in atoms.get_chemical_symbols():
        raise InputError(vol.source, f"the structure already has atoms named '{ghost}'; choose another --ghost name")
    if points_per_frame <= 0:
        raise InputError("--points-per-frame", f"must be positive, got {points_per_frame}")
    cell = atoms.cell[:]
    all_points, usable = grid if grid is not None else usable_grid(vol, core_radius)
    max_frames = usable.size // points_per_frame
    if frames is None:
        frames = max(1, min(n_points or usable.size, usable.size) // points_per_frame)
    if frames <= 0 or frames > max_frames:
        raise InputError(
            vol.source,
            f"cannot draw {frames} frames x {points_per_frame} points: the grid has {usable.size} usable points",
        )
    rng = np.random.default_rng(seed)
    chosen = usable[sample_indices(rho.ravel()[usable], frames * points_per_frame, rng, sampling)]
    chosen = chosen.reshape(frames, points_per_frame)

    return ghost_system(atoms, all_points[chosen], rho.ravel()[chosen], ghost)


def ghost_system(atoms: Atoms, points: np.ndarray, density: np.ndarray, ghost: str = "X") -> dict:
    """dpdata System data: one frame per row of `points` [frames, k, 3] (Angstrom), each all the
    atoms + k ghosts of type `ghost` labelled with `density` [frames, k] (e/A^3; 0 at real atoms)."""
    frames, k = density.shape
    symbols = atoms.get_chemical_symbols()
    names = list(dict.fromkeys(symbols)) + [ghost]
    natoms = len(atoms)
    coords = np.empty((frames, natoms + k, 3))
    coords[:, :natoms] = atoms.positions
    coords[:, natoms:] = points
    labels = np.zeros((frames, natoms + k))
    labels[:, natoms:] = density
    return {
        "atom_names": names,
        "atom_numbs": [symbols.count(s) for s in names[:-1]] + [k],
        "atom_types": np.array([names.index(s) for s in symbols] + [len(names) - 1] * k),
        "cells": np.repeat(np.asarray(atoms.cell[:])[None], frames, axis=0),
        "coords": coords,
        "orig": np.zeros(3),
        "nopbc": False,
        LABEL: labels,
    }


def usable_grid(vol: VolumetricData, core_radius: float = CORE_RADIUS):
    """Cartesian positions of all grid points, and the flat indices of those usable for training."""
    points = cartesian_points(vol.atoms.cell[:], vol.shape)
    return points, np.flatnonzero(~near_nucleus_mask(vol.atoms, points, core_radius))


def write_system(systems: list, outdir, set_size: int) -> list:
    """Write dpdata Systems as deepmd/npy; one system per composition (subfolders if several)."""
    outdir = Path(outdir)
    groups: dict = {}
    for system in systems:
        key = (tuple(system["atom_names"]), tuple(system["atom_numbs"]))
        if key in groups:
            groups[key].append(system)
        else:
            groups[key] = system.copy()
    written = []
    for system in groups.values():
        target = outdir if len(groups) == 1 else outdir / system.formula
        system.to("deepmd/npy", str(target), set_size=set_size)
        written.append(target)
    return written


def converted_output(path) -> bool:
    """True if `path` is a folder `dp-charge convert` wrote: one deepmd/npy system, or one per
    composition in subfolders."""
    path = Path(path)
    if not path.is_dir():
        return False
    if (path / "type.raw").is_file():
        return True
    entries = [p for p in path.iterdir() if not p.name.startswith(".")]
    return bool(entries) and all(p.is_dir() and (p / "type.raw").is_file() for p in entries)


def check_output_folder(path, overwrite: bool = False) -> None:
    """Refuse to replace an existing folder unless `overwrite` (and then only one convert wrote)."""
    path = Path(path)
    if not path.exists():
        return
    if not path.is_dir():
        raise InputError(path, "exists and is a file; choose another --output")
    if not any(path.iterdir()):
        return
    if not converted_output(path):
        raise InputError(path, "exists and is not a deepmd/npy system; choose another --output")
    if not overwrite:
        sets = len(list(path.glob("set.*"))) + len(list(path.glob("*/set.*")))
        raise InputError(path, f"already holds training data ({sets} set(s)); add --overwrite to replace it, or choose another --output")


def type_map_for(systems: list) -> list:
    """The type_map that covers every system: elements in order of first appearance, ghost last."""
    ghost = systems[0]["atom_names"][-1]
    names = [n for system in systems for n in system["atom_names"][:-1]]
    return list(dict.fromkeys(names)) + [ghost]
