"""Quantum ESPRESSO (pw.x) save folders: ``PREFIX.save/charge-density.dat`` and its structure.

pw.x (6.x and 7.x built without HDF5, as in the Debian/Ubuntu packages) writes the density of a
run as ``charge-density.dat``, a Fortran-unformatted sequential file of five or more records
(QE's Modules/io_base.f90, write_rhog; checked on files written by the Debian pw.x 6.7):

    1. gamma_only (logical, 4 bytes), ngm_g, nspin (4-byte integers)
    2. b1, b2, b3: the reciprocal lattice vectors, 9 float64, in bohr^-1 (2*pi included)
    3. the Miller indices of the ngm_g G-vectors: 3 x ngm_g 4-byte integers (m1, m2, m3 per G)
    4. rho(G) of the total density: ngm_g complex128, electrons/bohr^3
    5. nspin = 2: rho(G) of the magnetisation (up - down); nspin = 4: m_x, m_y, m_z

with rho(r) = sum_G rho(G) exp(i G.r), so that rho(G=0) * Omega = the electron count. With
gamma_only (``K_POINTS gamma``) only one G of each (G, -G) pair is stored; rho(-G) = conj(rho(G)).
Every record is framed by its byte length (4-byte markers).

pw.x reads the file back by position (``startingpot = 'file'``): record 4 must list rho(G) in the
order of pw.x's own G-vectors for that cell and cutoff, which is why a density is put into an
existing save folder (written by pw.x for the same structure) rather than into a new one.

In memory everything is Angstrom and e/A^3, as in the rest of the package; the conversion to
bohr happens here, once.
"""

from __future__ import annotations

import re
import shutil
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.data import chemical_symbols
from ase.units import Bohr

from deepmd_charge.errors import InputError
from deepmd_charge.io.files import atomic_write, printable

DENSITY_FILE = "charge-density.dat"
SCHEMA_FILE = "data-file-schema.xml"
BACKUP_SUFFIX = ".orig"
COMPONENTS = {1: ["total"], 2: ["total", "magnetization"], 4: ["total", "mx", "my", "mz"]}


@dataclass
class ChargeDensityG:
    """rho(G) of a pw.x run on its G-vectors (Miller indices), as stored in charge-density.dat."""

    gamma_only: bool
    b: np.ndarray  # (3, 3): rows b1, b2, b3 in bohr^-1
    miller: np.ndarray  # (ngm, 3) int
    rho: list = field(default_factory=list)  # per component, (ngm,) complex128 in e/bohr^3
    endian: str = "<"
    source: str = ""

    @property
    def ngm(self) -> int:
        return len(self.miller)

    @property
    def nspin(self) -> int:
        return len(self.rho)

    @property
    def volume_bohr3(self) -> float:
        """Cell volume from the reciprocal vectors: (2 pi)^3 / |det b|."""
        return float((2 * np.pi) ** 3 / abs(np.linalg.det(self.b)))

    def electrons(self) -> float:
        """rho(G=0) * Omega: the electron count of the total density."""
        zero = np.flatnonzero(~self.miller.any(axis=1))
        return float(self.rho[0][zero[0]].real * self.volume_bohr3) if zero.size else 0.0

    def min_grid(self) -> tuple:
        """The smallest FFT grid that holds every G-vector without aliasing."""
        return tuple(int(2 * np.abs(self.miller[:, i]).max() + 1) for i in range(3))

    def to_grid(self, shape) -> list:
        """Each component on the real-space grid `shape` (i, j, k at fractional i/n1, j/n2,
        k/n3), in e/A^3: rho(r) = sum_G rho(G) exp(iG.r), -G filled in for gamma_only files."""
        shape = self._check_grid(shape)
        idx = tuple((self.miller % np.array(shape)).T)
        out = []
        for rho_g in self.rho:
            full = np.zeros(shape, dtype=np.complex128)
            full[idx] = rho_g
            if self.gamma_only:
                minus = tuple(((-self.miller) % np.array(shape)).T)
                full[minus] = np.conj(rho_g)
            out.append(np.fft.ifftn(full).real * np.prod(shape) / Bohr**3)
        return out

    def from_grid(self, grids) -> ChargeDensityG:
        """A copy holding `grids` (e/A^3 arrays on a real-space FFT grid, one per component)
        transformed to this file's G-vectors, in its order: the inverse of `to_grid` for any
        density band-limited to these G-vectors, a low-pass filter for any other."""
        if len(grids) != self.nspin:
            raise ValueError(f"{len(grids)} grids for a file of {self.nspin} components")
        rho = []
        for grid in grids:
            grid = np.asarray(grid, dtype=np.float64)
            shape = self._check_grid(grid.shape)
            coeff = np.fft.fftn(grid * Bohr**3) / np.prod(shape)
            rho.append(coeff[tuple((self.miller % np.array(shape)).T)])
        return replace(self, rho=rho)

    def _check_grid(self, shape) -> tuple:
        shape = tuple(int(n) for n in shape)
        need = self.min_grid()
        if len(shape) != 3 or any(n < m for n, m in zip(shape, need)):
            raise InputError(
                self.source,
                f"an FFT grid of {'x'.join(map(str, shape))} cannot hold its G-vectors (needs at least {'x'.join(map(str, need))})",
            )
        return shape


