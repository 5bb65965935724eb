"""VASP CHGCAR / CHG / AECCAR / PARCHG reading and writing.

File convention: a POSCAR header, a blank line, ``NX NY NZ``, then NX*NY*NZ values of rho*V_cell
(electrons) in Fortran order (x fastest), optionally followed by augmentation occupancies. Spin
files repeat ``NX NY NZ`` + data for the magnetisation (one block collinear, three non-collinear).

In memory (`VolumetricData`) every block is rho in e/A^3 as an (NX, NY, NZ) array, so that
``blocks[0][i, j, k]`` is the density at fractional position (i/NX, j/NY, k/NZ). Everything between
the end of one block and the next grid line (augmentation occupancies, per-atom moments) is kept
verbatim in `trailers` so that a file can be written back unchanged.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.data import chemical_symbols

from deepmd_charge.errors import InputError
from deepmd_charge.io.files import atomic_write, read_text

BLOCK_NAMES = {1: ["total"], 2: ["total", "magnetization"], 4: ["total", "mx", "my", "mz"]}


@dataclass
class VolumetricData:
    """A structure and one or more density blocks on its periodic grid (e/A^3)."""

    atoms: Atoms
    blocks: list = field(default_factory=list)
    trailers: list = field(default_factory=list)
    title: str = ""
    source: str = ""

    @property
    def total(self) -> np.ndarray:
        return self.blocks[0]

    @property
    def shape(self) -> tuple:
        return tuple(self.blocks[0].shape)

    @property
    def block_names(self) -> list:
        return BLOCK_NAMES.get(len(self.blocks), [f"block{i}" for i in range(len(self.blocks))])

    def block(self, channel: str) -> np.ndarray:
        """The block named `channel` ("total", "magnetization", "mx", ...)."""
        names = self.block_names
        if channel not in names:
            raise InputError(self.source, f"has no '{channel}' block (it has: {', '.join(names)})")
        return self.blocks[names.index(channel)]

    def electrons(self, block: int = 0) -> float:
        """Integral of the block over the cell: the electron count for block 0."""
        return float(self.blocks[block].mean() * abs(np.linalg.det(self.atoms.cell[:])))


def _element(token: str) -> str:
    # VASP 6 writes POTCAR labels such as "Fe_pv/8a1b..." in the species line
    sym = re.split(r"[_/.]", token)[0]
    return sym


def _is_int_line(tokens) -> bool:
    return bool(tokens) and all(re.fullmatch(r"[+-]?\d+", t) for t in tokens)


def _species_from_poscar_beside(path: Path):
    for name in ("POSCAR", "CONTCAR"):
        cand = path.parent / name
        if cand.is_file() and cand != path:
            lines = read_text(cand).splitlines()
            if len(lines) > 5 and not _is_int_line(lines[5].split()):
                return [_element(t) for t in lines[5].split()], cand
    return None, None


def _parse_header(lines, path: Path, elements=None):
    """Atoms and the index of the first line after the positions."""
    try:
        title = lines[0].strip()
        scale = np.array([float(x) for x in lines[1].split()[:3]])
        cell = np.array([[float(x) for x in lines[i].split()[:3]] for i in (2, 3, 4)])
        if cell.shape != (3, 3):
            raise ValueError("lattice vectors need three numbers each")
    except (ValueError, IndexError) as exc:
        raise InputError(path, f"malformed POSCAR header in lines 1-5 ({exc})") from None
    if len(scale) == 1 and scale[0] < 0:  # negative scale = target volume
        scale = np.full(3, (-scale[0] / abs(np.linalg.det(cell))) ** (1 / 3))
    elif len(scale) == 1:
        scale = np.full(3, scale[0])
    elif len(scale) != 3:
        raise InputError(path, "malformed scale factor in line 2")
    cell = cell * scale[:, None] if len(set(scale)) == 1 else cell * scale[None, :]
    if abs(np.linalg.det(cell)) < 1e-8:
        raise InputError(path, "lattice vectors in lines 3-5 span no volume")

    i = 5
    tokens = lines[i].split() if len(lines) > i else []
    if _is_int_line(tokens):  # VASP 4: no species line
        species = list(elements) if elements else None
        if species is None:
            species, found = _species_from_poscar_beside(path)
        if species is None:
            raise InputError(
                path,
                "VASP 4 header without a species line: give the elements with --elements "
                "(e.g. --elements Si O) or put the POSCAR next to it",
            )
    else:
        species = [_element(t) for t in tokens]
        i += 1
        tokens = lines[i].split() if len(lines) > i else []
        if elements:
            species = list(elements)
    bad = [s for s in species if s not in chemical_symbols[1:]]
    if bad:
        raise InputError(path, f"unknown element(s) {bad} in the species line")
    if not _is_int_line(tokens):
        raise InputError(path, f"line {i + 1} should hold the atom counts, found '{lines[i].strip()}'")
    counts = [int(t) for t in tokens]
    if len(counts) != len(species):
        raise InputError(path, f"{len(species)} species {species} but {len(counts)} atom counts")
    if any(c < 0 for c in counts) or sum(counts) == 0:
        raise InputError(path, f"invalid atom counts {counts}")
    i += 1
    if lines[i].strip()[:1] in "sS":
        i += 1
    cartesian = lines[i].strip()[:1] in "cCkK"
    i += 1
    nat = sum(counts)
    try:
        pos = np.array([[float(x) for x in lines[i + k].split()[:3]] for k in range(nat)])
        if pos.shape != (nat, 3):
            raise ValueError("each position needs three numbers")
    except (ValueError, IndexError) as exc:
        raise InputError(path, f"malformed atom positions after line {i} ({exc})") from None
    if not np.all(np.isfinite(pos)):
        raise InputError(path, "non-finite atom positions")
    symbols = [s for s, c in zip(species, counts) for _ in range(c)]
    if cartesian:
        atoms = Atoms(symbols, positions=pos * scale, cell=cell, pbc=True)
    else:
        atoms = Atoms(symbols, scaled_positions=pos, cell=cell, pbc=True)
    return atoms, title, i + nat


def _next_nonblank(lines, i):
    while i < len(lines) and not lines[i].strip():
        i += 1
    return i


def _read_values(lines, start, n, path, block_no):
    """n floats starting at line `start`; returns (values, first line after them)."""
    if start >= len(lines):
        raise InputError(path, f"truncated: data block {block_no + 1} is missing")
    per_line = len(lines[start].split())
    if per_line == 0:
        raise InputError(path, f"line {start + 1}: expected data values")
    nlines = -(-n // per_line)
    chunk = lines[start : start + nlines]
    try:
        values = np.array(" ".join(chunk).split(), dtype=np.float64)
    except ValueError:
        bad = next(t for t in " ".join(chunk).split() if not _float_ok(t))
        raise InputError(path, f"non-numeric value '{bad}' in data block {block_no + 1}") from None
    if values.size != n:
        if start + nlines > len(lines) or values.size < n:
            raise InputError(
                path,
                f"truncated or malformed: data block {block_no + 1} should hold {n} values "
                f"(the grid line's product), found {values.size}",
            )
        raise InputError(path, f"data block {block_no + 1} holds {values.size} values, expected {n}")
    if not np.all(np.isfinite(values)):
        raise InputError(path, f"NaN or infinite values in data block {block_no + 1}")
    return values, start + nlines


def _float_ok(tok):
    try:
        float(tok)
        return True
    except ValueError:
        return False


def read_chgcar(path, elements=None) -> VolumetricData:
    """Read a VASP CHGCAR-like file (plain, .gz, .bz2 or .xz) into e/A^3 blocks.

    `elements` overrides (or, for VASP 4 headers, supplies) the species names.
    """
    path = Path(path)
    text = read_text(path)
    lines = text.splitlines()
    atoms, title, i = _parse_header(lines, path, elements)
    i = _next_nonblank(lines, i)
    if i >= len(lines):
        raise InputError(path, "truncated: no grid line after the atom positions (a POSCAR?)")
    grid_tokens = lines[i].split()
    if len(grid_tokens) != 3 or not _is_int_line(grid_tokens):
        raise InputError(path, f"line {i + 1} should hold the grid size NX NY NZ, found '{lines[i].strip()}'")
    shape = tuple(int(t) for t in grid_tokens)
    if min(shape) <= 0:
        raise InputError(path, f"invalid grid size {shape}")
    n = int(np.prod(shape))
    volume = abs(np.linalg.det(atoms.cell[:]))
    blocks, trailers = [], []
    while True:
        values, i = _read_values(lines, i + 1, n, path, len(blocks))
        blocks.append(values.reshape(shape, order="F") / volume)
        j = i
        while j < len(lines) and lines[j].split() != grid_tokens:
            j += 1
        trailers.append("".join(line + "\n" for line in lines[i:j]))
        if j >= len(lines):
            break
        i = j
    if len(blocks) not in BLOCK_NAMES:
        raise InputError(path, f"{len(blocks)} data blocks; expected 1 (total), 2 (spin) or 4 (non-collinear)")
    return VolumetricData(atoms=atoms, blocks=blocks, trailers=trailers, title=title, source=str(path))


def _species_runs(symbols):
    runs = []
    for s in symbols:
        if runs and runs[-1][0] == s:
            runs[-1][1] += 1
        else:
            runs.append([s, 1])
    return runs


def format_poscar(atoms: Atoms, title: str = "") -> str:
    """VASP 5 POSCAR text (direct coordinates), species in runs of the atoms' own order."""
    runs = _species_runs(atoms.get_chemical_symbols())
    out = io.StringIO()
    out.write((title or atoms.get_chemical_formula()).replace("\n", " ") + "\n")
    out.write("   1.00000000000000\n")
    for vec in atoms.cell[:]:
        out.write("  " + " ".join(f"{x:21.16f}" for x in vec) + "\n")
    out.write("   " + " ".join(f"{s:>4s}" for s, _ in runs) + "\n")
    out.write("   " + " ".join(f"{c:4d}" for _, c in runs) + "\n")
    out.write("Direct\n")
    for p in atoms.get_scaled_positions(wrap=False):
        out.write(" " + " ".join(f"{x:19.16f}" for x in p) + "\n")
    return out.getvalue()


