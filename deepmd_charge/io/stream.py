"""Writing a predicted grid to a CHGCAR slab by slab, without holding the whole grid."""

from __future__ import annotations

import bz2
import gzip
import io
import lzma

import numpy as np

from deepmd_charge.io.chgcar import format_poscar, format_values
from deepmd_charge.io.files import atomic_write


_COMPRESSORS = {
    ".gz": lambda raw: gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=6),
    ".bz2": lambda raw: bz2.BZ2File(raw, "wb"),
    ".xz": lambda raw: lzma.LZMAFile(raw, "wb"),
}


def write_chgcar_slabs(path, atoms, shape, blocks, title: str = "") -> list:
    """Write a CHGCAR whose blocks come slab by slab, never holding a whole grid.

    `blocks` is a list of (slabs, trailer): slabs an iterable of (k0, k1, rho[:, :, k0:k1]) in
    order (e/A^3), trailer the text after the block (augmentation occupancies, or ""). One block
    is a plain CHGCAR, two a spin-polarised one (total, magnetisation). Returns the sum of each
    block over all points. The file appears only when complete; a name ending in .gz, .bz2 or
    .xz is compressed on the fly.
    """
    volume = abs(np.linalg.det(atoms.cell[:]))
    name = str(path)
    opener = next((op for ext, op in _COMPRESSORS.items() if name.endswith(ext)), None)
    sums = []
    with atomic_write(path, "wb" if opener else "w") as raw:
        fh = io.TextIOWrapper(opener(raw), encoding="ascii") if opener else raw
        fh.write(format_poscar(atoms, title) + "\n")
        for slabs, trailer in blocks:
            fh.write(" {:4d} {:4d} {:4d}\n".format(*shape))
            sums.append(_write_block(fh, shape, volume, slabs))
            fh.write(trailer)
        if opener:
            fh.close()  # flushes the compressed stream into `raw`; atomic_write then renames it
    return sums


def _write_block(fh, shape, volume, slabs) -> float:
    total = 0.0
    next_k = 0
    carry = np.zeros(0)
    for k0, k1, slab in slabs:
        if k0 != next_k or slab.shape != (shape[0], shape[1], k1 - k0):
            raise ValueError(f"slab {k0}:{k1} out of order or of wrong shape {slab.shape}")
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
