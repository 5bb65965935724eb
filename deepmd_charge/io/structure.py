"""Structures and volumetric files from whatever a user has at hand."""

from __future__ import annotations

from pathlib import Path

from ase import Atoms

from deepmd_charge.errors import InputError
from deepmd_charge.io.chgcar import VolumetricData, read_chgcar


def is_cube(path) -> bool:
    name = Path(path).name.lower()
    return any(name.endswith(ext) for ext in (".cube", ".cub", ".cube.gz", ".cub.gz"))


def read_volumetric(path, elements=None) -> VolumetricData:
    """A CHGCAR-like file or a cube file (by extension), densities in e/A^3."""
    if is_cube(path):
        from deepmd_charge.io.cube import read_cube

        return read_cube(path)
    return read_chgcar(path, elements=elements)


def read_structure(path, elements=None) -> Atoms:
    """Atoms from any file ASE reads (POSCAR, CIF, extxyz, ...) or from a CHGCAR/cube header."""
    path = Path(path)
    if not path.exists():
        raise InputError(path, "no such file")
    if path.is_dir():
        raise InputError(path, "is a directory, expected a structure file")
    if is_cube(path):
        return read_volumetric(path).atoms
    name = path.name.upper()
    if any(key in name for key in ("CHG", "PARCHG", "AECCAR", "LOCPOT", "ELFCAR")):
        return read_chgcar(path, elements=elements).atoms
    import ase.io

    try:
        atoms = ase.io.read(str(path))
    except Exception as exc:  # ASE raises many types for unreadable files
        raise InputError(path, f"ASE cannot read a structure from it ({type(exc).__name__}: {exc})") from None
    if isinstance(atoms, list):
        atoms = atoms[-1]
    return atoms
