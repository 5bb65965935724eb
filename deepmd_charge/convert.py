"""CHGCAR -> ghost-point training frames (a deepmd/npy system).

Each frame holds every real atom of the structure plus `points_per_frame` ghost atoms (type `X` by
default) placed on grid points drawn without replacement; the label `density` (e/A^3) is the DFT
density at the ghosts and 0 at real atoms (never read by the loss).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from ase import Atoms

from deepmd_charge.errors import InputError
from deepmd_charge.grid import (
    CORE_RADIUS,
    cartesian_points,
    near_nucleus_mask,
    periodic_images,  # noqa: F401  (re-exported: its old home)
    sample_indices,
    wrap_into_cell,
)
from deepmd_charge.io.chgcar import VolumetricData

LABEL = "density"


def register_density() -> None:
    """Make dpdata carry the per-atom `density` label and write it as set.*/density.npy."""
    import dpdata
    from dpdata.data_type import Axis, DataType

    dpdata.System.register_data_type(DataType(LABEL, np.ndarray, (Axis.NFRAMES, Axis.NATOMS), required=False))


@dataclass
class ConvertSummary:
    """What convert_files did: per-file frames and points, the inputs, the folders written."""

    output: Path
    frames: int  # frames per input file (as many sets as files, each with frames of every file)
    wanted: int  # frames per file asked for (more than `frames` when a grid was too small)
    points_per_frame: int
    channel: str
    inputs: list = field(default_factory=list)  # (source, formula, grid shape, electrons) per file
    written: list = field(default_factory=list)  # the output folder, or one subfolder per composition
    type_map: list = field(default_factory=list)  # every element of every file, the ghost last


def convert_files(
    inputs,
    output,
    points_per_frame: int = 200,
    points: int = 100_000,
    frames: int | None = None,
    sampling: str = "uniform",
    seed: int | None = None,
    ghost: str = "X",
    channel: str = "total",
    elements=None,
    overwrite: bool = False,
) -> ConvertSummary:
    """CHGCAR/cube files -> one deepmd/npy training system in the folder `output` (what
    `dp-charge convert` does). Every file gives the same number of frames (`frames`, else
    `points` / `points_per_frame`, capped by the smallest grid): as many sets as files, each
    holding frames of every file in turn; file i is sampled with seed + i. The folder appears
    only when complete; an existing one is replaced only with `overwrite` and only if an earlier
    convert wrote it.
    """
    import dpdata

    from deepmd_charge.io.files import atomic_folder
    from deepmd_charge.io.structure import read_volumetric

    register_density()
    out = Path(output)
    check_output_folder(out, overwrite=overwrite)
    vols = [read_volumetric(f, elements=elements) for f in inputs]
    k = points_per_frame
    if k <= 0:
        raise InputError("points per frame", f"must be positive, got {k}")
    wanted = frames if frames is not None else max(1, points // k)
    if wanted <= 0:
        raise InputError("frames", f"must be positive, got {wanted}")
    grids = [usable_grid(v) for v in vols]  # once per file: sizing and sampling both need it
    count = min([wanted] + [usable.size // k for _, usable in grids])
    summary = ConvertSummary(out, count, wanted, k, channel)
    systems = []
    for i, (vol, grid) in enumerate(zip(vols, grids)):
        data = frames_from_volumetric(
            vol,
            points_per_frame=k,
            frames=count,
            sampling=sampling,
            seed=None if seed is None else seed + i,
            ghost=ghost,
            channel=channel,
            grid=grid,
        )
        systems.append(dpdata.System(data=data))
        summary.inputs.append((vol.source, vol.atoms.get_chemical_formula(), vol.shape, vol.electrons()))
    with atomic_folder(out) as tmp:
        written = write_system(systems, tmp, set_size=count)
    summary.written = _moved(written, tmp, out)
    summary.type_map = type_map_for(systems)
    return summary


def _moved(written, tmp: Path, out: Path) -> list:
    """Where folders written under an atomic_folder's temporary folder `tmp` are now that it is `out`."""
    return [out / w.relative_to(tmp) if w != tmp else out for w in written]


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
        raise InputError(vol.source, f"the structure already has atoms named '{ghost}'; choose another ghost name")
    if points_per_frame <= 0:
        raise InputError("points per frame", f"must be positive, got {points_per_frame}")
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