# ---- Fortran records ----------------------------------------------------------------------------
def _records(raw: bytes, path) -> tuple:
    """Split a sequential unformatted file into its records; returns (records, byte order)."""
    for endian in ("<", ">"):
        if len(raw) >= 4 and np.frombuffer(raw[:4], dtype=endian + "i4")[0] == 12:
            break
    else:
        raise InputError(path, "is not a pw.x charge-density.dat (the first record is not gamma_only, ngm_g, nspin)")
    records, pos = [], 0
    while pos < len(raw):
        if pos + 4 > len(raw):
            raise InputError(path, f"truncated: the file ends inside the length marker of record {len(records) + 1}")
        n = int(np.frombuffer(raw[pos : pos + 4], dtype=endian + "i4")[0])
        if n < 0:
            raise InputError(path, f"record {len(records) + 1} is split into sub-records (over 2 GB): not supported")
        end = pos + 4 + n
        if end + 4 > len(raw) or np.frombuffer(raw[end : end + 4], dtype=endian + "i4")[0] != n:
            raise InputError(
                path, f"truncated or corrupt: record {len(records) + 1} ({n} bytes) does not end where its length says"
            )
        records.append(raw[pos + 4 : end])
        pos = end + 4
    return records, endian


def _record(data: bytes, endian: str) -> bytes:
    marker = np.array([len(data)], dtype=endian + "i4").tobytes()
    return marker + data + marker


def read_charge_density(path) -> ChargeDensityG:
    """Read pw.x's charge-density.dat (see the module docstring for the layout)."""
    path = Path(path)
    if not path.is_file():
        hdf5 = path.with_suffix(".hdf5")
        if hdf5.is_file():
            raise InputError(
                path,
                f"missing, but {hdf5.name} is there: this pw.x was built with HDF5, which is not supported (use a "
                "build without HDF5, e.g. the Debian/Ubuntu package)",
            )
        raise InputError(path, "no such file" if not path.exists() else "is not a file")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise InputError(path, f"cannot be read ({exc.strerror or exc})") from None
    records, e = _records(raw, path)
    if len(records) < 4 or len(records[0]) != 12 or len(records[1]) != 72:
        raise InputError(
            path,
            f"is not a pw.x charge-density.dat ({len(records)} records; expected a 12-byte and a 72-byte record "
            "first, then Miller indices and rho(G))",
        )
    gamma, ngm, nspin = (int(x) for x in np.frombuffer(records[0], dtype=e + "i4"))
    if nspin not in COMPONENTS or ngm <= 0:
        raise InputError(path, f"header says ngm_g = {ngm}, nspin = {nspin}: not a pw.x density")
    if len(records) != 3 + nspin:
        raise InputError(
            path, f"holds {len(records) - 3} density records for nspin = {nspin}: truncated or not a pw.x density"
        )
    if len(records[2]) != 12 * ngm or any(len(r) != 16 * ngm for r in records[3:]):
        raise InputError(path, f"record sizes do not match ngm_g = {ngm} G-vectors")
    b = np.frombuffer(records[1], dtype=e + "f8").reshape(3, 3).copy()
    miller = np.frombuffer(records[2], dtype=e + "i4").reshape(ngm, 3).astype(np.int64)
    rho = [np.frombuffer(r, dtype=e + "c16").astype(np.complex128) for r in records[3:]]
    if not all(np.isfinite(r).all() for r in rho) or not np.isfinite(b).all():
        raise InputError(path, "holds NaN or infinite values")
    return ChargeDensityG(gamma_only=bool(gamma), b=b, miller=miller, rho=rho, endian=e, source=str(path))