def format_values(values: np.ndarray, per_line: int = 5) -> str:
    """Grid values as VASP writes them: 5 per line, 11 significant digits."""
    flat = np.asarray(values, dtype=np.float64).ravel(order="F")
    nfull = flat.size // per_line
    # one %-format over the whole block: ~10x faster than np.savetxt for 1e6 values
    body = ((" %17.10E" * per_line + "\n") * nfull) % tuple(flat[: nfull * per_line])
    rest = flat[nfull * per_line :]
    if rest.size:
        body += "".join(f" {x:17.10E}" for x in rest) + "\n"
    return body


def write_chgcar(path, atoms: Atoms, blocks, trailers=None, title: str = "") -> None:
    """Write a VASP 5 CHGCAR: `blocks` are e/A^3 arrays (total first), stored as rho*V.

    `trailers` (e.g. augmentation occupancies from `read_chgcar`) are written verbatim after the
    block they belong to. A name ending in .gz is gzip-compressed. The file appears only when
    complete.
    """
    if isinstance(blocks, np.ndarray):
        blocks = [blocks]
    trailers = list(trailers) if trailers else [""] * len(blocks)
    volume = abs(np.linalg.det(atoms.cell[:]))
    shape = blocks[0].shape
    parts = [format_poscar(atoms, title), "\n"]
    for block, trailer in zip(blocks, trailers):
        parts.append(" {:4d} {:4d} {:4d}\n".format(*shape))
        parts.append(format_values(np.asarray(block) * volume))
        parts.append(trailer)
    text = "".join(parts)
    if str(path).endswith(".gz"):
        import gzip

        with atomic_write(path, "wb") as fh:
            fh.write(gzip.compress(text.encode(), compresslevel=6))
    else:
        with atomic_write(path) as fh:
            fh.write(text)


def write_volumetric(path, data: VolumetricData) -> None:
    """Write `data` back as a CHGCAR, trailers included."""
    write_chgcar(path, data.atoms, data.blocks, data.trailers, data.title)
