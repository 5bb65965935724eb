"""Gaussian cube files: bohr and e/bohr^3 on disk, Angstrom and e/A^3 in memory.

Periodic convention: an (N1, N2, N3) cube covers the cell with steps cell[i]/Ni, the first point
at the origin. A non-zero origin is removed by shifting the atoms (the density moves with them).
"""

from __future__ import annotations

import numpy as np
from ase import Atoms
from ase.units import Bohr

from deepmd_charge.errors import InputError
from deepmd_charge.io.chgcar import VolumetricData
from deepmd_charge.io.files import atomic_write, read_text


def read_cube(path) -> VolumetricData:
    """Read a cube file (plain or compressed) into e/A^3 on a periodic grid."""
    text = read_text(path)
    lines = text.splitlines()
    try:
        head = lines[2].split()
        nat = int(head[0])
        origin = np.array([float(x) for x in head[1:4]]) * Bohr
        nval = int(head[4]) if len(head) > 4 else 1
        shape, axes = [], []
        for i in range(3):
            tok = lines[3 + i].split()
            shape.append(int(tok[0]))
            axes.append([float(x) for x in tok[1:4]])
        numbers, positions = [], []
        for i in range(abs(nat)):
            tok = lines[6 + i].split()
            numbers.append(int(tok[0]))
            positions.append([float(x) for x in tok[2:5]])
    except (IndexError, ValueError) as exc:
        raise InputError(path, f"malformed cube header ({exc})") from None
    if min(shape) <= 0:
        raise InputError(path, f"invalid grid size {shape} (negative sizes mean Angstrom units, not supported)")
    start = 6 + abs(nat) + (1 if nat < 0 else 0)  # negative count: one extra line of orbital ids
    try:
        values = np.array(" ".join(lines[start:]).split(), dtype=np.float64)
    except ValueError:
        raise InputError(path, "non-numeric value in the cube data") from None
    n = int(np.prod(shape))
    if values.size != n * nval:
        raise InputError(path, f"cube data should hold {n * nval} values, found {values.size}")
    if not np.all(np.isfinite(values)):
        raise InputError(path, "NaN or infinite values in the cube data")
    cell = np.array(axes) * np.array(shape)[:, None] * Bohr
    atoms = Atoms(numbers=numbers, positions=np.array(positions).reshape(-1, 3) * Bohr - origin, cell=cell, pbc=True)
    rho = values.reshape(shape + [nval])[..., 0] / Bohr**3
    return VolumetricData(atoms=atoms, blocks=[rho], trailers=[""], title=lines[0].strip(), source=str(path))


def write_cube(path, atoms: Atoms, rho: np.ndarray, comment: str = "") -> None:
    """Write rho (e/A^3, shape (N1, N2, N3)) as a cube file in bohr and e/bohr^3."""
    rho = np.asarray(rho, dtype=np.float64)
    out = [(comment or "deepmd-charge density").replace("\n", " "), "OUTER LOOP: X, MIDDLE LOOP: Y, INNER LOOP: Z (e/bohr^3)"]
    out.append(f"{len(atoms):5d}{0.0:12.6f}{0.0:12.6f}{0.0:12.6f}")
    for i in range(3):
        step = atoms.cell[i] / rho.shape[i] / Bohr
        out.append(f"{rho.shape[i]:5d}" + "".join(f"{x:12.6f}" for x in step))
    for z, p in zip(atoms.numbers, atoms.positions / Bohr):
        out.append(f"{z:5d}{0.0:12.6f}" + "".join(f"{x:12.6f}" for x in p))
    flat = (rho * Bohr**3).ravel(order="C")
    per_line = 6
    nfull = flat.size // per_line
    body = ((" %13.5E" * per_line + "\n") * nfull) % tuple(flat[: nfull * per_line])
    if flat.size % per_line:
        body += "".join(f" {x:13.5E}" for x in flat[nfull * per_line :]) + "\n"
    with atomic_write(path) as fh:
        fh.write("\n".join(out) + "\n" + body)
