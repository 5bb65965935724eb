"""VASP CHGCAR / CHG / AECCAR / PARCHG reading and writing.

File convention: a POSCAR header, a blank line, ``NX NY NZ``, then NX*NY*NZ values of rho*V_cell
(electrons) in Fortran order (x fastest; CHGCAR 5 a line, CHG 10), optionally followed by
augmentation occupancies. Spin files repeat ``NX NY NZ`` + data for the magnetisation (one block
collinear, three non-collinear); VASP writes one moment per atom before the repeated grid line.

In memory (`VolumetricData`) every block is rho in e/A^3 as an (NX, NY, NZ) array, so that
``blocks[0][i, j, k]`` is the density at fractional position (i/NX, j/NY, k/NZ). Everything between
the end of one block and the next grid line (augmentation occupancies, per-atom moments) is kept
verbatim in `trailers` so that a file can be written back unchanged.

Reading is strict: a file that is truncated, has lines missing or added, a grid line that does not
match its data, or a non-numeric, NaN or infinite number gives one InputError naming the file,
the line and the problem - never a silently shifted grid.
"""

from __future__ import annotations

import io
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.data import chemical_symbols

from deepmd_charge.errors import InputError
from deepmd_charge.grid import electrons
from deepmd_charge.io.files import atomic_text, printable, read_text

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
        return electrons(self.blocks[block], self.atoms.cell[:])


# ---- numbers in text ----------------------------------------------------------------------------
_INT = re.compile(r"[+-]?\d+")
# Fortran drops the E of a three-digit exponent: 0.12345678901-100 means 0.12345678901E-100
_FORTRAN_EXP = re.compile(r"(?<=[\d.])([+-]\d{3})(?=\s|$)")
_NUMBER_START = re.compile(r"[+-]?(\d+\.?\d*|\.\d*)?([EeDd][+-]?\d*)?")
_AUG = re.compile(r"\s*augmentation", re.IGNORECASE)
_AUG_HEADER = re.compile(r"augmentation occupancies\s*(\d+)\s+(\d+)", re.IGNORECASE)


def _is_int_line(tokens) -> bool:
    return bool(tokens) and all(_INT.fullmatch(t) for t in tokens)


def _float_ok(tok) -> bool:
    try:
        float(_FORTRAN_EXP.sub(r"E\1", tok))
        return True
    except ValueError:
        return False


def _leading_floats(line: str) -> list:
    """The numbers at the start of `line`, up to the first word that is not one (a comment)."""
    out = []
    for tok in line.split():
        try:
            out.append(float(tok))
        except ValueError:
            break
    return out


def _line_of_value(lines, index: int) -> int:
    """Index into `lines` of the line holding whitespace-separated value number `index`."""
    seen = 0
    for k, line in enumerate(lines):
        seen += len(line.split())
        if seen > index:
            return k
    return len(lines) - 1


def parse_floats(lines, path, what: str, first_line: int = 0) -> np.ndarray:
    """All numbers in `lines` as float64 (numpy-fast); lines[0] is line `first_line` (0-based) of
    the file. A non-numeric, NaN or infinite value is an InputError naming its line."""
    text = " ".join(lines)
    try:
        values = np.array(text.split(), dtype=np.float64)
    except ValueError:
        try:
            values = np.array(_FORTRAN_EXP.sub(r"E\1", text).split(), dtype=np.float64)
        except ValueError:
            for k, line in enumerate(lines):
                bad = next((t for t in line.split() if not _float_ok(t)), None)
                if bad is not None:
                    raise InputError(
                        path, f"line {first_line + k + 1}: non-numeric value '{printable(bad)}' in {what}"
                    ) from None
            raise InputError(path, f"non-numeric value in {what}") from None
    if not np.isfinite(values).all():
        bad = int(np.flatnonzero(~np.isfinite(values))[0])
        k = _line_of_value(lines, bad)
        raise InputError(path, f"line {first_line + k + 1}: NaN or infinite value '{printable(values[bad])}' in {what}")
    return values


def _number_layout(tok: str) -> str:
    """`-0.12345E+01` -> `9.99999E+99`: the written form of a number, whatever its value."""
    body = re.sub(r"^\d*", "9", tok.lstrip("+-"))
    return re.sub(r"\d", "9", body).replace("-", "+")