def write_charge_density(path, cd: ChargeDensityG) -> None:
    """Write `cd` as pw.x writes charge-density.dat (same records, byte order as read); the
    file appears only when complete."""
    e = cd.endian
    parts = [
        _record(np.array([int(cd.gamma_only), cd.ngm, cd.nspin], dtype=e + "i4").tobytes(), e),
        _record(np.asarray(cd.b, dtype=e + "f8").tobytes(), e),
        _record(np.asarray(cd.miller, dtype=e + "i4").tobytes(), e),
    ]
    for rho in cd.rho:
        if not np.isfinite(rho).all():
            raise InputError(path, "not written: the density holds NaN or infinite values")
        parts.append(_record(np.asarray(rho, dtype=e + "c16").tobytes(), e))
    with atomic_write(path, "wb") as fh:
        for p in parts:
            fh.write(p)


# ---- the save folder ------------------------------------------------------------------------------
@dataclass
class QESave:
    """What a pw.x save folder says about its run (from data-file-schema.xml, <output>)."""

    path: Path
    atoms: Atoms  # Angstrom
    fft_grid: tuple  # the dense (density) FFT grid nr1, nr2, nr3
    nspin: int  # 1, 2 (lsda) or 4 (noncolin)
    nelec: float
    gamma_only: bool

    @property
    def density_file(self) -> Path:
        return self.path / DENSITY_FILE


def _floats(elem, path, what) -> np.ndarray:
    try:
        return np.array(elem.text.split(), dtype=np.float64)
    except (AttributeError, ValueError):
        raise InputError(path, f"malformed {what} in {SCHEMA_FILE}") from None


def read_save(save_dir) -> QESave:
    """The structure, FFT grid, spin setting and electron count of a pw.x save folder."""
    save = Path(save_dir)
    if not save.is_dir():
        raise InputError(
            save,
            "no such pw.x save folder (OUTDIR/PREFIX.save)"
            if not save.exists()
            else "is not a folder; give the pw.x save folder OUTDIR/PREFIX.save",
        )
    xml = save / SCHEMA_FILE
    if not xml.is_file():
        raise InputError(save, f"has no {SCHEMA_FILE}: not a pw.x (6.x/7.x) save folder")
    try:
        root = ET.parse(xml).getroot()
    except (ET.ParseError, OSError) as exc:
        raise InputError(xml, f"cannot be read as XML ({printable(exc, 80)})") from None
    out = root.find("output")
    if out is None:
        raise InputError(xml, "has no <output> section: pw.x did not finish writing this save folder")

    def need(tag):
        elem = out.find(tag)
        if elem is None:
            raise InputError(xml, f"has no <output>/{tag}")
        return elem

    struct = need("atomic_structure")
    cell = np.array([_floats(need(f"atomic_structure/cell/a{i}"), xml, "cell") for i in (1, 2, 3)]) * Bohr
    symbols, positions = [], []
    for atom in struct.iterfind("atomic_positions/atom"):
        name = atom.get("name", "")
        positions.append(_floats(atom, xml, "atom position"))
        symbols.append(_species_element(out, name, xml))
    if not symbols or len(symbols) != int(struct.get("nat", len(symbols))):
        raise InputError(xml, "lists no atoms (or fewer than nat) in <output>/atomic_structure")
    atoms = Atoms(symbols, positions=np.array(positions) * Bohr, cell=cell, pbc=True)
    grid = need("basis_set/fft_grid")
    try:
        fft = tuple(int(grid.get(k)) for k in ("nr1", "nr2", "nr3"))
        nelec = float(need("band_structure/nelec").text)
    except (TypeError, ValueError):
        raise InputError(xml, "malformed <output>/basis_set/fft_grid or band_structure/nelec") from None

    def flag(tag):
        return (out.findtext(tag) or "false").strip().lower() == "true"

    nspin = 4 if flag("magnetization/noncolin") else 2 if flag("magnetization/lsda") else 1
    return QESave(
        path=save, atoms=atoms, fft_grid=fft, nspin=nspin, nelec=nelec, gamma_only=flag("basis_set/gamma_only")
    )


