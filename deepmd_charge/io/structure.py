"""Structures and volumetric files from whatever a user has at hand."""

from __future__ import annotations

import re
from pathlib import Path

from ase import Atoms

from deepmd_charge.errors import InputError
from deepmd_charge.io.chgcar import VolumetricData, read_chgcar, read_poscar
from deepmd_charge.io.files import printable

_COMPRESSED = ("", ".gz", ".bz2", ".xz")
# VASP volumetric outputs by name: CHGCAR, CHG, AECCAR0-2, PARCHG(.0001.ALLK), LOCPOT, ELFCAR,
# also with a prefix or suffix (Si.CHGCAR, CHGCAR_pred) but not inside a word (my_chgnet.xyz)
_VASP_GRID = re.compile(r"(^|[^A-Z])(CHGCAR|CHG|AECCAR[0-2]?|PARCHG|LOCPOT|ELFCAR)([^A-Z]|$)")
_ASE_SUFFIXES = {".xyz", ".extxyz", ".cif", ".traj", ".json", ".pdb", ".xsf", ".cfg", ".lmp", ".data"}
_VASP_POSCAR = re.compile(r"(^|[^A-Z])(POSCAR|CONTCAR)([^A-Z]|$)|\.VASP$")


def is_cube(path) -> bool:
    name = Path(path).name.lower()
    return any(name.endswith(ext + z) for ext in (".cube", ".cub") for z in _COMPRESSED)


def read_volumetric(path, elements=None) -> VolumetricData:
    """A CHGCAR-like file or a cube file (by extension), densities in e/A^3."""
    if is_cube(path):
        from deepmd_charge.io.cube import read_cube

        return read_cube(path)
    return read_chgcar(path, elements=elements)


def read_structure(path, elements=None) -> Atoms:
    """Atoms from any file ASE reads (POSCAR, CIF, extxyz, ...) or from a CHGCAR/cube header.

    `elements` names the species of a VASP 4 POSCAR/CHGCAR (or replaces those of a VASP 5 one).
    """
    path = Path(path)
    if not path.exists():
        raise InputError(path, "no such file")
    if path.is_dir():
        raise InputError(path, "is a directory, expected a structure file")
    if is_cube(path):
        return read_volumetric(path).atoms
    name = path.name.upper()
    if _VASP_GRID.search(name) and path.suffix.lower() not in _ASE_SUFFIXES:
        return read_chgcar(path, elements=elements).atoms
    if elements and _VASP_POSCAR.search(name):
        return read_poscar(path, elements=elements)
    import ase.io

    try:
        atoms = ase.io.read(str(path))
    except Exception as exc:  # ASE raises many types for unreadable files
        raise InputError(
            path, f"ASE cannot read a structure from it ({type(exc).__name__}: {printable(exc, 200)})"
        ) from None
    if isinstance(atoms, list):
        atoms = atoms[-1]
    if len(atoms) == 0:
        raise InputError(path, "holds no atoms")
    return atoms