def check_last_number(text: str, lines, path) -> None:
    """A file cut inside its last number still parses; DFT codes end files with a newline, so
    without one, the last number must be written like the one before it."""
    if text.endswith(("\n", "\r")) or not lines:
        return
    toks = lines[-1].split()
    before = toks[:-1] or (lines[-2].split() if len(lines) > 1 else [])
    if not (toks and before and _float_ok(before[-1])):
        return
    last = toks[-1]
    cut = not _float_ok(last) and _NUMBER_START.fullmatch(last)  # e.g. 0.1234E
    if cut or (_float_ok(last) and _number_layout(last) != _number_layout(before[-1])):
        raise InputError(path, f"truncated: the file ends inside a number ('{printable(last)}', line {len(lines)})")


# ---- header -------------------------------------------------------------------------------------
def _element(token: str) -> str:
    # VASP 6 writes POTCAR labels such as "Fe_pv/8a1b..." in the species line
    sym = re.split(r"[_/.]", token)[0]
    return sym[:1].upper() + sym[1:].lower()


def _poscar_species(path: Path):
    """Species names of a VASP 5 POSCAR/CONTCAR, or None."""
    try:
        lines = read_text(path).splitlines()
    except InputError:
        return None
    if len(lines) > 6:
        tokens = lines[5].split()
        if tokens and not _is_int_line(tokens) and _is_int_line(lines[6].split()):
            return [_element(t) for t in tokens]
    return None


def _species_from_poscar_beside(path: Path):
    for name in ("POSCAR", "CONTCAR"):
        cand = path.parent / name
        if cand.is_file() and cand.resolve() != path.resolve():
            species = _poscar_species(cand)
            if species:
                return species, cand
    return None, None


def _looks_like_cube(lines) -> bool:
    rows = [line.split() for line in lines[2:6]]
    return len(rows) == 4 and all(len(r) in (4, 5) and _INT.fullmatch(r[0]) for r in rows)


