"""Which structure to compute next: rank candidates by committee deviation (`dp-charge select`).

The DeePMD-kit habit (`dp model-devi`) for densities: every candidate structure (each frame of
a trajectory, XDATCAR or extxyz) is predicted by every committee member on a coarse grid, and
scored by the deviation of the members (population standard deviation per grid point, e/A^3):

- ``mean`` (default): the mean of the per-point deviation over the cell: how uncertain the
  density is overall. Robust: one odd point does not decide.
- ``max``: the largest per-point deviation: the worst spot (a bond or core region the training
  never saw), more sensitive and more noisy.

>>> ranked = rank_candidates(Committee(models), read_candidates(["traj.xyz"]), spacing=0.3)
>>> write_selection(ranked[:4], "next_dft")      # next_dft/001/POSCAR ... and ranking.txt
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from deepmd_charge.errors import InputError

DEFAULT_SPACING = 0.3  # Angstrom: a coarse grid is enough to rank structures (8,000 points for Si8)
CRITERIA = ("mean", "max")


def read_candidates(paths, elements=None) -> list:
    """[(name, Atoms)] for every structure in `paths`: every frame of multi-frame files.

    Anything ASE reads (POSCAR, CIF, extxyz, XDATCAR, ASE .traj, ...) and CHGCAR/cube files (their
    structure). Frames are named ``file@i`` (0-based) when a file holds more than one.
    """
    import ase.io

    from deepmd_charge.io.files import printable
    from deepmd_charge.io.structure import _ASE_SUFFIXES, _VASP_GRID, _VASP_POSCAR, is_cube, read_structure

    out = []
    for path in map(Path, paths):
        name = path.name.upper()
        grid_file = _VASP_GRID.search(name) and path.suffix.lower() not in _ASE_SUFFIXES
        single = is_cube(path) or grid_file or (elements and _VASP_POSCAR.search(name))
        if single or not path.is_file():
            out.append((str(path), read_structure(path, elements=elements)))
            continue
        try:
            frames = ase.io.read(str(path), index=":")
        except Exception as exc:  # ASE raises many types for unreadable files
            raise InputError(
                path, f"ASE cannot read structures from it ({type(exc).__name__}: {printable(exc, 200)})"
            ) from None
        frames = [frames] if not isinstance(frames, list) else frames
        if not frames or any(len(a) == 0 for a in frames):
            raise InputError(path, "holds no atoms")
        out.extend((str(path) if len(frames) == 1 else f"{path}@{i}", a) for i, a in enumerate(frames))
    return out


def structure_deviation(committee, atoms, spacing: float = DEFAULT_SPACING, source="structure") -> dict:
    """Mean and max of the committee's per-point deviation on a grid of `spacing` (A)."""
    committee.check_structure(atoms, source)
    shape = committee.grid_shape(atoms, spacing=spacing)
    total, top = 0.0, 0.0
    for _, _, _, std in committee.iter_slabs(atoms, shape, with_std=True):
        total += float(std.sum())
        top = max(top, float(std.max()))
    return {"mean": total / int(np.prod(shape)), "max": top, "grid": tuple(int(n) for n in shape)}


def rank_candidates(
    committee, candidates, spacing: float = DEFAULT_SPACING, criterion: str = "mean", progress=None
) -> list:
    """Candidates [(name, Atoms)] as dicts {name, atoms, mean, max, grid}, most uncertain first.

    Ties keep the input order, so the ranking is deterministic.
    """
    if criterion not in CRITERIA:
        raise InputError("criterion", f"must be one of {CRITERIA}, got {criterion!r}")
    if len(committee) < 2:
        raise InputError("models", "needs two or more models: one model has no deviation")
    scored = []
    for n, (name, atoms) in enumerate(candidates):
        dev = structure_deviation(committee, atoms, spacing, source=name)
        scored.append({"name": name, "atoms": atoms, "order": n, **dev})
        if progress:
            progress(scored[-1])
    scored.sort(key=lambda d: (-d[criterion], d["order"]))
    return scored


def format_ranking(ranked, criterion: str, k: int | None = None) -> str:
    """The ranked table (rank, deviation mean and max in e/A^3, atoms, name); * marks the selected."""
    lines = [
        f"{'rank':>4s}  {'mean dev':>10s} {'max dev':>10s} {'atoms':>6s}  structure   (sorted by {criterion} deviation, e/A^3)"
    ]
    for r, d in enumerate(ranked, 1):
        mark = "*" if k is not None and r <= k else " "
        lines.append(f"{r:4d}{mark} {d['mean']:10.3e} {d['max']:10.3e} {len(d['atoms']):6d}  {d['name']}")
    return "\n".join(lines)


def write_selection(ranked, k: int, outdir, criterion: str = "mean") -> list:
    """Write the first `k` as outdir/001/POSCAR, 002/POSCAR, ... and the whole table as
    outdir/ranking.txt. `outdir` must not exist or be empty; it appears only when complete."""
    import ase.io

    from deepmd_charge.io.files import atomic_folder

    outdir = Path(outdir)
    if k <= 0:
        raise InputError("-n", f"must be a positive number of structures, got {k}")
    if k > len(ranked):
        raise InputError("-n", f"asks for {k} structures but the candidates hold only {len(ranked)}")
    if outdir.exists() and (not outdir.is_dir() or any(outdir.iterdir())):
        raise InputError(outdir, "exists and is not an empty folder; choose another -o")
    with atomic_folder(outdir) as tmp:
        written = []
        width = max(3, len(str(k)))
        for r, d in enumerate(ranked[:k], 1):
            folder = tmp / f"{r:0{width}d}"
            folder.mkdir()
            ase.io.write(folder / "POSCAR", d["atoms"], format="vasp", direct=True, sort=False)
            written.append(outdir / folder.name / "POSCAR")
        (tmp / "ranking.txt").write_text(format_ranking(ranked, criterion, k) + "\n")
    return written