_UPF_ELEMENT = (
    re.compile(r'element\s*=\s*"\s*([A-Za-z]{1,2})\s*"'),
    re.compile(r"^\s*([A-Za-z]{1,2})\s+Element", re.MULTILINE),
)


def _element_of(text: str):
    sym = text[:1].upper() + text[1:2].lower()
    for s in (sym, sym[:1]):
        if s in chemical_symbols[1:]:
            return s
    return None


def _species_element(out, name, xml) -> str:
    """The element of species `name` (Si, Si1, Fe_up, ...): from its pseudopotential, which pw.x
    copies into the save folder (UPF v2 ``element="Si"``, UPF v1 ``Si  Element``), else from the
    leading letters of the pseudopotential's file name or of the label."""
    for sp in out.iterfind("atomic_species/species"):
        if sp.get("name") != name:
            continue
        pseudo = (sp.findtext("pseudo_file") or "").strip()
        upf = xml.parent / pseudo
        if pseudo and upf.is_file():
            try:
                head = upf.read_text(errors="replace")[:20000]
            except OSError:
                head = ""
            for pattern in _UPF_ELEMENT:
                m = pattern.search(head)
                if m and _element_of(m.group(1)):
                    return _element_of(m.group(1))
        for cand in (re.split(r"[._-]", pseudo)[0], name):
            letters = re.match(r"[A-Za-z]*", cand).group(0)
            if letters and _element_of(letters):
                return _element_of(letters)
    raise InputError(xml, f"cannot tell the element of species '{printable(name)}'")


def read_save_density(save: QESave) -> ChargeDensityG:
    """charge-density.dat of `save`, checked against its XML (spin, gamma tricks, cell, grid)."""
    cd = read_charge_density(save.density_file)
    path = save.density_file
    if cd.nspin != save.nspin:
        raise InputError(path, f"holds {cd.nspin} density components but {SCHEMA_FILE} says nspin = {save.nspin}")
    if cd.gamma_only != save.gamma_only:
        raise InputError(path, f"gamma_only = {cd.gamma_only} but {SCHEMA_FILE} says {save.gamma_only}")
    b_xml = 2 * np.pi * np.linalg.inv(save.atoms.cell[:] / Bohr).T
    if not np.allclose(cd.b, b_xml, rtol=0, atol=1e-6 * np.abs(b_xml).max()):
        raise InputError(path, f"was written for another cell than the one in {SCHEMA_FILE}")
    if any(n < m for n, m in zip(save.fft_grid, cd.min_grid())):
        raise InputError(path, f"has G-vectors beyond the FFT grid {save.fft_grid} of {SCHEMA_FILE}")
    return cd


def backup_and_replace(save: QESave, cd: ChargeDensityG) -> Path:
    """Keep the first original as charge-density.dat.orig (never overwritten by a later call),
    then replace charge-density.dat atomically. Returns the backup's path."""
    path = save.density_file
    backup = path.with_name(path.name + BACKUP_SUFFIX)
    if not backup.exists():
        try:
            tmp = backup.with_name(backup.name + ".tmp")
            shutil.copy2(path, tmp)
            tmp.replace(backup)
        except OSError as exc:
            raise InputError(backup, f"cannot write the backup ({exc.strerror or exc})") from None
    write_charge_density(path, cd)
    return backup