def _parse_header(lines, path: Path, elements=None):
    """Atoms and the index of the first line after the positions."""

    def line(k):
        if k >= len(lines):
            raise InputError(path, f"truncated: the file ends inside the POSCAR header (before line {k + 1})")
        return lines[k]

    def malformed(k, expected):
        return InputError(path, f"malformed header: line {k + 1} should hold {expected}, found '{printable(line(k))}'")

    title = line(0).strip()
    scale = _leading_floats(line(1))
    if len(scale) not in (1, 3):
        if _looks_like_cube(lines):
            raise InputError(path, "is a Gaussian cube file, not a CHGCAR: give it a name ending in .cube")
        raise malformed(1, "the scale factor (one number, or three)")
    scale = np.array(scale)
    if not np.isfinite(scale).all():
        raise InputError(path, f"malformed header: NaN or infinite scale factor in line 2 ('{printable(line(1))}')")
    rows = []
    for k in (2, 3, 4):
        row = _leading_floats(line(k))
        if len(row) < 3:
            raise malformed(k, "a lattice vector (three numbers)")
        rows.append(row[:3])
    cell = np.array(rows)
    if not np.isfinite(cell).all():
        raise InputError(path, "malformed header: NaN or infinite number in the lattice vectors (lines 3-5)")
    det = np.linalg.det(cell)
    lengths = np.linalg.norm(cell, axis=1)
    if lengths.min() == 0 or abs(det) < 1e-8 * lengths.prod():
        raise InputError(path, "the lattice vectors in lines 3-5 span no volume")
    if len(scale) == 1:
        if scale[0] == 0:
            raise InputError(path, "malformed header: the scale factor in line 2 is 0")
        # a negative scale factor is the cell volume
        factors = np.full(3, scale[0] if scale[0] > 0 else (-scale[0] / abs(det)) ** (1 / 3))
    else:
        if (scale <= 0).any():
            raise InputError(
                path, f"malformed header: three scale factors must all be positive, line 2 has {scale.tolist()}"
            )
        factors = scale  # VASP 6: scale the x, y and z components
    cell = cell * factors[None, :]
    volume = abs(np.linalg.det(cell))
    if not (np.isfinite(volume) and volume > 1e-6):
        raise InputError(path, f"malformed header: lines 2-5 give a cell volume of {volume:.3g} A^3")

    i = 5
    tokens = line(i).split()
    if not tokens:
        raise malformed(i, "the species names (VASP 5) or the atom counts (VASP 4)")
    if _is_int_line(tokens):  # VASP 4: no species line
        species, origin = (list(elements), "the given elements") if elements else (None, None)
        if species is None:
            species, found = _species_from_poscar_beside(path)
            origin = f"the species line of {found}"
        if species is None:
            raise InputError(
                path,
                "VASP 4 header without a species line: give the elements (e.g. elements=['Si', 'O']) "
                "or put the POSCAR next to it",
            )
    else:
        species, origin = [_element(t) for t in tokens], "the species line (line 6)"
        if elements:
            species, origin = list(elements), "the given elements"
        i += 1
        tokens = line(i).split()
    if not _is_int_line(tokens):
        raise malformed(i, "the atom counts")
    bad = [s for s in species if s not in chemical_symbols[1:]]
    if bad:
        raise InputError(path, f"unknown element(s) {bad} in {origin}")
    counts = [int(t) for t in tokens]
    if len(counts) != len(species):
        raise InputError(
            path, f"{len(species)} species {species} from {origin} but {len(counts)} atom counts in line {i + 1}"
        )
    if any(c < 0 for c in counts) or sum(counts) == 0:
        raise InputError(path, f"invalid atom counts {counts} in line {i + 1}")
    count_line = i + 1
    i += 1
    mode = line(i).strip()
    if mode[:1] in ("s", "S"):  # Selective dynamics
        i += 1
        mode = line(i).strip()
    if not mode[:1].isalpha():
        raise malformed(i, "'Direct' or 'Cartesian'")
    cartesian = mode[:1] in "cCkK"
    i += 1
    nat = sum(counts)
    if i + nat > len(lines):
        raise InputError(
            path, f"truncated: the header declares {nat} atoms but the file ends after {len(lines) - i} position lines"
        )
    pos = []
    for k in range(i, i + nat):
        row = _leading_floats(lines[k])
        if len(row) < 3:
            raise malformed(k, f"the position of atom {k - i + 1} of {nat} (atom counts in line {count_line})")
        pos.append(row[:3])
    pos = np.array(pos)
    if not np.isfinite(pos).all():
        k = i + int(np.flatnonzero(~np.isfinite(pos).all(axis=1))[0])
        raise InputError(path, f"line {k + 1}: NaN or infinite atom position")
    symbols = [s for s, c in zip(species, counts) for _ in range(c)]
    if cartesian:
        atoms = Atoms(symbols, positions=pos * factors[None, :], cell=cell, pbc=True)
    else:
        atoms = Atoms(symbols, scaled_positions=pos, cell=cell, pbc=True)
    if not np.isfinite(atoms.positions).all():
        raise InputError(path, "malformed header: atom positions out of range")
    return atoms, title, i + nat


def read_poscar(path, elements=None) -> Atoms:
    """Atoms from a VASP 4/5 POSCAR or CONTCAR (the header of a CHGCAR), species overridable."""
    path = Path(path)
    return _parse_header(read_text(path).splitlines(), path, elements)[0]


# ---- data blocks --------------------------------------------------------------------------------
def _next_nonblank(lines, i):
    while i < len(lines) and not lines[i].strip():
        i += 1
    return i


