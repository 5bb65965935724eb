"""Gaussian cube files: bohr and e/bohr^3 on disk, Angstrom and e/A^3 in memory.

Periodic convention: an (N1, N2, N3) cube covers the cell with steps cell[i]/Ni, the first point
at the origin. A non-zero origin is removed by shifting the atoms (the density moves with them).
A negative atom count means a line of orbital numbers follows the atoms (the first orbital is
read); negative grid counts (Angstrom units) are not supported.
"""

from __future__ import annotations

import math

import numpy as np
from ase import Atoms
from ase.units import Bohr

from deepmd_charge.errors import InputError
from deepmd_charge.io.chgcar import VolumetricData, check_last_number, parse_floats
from deepmd_charge.io.files import printable, read_text, write_text


def _whole(tok: str) -> int:
    """A whole number, also when written as 14.000000 (some writers do so for atomic numbers)."""
    try:
        value = int(tok)
    except ValueError:
        number = float(tok)
        if not number.is_integer():
            raise
        value = int(number)
    if abs(value) > 10**9:
        raise ValueError(tok)
    return value


def _numbers(lines, k, path, ints: int, floats: int, what: str) -> list:
    """`ints` whole numbers then `floats` numbers from line k (0-based)."""
    if k >= len(lines):
        raise InputError(path, f"truncated cube header: the file ends before line {k + 1} ({what})")
    tok = lines[k].split()
    try:
        if len(tok) < ints + floats:
            raise ValueError
        out = [_whole(t) for t in tok[:ints]] + [float(t) for t in tok[ints : ints + floats]]
    except ValueError:
        raise InputError(
            path, f"malformed cube header: line {k + 1} should hold {what}, found '{printable(lines[k])}'"
        ) from None
    if not np.isfinite(out).all():
        raise InputError(path, f"malformed cube header: NaN or infinite number in line {k + 1}")
    return out


def read_cube(path) -> VolumetricData:
    """Read a cube file (plain or compressed) into e/A^3 on a periodic grid."""
    text = read_text(path)
    lines = text.splitlines()
    check_last_number(text, lines, path)
    nat, *origin = _numbers(lines, 2, path, 1, 3, "the atom count and the origin")
    head = lines[2].split()
    nval = 1
    if len(head) > 4:  # newer cubes: values per point
        try:
            nval = int(head[4])
        except ValueError:
            raise InputError(
                path,
                f"malformed cube header: line 3 should end with the number of values per point, found '{printable(head[4])}'",
            ) from None
    shape, axes = [], []
    for i in range(3):
        n, *axis = _numbers(lines, 3 + i, path, 1, 3, "a grid count and a step vector")
        shape.append(n)
        axes.append(axis)
    if min(shape) <= 0:
        raise InputError(path, f"invalid grid size {tuple(shape)} (negative sizes mean Angstrom units, not supported)")
    numbers, positions = [], []
    for k in range(6, 6 + abs(nat)):
        z, _charge, *xyz = _numbers(lines, k, path, 1, 4, "an atom: atomic number, charge, x, y, z")
        if not 1 <= z < 119:
            raise InputError(path, f"line {k + 1}: atomic number {z} is not an element")
        numbers.append(z)
        positions.append(xyz)
    start = 6 + abs(nat)
    if nat < 0:  # a negative count: orbital numbers follow the atoms, "M id_1 ... id_M" (may wrap)
        m = _numbers(lines, start, path, 1, 0, "the number of orbitals and their ids")[0]
        if m <= 0:
            raise InputError(
                path, f"malformed cube header: line {start + 1} should give a positive number of orbitals, found {m}"
            )
        seen = 0
        while seen < m + 1:
            if start >= len(lines):
                raise InputError(path, "truncated cube header: the orbital ids are incomplete")
            seen += len(lines[start].split())
            start += 1
        nval = m
    if nval is None or nval <= 0:
        raise InputError(path, f"malformed cube header: {nval} values per grid point")
    n = math.prod(shape)
    values = parse_floats(lines[start:], path, "the cube data", start)
    if values.size != n * nval:
        per = f" x {nval} values per point" if nval > 1 else ""
        raise InputError(
            path,
            f"truncated or malformed: the cube data should hold {n * nval} values ({'x'.join(map(str, shape))} "
            f"grid{per}), found {values.size}",
        )
    cell = np.array(axes) * np.array(shape)[:, None] * Bohr
    lengths = np.linalg.norm(cell, axis=1)
    volume = abs(np.linalg.det(cell))
    if lengths.min() == 0 or volume < 1e-8 * lengths.prod() or not (np.isfinite(volume) and volume > 1e-6):
        raise InputError(path, "the step vectors in lines 4-6 span no volume")
    origin = np.array(origin) * Bohr
    positions = np.array(positions).reshape(-1, 3) * Bohr - origin
    if not np.isfinite(positions).all():
        raise InputError(path, "malformed cube header: atom positions out of range")
    atoms = Atoms(numbers=numbers, positions=positions, cell=cell, pbc=True)
    rho = values.reshape(shape + [nval])[..., 0] / Bohr**3
    if not np.isfinite(rho).all():
        raise InputError(path, "the cube data overflows: values too large")
    return VolumetricData(atoms=atoms, blocks=[rho], trailers=[""], title=lines[0].strip(), source=str(path))


def format_cube_values(values: np.ndarray) -> str:
    """Gaussian layout: for every (x, y) a row of the NZ values, six a line, each row on new lines."""
    nx, ny, nz = values.shape
    row = (" %13.5E" * 6 + "\n") * (nz // 6) + (" %13.5E" * (nz % 6) + "\n" if nz % 6 else "")
    return (row * (nx * ny)) % tuple(values.ravel(order="C"))


def write_cube(path, atoms: Atoms, rho: np.ndarray, comment: str = "") -> None:
    """Write rho (e/A^3, shape (N1, N2, N3)) as a cube file in bohr and e/bohr^3.

    A name ending in .gz, .bz2 or .xz is compressed; the file appears only when complete.
    """
    rho = np.asarray(rho, dtype=np.float64)
    if rho.ndim != 3:
        raise ValueError(f"rho must be a 3-d array, got shape {rho.shape}")
    if not np.isfinite(rho).all():
        raise InputError(path, "not written: the density holds NaN or infinite values")
    out = [
        (comment or "deepmd-charge density").replace("\n", " ").replace("\r", " "),
        "OUTER LOOP: X, MIDDLE LOOP: Y, INNER LOOP: Z (e/bohr^3)",
    ]
    out.append(f"{len(atoms):5d}{0.0:12.6f}{0.0:12.6f}{0.0:12.6f}")
    for i in range(3):
        step = atoms.cell[i] / rho.shape[i] / Bohr
        out.append(f"{rho.shape[i]:5d}" + "".join(f"{x:12.6f}" for x in step))
    for z, p in zip(atoms.numbers, atoms.positions / Bohr):
        out.append(f"{z:5d}{0.0:12.6f}" + "".join(f"{x:12.6f}" for x in p))
    write_text(path, "\n".join(out) + "\n" + format_cube_values(rho * Bohr**3))
