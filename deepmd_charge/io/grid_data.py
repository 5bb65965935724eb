"""DeePMD-kit's grid layout for density data: set.*/grid.npy and density.npy beside coord/box/type.

The layout of DeePMD-kit's PyTorch density work (pull requests 5465 and 5999), so that data moves
both ways between it and this package:

    type.raw           real atoms only (indices into type_map.raw)
    type_map.raw       the elements, then the grid-point type last (e.g. Si X)
    set.000/coord.npy  [nframes, natoms * 3]   Angstrom
    set.000/box.npy    [nframes, 9]            Angstrom
    set.000/grid.npy   [nframes, ngrid, 3]     cartesian grid points, Angstrom
    set.000/density.npy [nframes, ngrid, 1]    density at those points, e/A^3

`dp-charge convert CHGCAR --format grid` writes it (one frame per input file) and `dp-charge convert
FOLDER` turns it into this package's ghost-point frames (both in convert.py); this module reads
and writes the files.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from ase import Atoms

from deepmd_charge.errors import InputError

GRID, DENSITY = "grid.npy", "density.npy"


def is_grid_system(path) -> bool:
    """True for a folder in the grid layout (type.raw and set.*/grid.npy)."""
    path = Path(path)
    return path.is_dir() and (path / "type.raw").is_file() and any(path.glob(f"set.*/{GRID}"))


def write_grid_systems(frames: list, outdir, ghost: str = "X") -> list:
    """Write frames (dicts of atoms, grid, density: convert.grid_layout_frame) in the grid layout; one system per sequence of elements
    (subfolders named by formula if several). Returns the folders written."""
    outdir = Path(outdir)
    groups: dict = {}
    for frame in frames:
        groups.setdefault(tuple(frame["atoms"].get_chemical_symbols()), []).append(frame)
    written = []
    for symbols, group in groups.items():
        if ghost in symbols:
            raise InputError(
                ghost, f"is the grid-point type but also an element of {group[0]['atoms'].get_chemical_formula()}"
            )
        sizes = {len(f["grid"]) for f in group}
        if len(sizes) > 1:
            raise InputError(outdir, f"frames of one system need equal grid point counts, got {sorted(sizes)}")
        names = list(dict.fromkeys(symbols))
        target = outdir if len(groups) == 1 else outdir / group[0]["atoms"].get_chemical_formula()
        sets = target / "set.000"
        sets.mkdir(parents=True, exist_ok=True)
        (target / "type.raw").write_text("".join(f"{names.index(s)}\n" for s in symbols))
        (target / "type_map.raw").write_text("".join(f"{n}\n" for n in names + [ghost]))
        np.save(sets / "coord.npy", np.stack([f["atoms"].positions.reshape(-1) for f in group]))
        np.save(sets / "box.npy", np.stack([np.asarray(f["atoms"].cell[:]).reshape(9) for f in group]))
        np.save(sets / GRID, np.stack([f["grid"] for f in group]))
        np.save(sets / DENSITY, np.stack([f["density"] for f in group])[:, :, None])
        written.append(target)
    return written


def read_grid_system(path):
    """Yield (atoms, grid points [ngrid, 3], densities [ngrid]) for every frame of a grid-layout
    folder, checking shapes and values; problems are an InputError naming the file."""
    path = Path(path)
    if not is_grid_system(path):
        raise InputError(path, f"is not a folder in the grid layout (type.raw and set.*/{GRID})")
    type_map_file = path / "type_map.raw"
    if not type_map_file.is_file():
        raise InputError(path, "has no type_map.raw: the elements of type.raw are unknown")
    names = type_map_file.read_text().split()
    try:
        types = np.loadtxt(path / "type.raw", dtype=int, ndmin=1)
    except ValueError:
        raise InputError(path / "type.raw", "holds something other than integer atom types") from None
    if len(names) < 2 or types.min(initial=0) < 0 or types.max(initial=0) >= len(names) - 1:
        raise InputError(
            type_map_file, f"must list every element of type.raw and then the grid-point type (it lists {names})"
        )
    symbols = [names[t] for t in types]
    for sets in sorted(path.glob("set.*")):
        arrays = {}
        for name in ("coord.npy", "box.npy", GRID, DENSITY):
            try:
                arrays[name] = np.load(sets / name)
            except FileNotFoundError:
                raise InputError(sets, f"has no {name}") from None
            except ValueError as exc:
                raise InputError(sets / name, f"is not a numpy array file ({exc})") from None
        coord, box, grid, dens = (arrays[k] for k in ("coord.npy", "box.npy", GRID, DENSITY))
        nf = len(coord)
        expected = {
            "coord.npy": (nf, 3 * len(types)),
            "box.npy": (nf, 9),
            GRID: (nf, grid.shape[1] if grid.ndim == 3 else -1, 3),
        }
        for name, shape in expected.items():
            if arrays[name].shape != shape:
                raise InputError(
                    sets / name, f"has shape {arrays[name].shape}, expected {shape} ({len(types)} atoms in type.raw)"
                )
        if dens.shape not in ((nf, grid.shape[1], 1), (nf, grid.shape[1])):
            raise InputError(sets / DENSITY, f"has shape {dens.shape}, expected {(nf, grid.shape[1], 1)} like {GRID}")
        for name in ("coord.npy", "box.npy", GRID, DENSITY):
            if not np.all(np.isfinite(arrays[name])):
                raise InputError(sets / name, "holds NaN or infinite values")
        for f in range(nf):
            atoms = Atoms(symbols, positions=coord[f].reshape(-1, 3), cell=box[f].reshape(3, 3), pbc=True)
            yield atoms, grid[f], dens[f].reshape(-1)