def _read_block(lines, start, n, grid_tokens, path, block_no):
    """The n values of a data block starting at line `start`; returns (values, line after them)."""
    if start >= len(lines):
        raise InputError(path, f"truncated: the file ends after the grid line of data block {block_no}")
    # fast path: every line holds as many values as the first one
    per_line = len(lines[start].split())
    if per_line:
        nlines = -(-n // per_line)
        end = start + nlines
        if end <= len(lines) and len(lines[end - 1].split()) == n - per_line * (nlines - 1):
            try:
                values = np.array(" ".join(lines[start:end]).split(), dtype=np.float64)
            except ValueError:
                values = None
            if values is not None and values.size == n and np.isfinite(values).all():
                return values, end
    # careful path: other line lengths, or a precise diagnosis
    what = f"data block {block_no}"
    count, j, stop = 0, start, None
    while count < n and j < len(lines):
        if _AUG.match(lines[j]) or lines[j].split() == grid_tokens:
            stop = j
            break
        count += len(lines[j].split())
        j += 1
    values = parse_floats(lines[start:j], path, what, start)  # non-numeric and NaN first: more precise
    hold = f"{what} should hold {n} values (NX*NY*NZ = {'x'.join(grid_tokens)})"
    if count < n:
        where = f"line {stop + 1} ('{printable(lines[stop])}')" if stop is not None else "the end of the file"
        raise InputError(path, f"truncated or malformed: {hold}, found {count} before {where}")
    if count > n:
        raise InputError(
            path,
            f"line {j}: {hold} but runs past them within this line: the grid line does not match the data, or values were added",
        )
    return values, j


def _check_trailer(lines, a, b, natoms, grid_tokens, path, block_no, more):
    """Lines a..b after data block `block_no`: augmentation occupancies (one section per atom with
    the number of values its header declares), then, when a block follows, one moment per atom
    (three non-collinear). Anything else means lines were lost or added, or a wrong grid line."""
    heads = [j for j in range(a, b) if _AUG.match(lines[j])]
    sections = []
    for j in heads:
        m = _AUG_HEADER.fullmatch(lines[j].strip())
        if m is None:
            raise InputError(path, f"line {j + 1}: malformed augmentation header '{printable(lines[j])}'")
        sections.append([j, int(m.group(2)), 0])
    # the values before the first header, then those of each section
    regions = [(a, heads[0] if heads else b)] + [(h + 1, e) for h, e in zip(heads, heads[1:] + [b])]
    counts = []
    for s, e in regions:
        for j in range(s, e):
            toks = lines[j].split()
            if len(toks) == 3 and _is_int_line(toks):
                raise InputError(
                    path,
                    f"line {j + 1}: grid line '{printable(lines[j])}' differs from the first one ('{' '.join(grid_tokens)}')",
                )
        counts.append(parse_floats(lines[s:e], path, f"the lines after data block {block_no}", s).size)
    loose = counts[0]
    for sec, found in zip(sections, counts[1:]):
        sec[2] = found
    if sections:
        if loose:
            raise InputError(
                path,
                f"line {a + 1}: {loose} values between data block {block_no} and its augmentation occupancies: "
                "lines added, or a grid line that does not match the data",
            )
        if len(sections) != natoms:
            raise InputError(
                path,
                f"augmentation occupancies after data block {block_no} cover {len(sections)} atoms, the header has "
                f"{natoms}: truncated or lines lost",
            )
        for k, (j, declared, found) in enumerate(sections):
            if found < declared or (found > declared and k < len(sections) - 1):
                raise InputError(
                    path,
                    f"line {j + 1}: augmentation occupancies of atom {k + 1} should hold {declared} values, found "
                    f"{found}: truncated, or lines lost or added",
                )
        extra = sections[-1][2] - sections[-1][1]
    else:
        extra = loose
    if extra and not (more and extra in (natoms, 3 * natoms)):
        where = (
            f"between data blocks {block_no} and {block_no + 1}" if more else f"after the last data block ({block_no})"
        )
        raise InputError(
            path,
            f"{extra} values {where} belong to no block: lines added, a grid line that does not match the data, "
            "or a truncated next block",
        )


def read_chgcar(path, elements=None) -> VolumetricData:
    """Read a VASP CHGCAR-like file (plain, .gz, .bz2 or .xz) into e/A^3 blocks.

    `elements` overrides (or, for VASP 4 headers, supplies) the species names.
    """
    path = Path(path)
    text = read_text(path)
    lines = text.splitlines()
    check_last_number(text, lines, path)
    atoms, title, i = _parse_header(lines, path, elements)
    i = _next_nonblank(lines, i)
    if i >= len(lines):
        raise InputError(path, "has no grid line after the atom positions: a POSCAR rather than a CHGCAR, or truncated")
    grid_tokens = lines[i].split()
    if len(grid_tokens) != 3 or not _is_int_line(grid_tokens):
        raise InputError(
            path, f"malformed: line {i + 1} should hold the grid size NX NY NZ, found '{printable(lines[i])}'"
        )
    shape = tuple(int(t) for t in grid_tokens)
    if min(shape) <= 0:
        raise InputError(path, f"invalid grid size {shape} in line {i + 1}")
    n = math.prod(shape)
    volume = abs(np.linalg.det(atoms.cell[:]))
    blocks, trailers = [], []
    while True:
        values, end = _read_block(lines, i + 1, n, grid_tokens, path, len(blocks) + 1)
        block = values.reshape(shape, order="F") / volume
        if not np.isfinite(block).all():
            raise InputError(
                path, f"data block {len(blocks) + 1} overflows: values too large for the cell volume {volume:.3g} A^3"
            )
        blocks.append(block)
        j = end
        while j < len(lines) and lines[j].split() != grid_tokens:
            j += 1
        _check_trailer(lines, end, j, len(atoms), grid_tokens, path, len(blocks), more=j < len(lines))
        trailers.append("".join(line + "\n" for line in lines[end:j]))
        if j >= len(lines):
            break
        i = j
    if len(blocks) not in BLOCK_NAMES:
        raise InputError(path, f"{len(blocks)} data blocks; expected 1 (total), 2 (spin) or 4 (non-collinear)")
    return VolumetricData(atoms=atoms, blocks=blocks, trailers=trailers, title=title, source=str(path))


# ---- writing ------------------------------------------------------------------------------------
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
    out.write((title or atoms.get_chemical_formula()).replace("\n", " ").replace("\r", " ") + "\n")
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
    """Grid values as VASP writes them: 5 per line, 11 significant digits (" %17.10E")."""
    flat = np.asarray(values, dtype=np.float64).ravel(order="F")
    nfull = flat.size // per_line
    fields = _format_e(flat[: nfull * per_line])
    if fields is not None:
        lines = np.empty((nfull, per_line * 18 + 1), dtype=np.uint8)
        lines[:, :-1] = fields.reshape(nfull, per_line * 18)
        lines[:, -1] = ord("\n")
        body = lines.tobytes().decode("ascii")
    else:  # exponents of 3 digits, inf or nan: one %-format over the block (~10x np.savetxt)
        body = ((" %17.10E" * per_line + "\n") * nfull) % tuple(flat[: nfull * per_line])
    rest = flat[nfull * per_line :]
    if rest.size:
        body += "".join(f" {x:17.10E}" for x in rest) + "\n"
    return body


def _format_e(x: np.ndarray):
    """(N, 18) ASCII codes of " %17.10E" % x, built with numpy: 0.3 s -> 0.07 s for 10^6 values,
    which a 10^6-point prediction spent writing its CHGCAR. Values whose last digit is a near-tie
    for float arithmetic get Python's (correctly rounded) formatting; None when a field would not
    be 18 characters (|exponent| >= 100, inf, nan)."""
    a = np.abs(x)
    pos = a > 0
    if not np.all(np.isfinite(x)) or np.any(pos & ((a >= 1e100) | (a < 1e-99))):
        return None
    e = np.zeros(x.shape, dtype=np.int64)
    e[pos] = np.floor(np.log10(a[pos]))
    scaled = a / 10.0**e * 1e10
    d = np.rint(scaled).astype(np.int64)
    tie = np.abs(scaled - np.floor(scaled) - 0.5) < 1e-4
    redo = pos & (tie | (d < 10**10) | (d >= 10**11))  # near-ties and log10 off by one
    out = np.empty((x.size, 18), dtype=np.uint8)
    out[:, 0] = ord(" ")
    out[:, 1] = np.where(np.signbit(x), ord("-"), ord(" "))
    out[:, 3] = ord(".")
    out[:, 14] = ord("E")
    for i, col in enumerate((2, *range(4, 14))):
        out[:, col] = ord("0") + (d // 10 ** (10 - i)) % 10
    out[:, 15] = np.where(e < 0, ord("-"), ord("+"))
    out[:, 16] = ord("0") + np.abs(e) // 10
    out[:, 17] = ord("0") + np.abs(e) % 10
    for i in np.flatnonzero(redo):
        field = f" {x[i]:17.10E}".encode()
        if len(field) != 18:
            return None
        out[i] = np.frombuffer(field, dtype=np.uint8)
    return out


def write_chgcar(path, atoms: Atoms, blocks, trailers=None, title: str = "") -> None:
    """Write a VASP 5 CHGCAR: `blocks` are e/A^3 arrays (total first), stored as rho*V.

    `trailers` (e.g. augmentation occupancies from `read_chgcar`) are written verbatim after the
    block they belong to; missing ones are empty. A name ending in .gz, .bz2 or .xz is compressed.
    The file appears only when complete. (write_chgcar_slabs with each block as one slab.)
    """
    if isinstance(blocks, np.ndarray) and blocks.ndim == 3:
        blocks = [blocks]
    blocks = [np.asarray(b, dtype=np.float64) for b in blocks]
    if len(blocks) not in BLOCK_NAMES:
        raise ValueError(f"a CHGCAR holds 1, 2 or 4 blocks, got {len(blocks)}")
    shape = blocks[0].shape
    if len(shape) != 3 or any(b.shape != shape for b in blocks):
        raise ValueError(f"blocks must be 3-d arrays of one shape, got {[b.shape for b in blocks]}")
    trailers = list(trailers or [])
    if len(trailers) > len(blocks):
        raise ValueError(f"{len(trailers)} trailers for {len(blocks)} blocks")
    trailers += [""] * (len(blocks) - len(trailers))
    write_chgcar_slabs(path, atoms, shape, [([(0, shape[2], b)], t) for b, t in zip(blocks, trailers)], title=title)


def write_chgcar_slabs(path, atoms: Atoms, shape, blocks, title: str = "") -> list:
    """Write a CHGCAR whose blocks come slab by slab, never holding a whole grid.

    `blocks` is a list of (slabs, trailer): slabs an iterable of (k0, k1, rho[:, :, k0:k1]) in
    order (e/A^3), trailer the text after the block (augmentation occupancies, or ""). One block
    is a plain CHGCAR, two a spin-polarised one (total, magnetisation). Returns the sum of each
    block over all points. The file appears only when complete (a NaN or infinite value is an
    InputError and leaves no file); a name ending in .gz, .bz2 or .xz (any case) is compressed
    on the fly.
    """
    shape = tuple(int(n) for n in shape)
    volume = abs(np.linalg.det(atoms.cell[:]))
    if volume == 0:
        raise ValueError("the atoms have no cell volume")
    sums = []
    with atomic_text(path) as fh:
        fh.write(format_poscar(atoms, title) + "\n")
        for slabs, trailer in blocks:
            fh.write(" {:4d} {:4d} {:4d}\n".format(*shape))
            sums.append(_write_block(fh, shape, volume, slabs, path))
            fh.write(trailer if not trailer or trailer.endswith("\n") else trailer + "\n")
    return sums


def _write_block(fh, shape, volume, slabs, path) -> float:
    total = 0.0
    next_k = 0
    carry = np.zeros(0)
    for k0, k1, slab in slabs:
        if k0 != next_k or slab.shape != (shape[0], shape[1], k1 - k0):
            raise ValueError(f"slab {k0}:{k1} out of order or of wrong shape {slab.shape}")
        if not np.isfinite(slab).all():
            raise InputError(path, "not written: the density holds NaN or infinite values")
        next_k = k1
        total += float(slab.sum())
        values = np.concatenate([carry, slab.ravel(order="F") * volume])
        full = values.size // 5 * 5  # keep VASP's five values a line across slab boundaries
        fh.write(format_values(values[:full]))
        carry = values[full:]
    if next_k != shape[2]:
        raise ValueError(f"slabs ended at plane {next_k} of {shape[2]}")
    if carry.size:
        fh.write(format_values(carry))
    return total


def write_volumetric(path, data: VolumetricData) -> None:
    """Write `data` back as a CHGCAR, trailers included."""
    write_chgcar(path, data.atoms, data.blocks, data.trailers, data.title)
