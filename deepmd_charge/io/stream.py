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


def write_chgcar_slabs(path, atoms, shape, slabs, trailer: str = "", title: str = "") -> float:
    """Write a one-block CHGCAR from `slabs` = iterable of (k0, k1, rho[:, :, k0:k1]) in order.

    Returns the sum of rho over all points (for the electron count). The file appears only when
    complete; a name ending in .gz, .bz2 or .xz is compressed on the fly.
    """
    volume = abs(np.linalg.det(atoms.cell[:]))
    total = 0.0
    next_k = 0
    name = str(path)
    opener = next((op for ext, op in _COMPRESSORS.items() if name.endswith(ext)), None)
    compress = opener is not None
    with atomic_write(path, "wb" if compress else "w") as raw:
        fh = io.TextIOWrapper(opener(raw), encoding="ascii") if compress else raw
        fh.write(format_poscar(atoms, title) + "\n")
        fh.write(" {:4d} {:4d} {:4d}\n".format(*shape))
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
        fh.write(trailer)
        if compress:
            fh.close()  # flushes the compressed stream into `raw`; atomic_write then renames it
    return total