def interleaved(systems: list):
    """One dpdata System with the frames of `systems` (one composition) taken in turn: frame 0 of
    each, then frame 1 of each, ...

    DeePMD-kit reads a system's sets one after another, and its statistics (the prior's fit, the
    ideal-lattice check) come from the first batches of the first set: written file by file, they
    saw the first structure only (a perfect crystal listed first switched the prior off for a
    perfect + rattled training set), and training met the structures in blocks of a set each.
    """
    merged = systems[0].copy()
    for system in systems[1:]:
        merged.append(system)
    counts = [system.get_nframes() for system in systems]
    starts = np.cumsum([0] + counts[:-1])
    order = [start + j for j in range(max(counts)) for start, n in zip(starts, counts) if j < n]
    return merged.sub_system(order)


def write_system(systems: list, outdir, set_size: int) -> list:
    """Write dpdata Systems as deepmd/npy; one system per composition (subfolders if several),
    the frames of its files interleaved (`interleaved`) so that every set holds every file."""
    outdir = Path(outdir)
    groups: dict = {}
    for system in systems:
        key = (tuple(system["atom_names"]), tuple(system["atom_numbs"]))
        groups.setdefault(key, []).append(system)
    written = []
    for members in groups.values():
        system = interleaved(members)
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
        raise InputError(path, "exists and is a file; choose another output folder")
    if not any(path.iterdir()):
        return
    if not converted_output(path):
        raise InputError(path, "exists and is not a deepmd/npy system; choose another output folder")
    if not overwrite:
        sets = len(list(path.glob("set.*"))) + len(list(path.glob("*/set.*")))
        raise InputError(
            path,
            f"already holds training data ({sets} set(s)); replace it with overwrite=True, or choose another output folder",
        )


def type_map_for(systems: list) -> list:
    """The type_map that covers every system: elements in order of first appearance, ghost last."""
    ghost = systems[0]["atom_names"][-1]
    names = [n for system in systems for n in system["atom_names"][:-1]]
    return list(dict.fromkeys(names)) + [ghost]


# ---- DeePMD-kit's grid layout (io/grid_data.py): both directions ---------------------------------


def grid_layout_frame(
    vol, n_points: int | None, sampling: str = "uniform", seed=None, channel: str = "total", grid=None
) -> dict:
    """One frame of the grid layout from a volumetric file: its atoms, `n_points` grid points drawn
    as `dp-charge convert` draws them (nuclei's neighbourhoods left out) and their densities."""
    rho = vol.block(channel).ravel()
    points, usable = grid if grid is not None else usable_grid(vol)
    count = usable.size if n_points is None else min(n_points, usable.size)
    if count <= 0:
        raise InputError(vol.source, "has no usable grid points")
    chosen = usable[sample_indices(rho[usable], count, np.random.default_rng(seed), sampling)]
    return {"atoms": vol.atoms, "grid": points[chosen], "density": rho[chosen]}


def ghost_frames_from_grid(path, points_per_frame: int = 200, ghost: str | None = None, seed=None) -> list:
    """A grid-layout folder as this package's ghost-point training data: dpdata System data, one per
    frame of the folder, each cut into frames of all atoms + `points_per_frame` ghosts. Points
    nearer a nucleus than CORE_RADIUS are left out (the descriptor diverges there); points that do
    not fill a last frame are dropped."""
    from deepmd_charge.io.grid_data import read_grid_system

    if points_per_frame <= 0:
        raise InputError("points per frame", f"must be positive, got {points_per_frame}")
    names_file = Path(path) / "type_map.raw"
    ghost = ghost or (names_file.read_text().split()[-1] if names_file.is_file() else "X")
    rng = np.random.default_rng(seed)
    systems = []
    for atoms, grid, dens in read_grid_system(path):
        grid = wrap_into_cell(grid, atoms.cell[:])  # the density is periodic
        keep = np.flatnonzero(~near_nucleus_mask(atoms, grid, CORE_RADIUS))
        keep = rng.permutation(keep)  # a regular grid's consecutive points are one slab: mix them
        frames = len(keep) // points_per_frame
        if frames == 0:
            raise InputError(
                path, f"a frame has {len(keep)} usable grid points, fewer than {points_per_frame} per training frame"
            )
        chosen = keep[: frames * points_per_frame].reshape(frames, points_per_frame)
        if ghost in atoms.get_chemical_symbols():
            raise InputError(path, f"the grid-point type '{ghost}' is also an element")
        systems.append(ghost_system(atoms, grid[chosen], dens[chosen], ghost))
    return systems


def files_to_grid_layout(
    inputs,
    output,
    points: int = 100_000,
    sampling: str = "uniform",
    seed=None,
    channel: str = "total",
    elements=None,
    ghost: str = "X",
    overwrite: bool = False,
) -> dict:
    """CHGCAR/cube files -> a grid-layout folder `output`, one frame per file with the same number
    of points each (`points`, capped by the smallest grid; file i sampled with seed + i). The folder
    appears only when complete. Returns {"inputs": [(source, formula, shape)], "points", "written"}."""
    from deepmd_charge.io.files import atomic_folder
    from deepmd_charge.io.grid_data import write_grid_systems
    from deepmd_charge.io.structure import read_volumetric

    out = Path(output)
    check_output_folder(out, overwrite=overwrite)
    folders = [f for f in inputs if Path(f).is_dir()]
    if folders:
        raise InputError(folders[0], "is a folder; the grid layout is written from CHGCAR/cube files")
    if points <= 0:
        raise InputError("points", f"must be positive, got {points}")
    vols = [read_volumetric(f, elements=elements) for f in inputs]
    grids = [usable_grid(v) for v in vols]
    count = min([points] + [usable.size for _, usable in grids])
    frames = [
        grid_layout_frame(v, count, sampling, None if seed is None else seed + i, channel, grid=g)
        for i, (v, g) in enumerate(zip(vols, grids))
    ]
    with atomic_folder(out) as tmp:
        written = write_grid_systems(frames, tmp, ghost=ghost)
    return {
        "inputs": [(v.source, v.atoms.get_chemical_formula(), v.shape) for v in vols],
        "points": count,
        "written": _moved(written, tmp, out),
    }


def grid_layout_to_frames(folders, output, points_per_frame: int = 200, seed=None, overwrite: bool = False) -> dict:
    """Grid-layout folders -> this package's ghost-point training data in `output` (a deepmd/npy
    system, subfolders per composition). Returns {"frames", "written"}."""
    import dpdata

    from deepmd_charge.io.files import atomic_folder
    from deepmd_charge.io.grid_data import GRID, is_grid_system

    out = Path(output)
    check_output_folder(out, overwrite=overwrite)
    files = [f for f in folders if not Path(f).is_dir()]
    if files:
        raise InputError(files[0], "convert grid files and grid-layout folders separately")
    for f in folders:
        if not is_grid_system(f):
            raise InputError(f, f"is a folder but not in the grid layout (type.raw and set.*/{GRID})")
    register_density()
    systems = [dpdata.System(data=d) for f in folders for d in ghost_frames_from_grid(f, points_per_frame, seed=seed)]
    with atomic_folder(out) as tmp:
        written = write_system(systems, tmp, set_size=max(s.get_nframes() for s in systems))
    return {
        "frames": sum(s.get_nframes() for s in systems),
        "written": _moved(written, tmp, out),
    }
