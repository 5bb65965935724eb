"""A predicted density as the starting point of a DFT run (docs/scf-start.md).

- Quantum ESPRESSO: `predict_into_qe_save` evaluates a model on pw.x's own FFT grid, transforms
  it to pw.x's G-vectors and replaces ``charge-density.dat`` of a save folder of the same
  structure, so that ``startingpot = 'file'`` starts from the prediction.
- VASP: `vasp_reference` decides what a predicted CHGCAR takes from a reference CHGCAR (``--like``):
  the PAW augmentation occupancies and the electron count, only when the atoms match atom for atom.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
from ase import Atoms

from deepmd_charge.errors import InputError
from deepmd_charge.grid import electrons as grid_electrons  # `electrons` is the target count below

# Atoms of a save folder / reference and of the structure given must agree this well (Angstrom)
CELL_TOL = 1e-3
POSITION_TOL = 1e-3

# What VASP does with a CHGCAR without augmentation occupancies (VASP 5.4.4 source, READCH and main.F):
# PAW POTCARs + ICHARG=1: "RD_RHO_PAW: ... data corrupt", "WARNING: PAW occupancies are missing on
# CHGCAR", the density read is dropped and the run starts from overlapping atoms (as ICHARG=2);
# ICHARG=11 stops ("charge density could not be read from file CHGCAR for ICHARG>10").
NO_AUGMENTATION_NOTE = (
    "note: {out} has no PAW augmentation occupancies: VASP with PAW POTCARs discards it "
    "(ICHARG=1 falls back to overlapping atoms, ICHARG=11 stops); add --like CHGCAR of the same atoms "
    "(docs/scf-start.md)"
)


def species_mismatch(ref: Atoms, atoms: Atoms) -> str | None:
    """Why `atoms` is not atom for atom the same species list as `ref`, or None."""
    a, b = ref.get_chemical_symbols(), atoms.get_chemical_symbols()
    if len(a) != len(b):
        return f"{len(a)} atoms, the structure {len(b)}"
    if a != b:
        i = next(k for k, (x, y) in enumerate(zip(a, b)) if x != y)
        return f"atom {i + 1} is {a[i]}, in the structure {b[i]}"
    return None


def structure_mismatch(ref: Atoms, atoms: Atoms) -> str | None:
    """Why `atoms` is not the structure `ref` (species, order, cell, positions), or None."""
    why = species_mismatch(ref, atoms)
    if why:
        return why
    dcell = np.abs(ref.cell[:] - atoms.cell[:]).max()
    if dcell > CELL_TOL:
        return f"its cell differs from the structure's by up to {dcell:.2g} A"
    d = (atoms.positions - ref.positions) @ np.linalg.inv(ref.cell[:])
    d -= np.round(d)
    dist = np.linalg.norm(d @ ref.cell[:], axis=1)
    if dist.max() > POSITION_TOL:
        i = int(dist.argmax())
        return f"atom {i + 1} ({ref[i].symbol}) sits {dist[i]:.3g} A from where the structure has it"
    return None


# ---- Quantum ESPRESSO ---------------------------------------------------------------------------
@dataclass
class QEStart:
    """What `predict_into_qe_save` did."""

    density_file: str
    backup: str
    fft_grid: tuple
    ngm: int
    electrons_predicted: float
    electrons: float
    magnetization: float | None
    seconds: float


def predict_into_qe_save(
    models, atoms: Atoms, save_dir, structure_name="structure", electrons=None, progress=False
) -> QEStart:
    """Replace the density of the pw.x save folder `save_dir` (OUTDIR/PREFIX.save) by the models'.

    `models`: one DeepCharge (total density), or two (total, magnetisation) for an nspin=2 run.
    `atoms` must be the save folder's structure. The density is evaluated on pw.x's FFT grid,
    transformed to its G-vectors (same order), its total scaled to `electrons` (default: the
    run's own count, nelec), and written over charge-density.dat after keeping the original as
    charge-density.dat.orig (the first original only). pw.x then starts from it with
    ``startingpot = 'file'`` (same outdir and prefix).
    """
    from deepmd_charge.io.qe import backup_and_replace, read_save, read_save_density

    models = list(models)
    save = read_save(save_dir)
    why = structure_mismatch(save.atoms, atoms)
    if why:
        raise InputError(save.path, f"is a pw.x run of another structure than {structure_name}: {why}")
    if save.nspin == 4:
        raise InputError(save.path, "is a non-collinear run (noncolin): only nspin = 1 or 2 densities can be predicted")
    if save.nspin == 2 and len(models) < 2:
        raise InputError(save.path, "is a spin-polarised run (nspin = 2): give a magnetisation model too")
    if save.nspin == 1 and len(models) > 1:
        raise InputError(save.path, "is not spin-polarised (nspin = 1): drop the magnetisation model")
    if electrons is not None and electrons <= 0:
        raise InputError("electrons", f"needs a positive electron count, got {electrons}")
    cd = read_save_density(save)
    start = time.perf_counter()
    grids = [m.predict(save.atoms, grid=save.fft_grid, progress=progress) for m in models]
    predicted = grid_electrons(grids[0], save.atoms.cell[:])
    target = float(save.nelec if electrons is None else electrons)
    if predicted <= 0:
        raise InputError(
            structure_name,
            f"the predicted density integrates to {predicted:.4g} electrons: cannot be scaled to {target}",
        )
    grids[0] = grids[0] * (target / predicted)
    new = cd.from_grid(grids)
    seconds = time.perf_counter() - start
    backup = backup_and_replace(save, new)
    magnetization = grid_electrons(grids[1], save.atoms.cell[:]) if len(grids) > 1 else None
    return QEStart(
        str(save.density_file), str(backup), save.fft_grid, cd.ngm, predicted, new.electrons(), magnetization, seconds
    )


# ---- VASP ---------------------------------------------------------------------------------------
@dataclass
class VaspReference:
    """What a predicted CHGCAR takes from a reference CHGCAR (--like)."""

    trailers: list  # augmentation text per block ("" = none)
    electrons: float | None  # the reference's electron count when the atoms match, else None
    note: str | None  # a one-line note for the user, or None


def vasp_reference(like, atoms: Atoms, like_name, nblocks: int) -> VaspReference:
    """The augmentation occupancies and electron count of the reference `like` (VolumetricData)
    for a prediction of `atoms` with `nblocks` blocks: taken only when the reference holds the
    same atoms in the same order (positions may differ: VASP mixes the occupancies with the
    density, so occupancies of a nearby geometry are a start it refines)."""
    why = species_mismatch(like.atoms, atoms)
    if why:
        note = None
        if any(t.strip() for t in like.trailers):
            note = (
                f"note: {like_name} holds other atoms ({why}): its augmentation block and electron count are not used"
            )
        return VaspReference([""] * nblocks, None, note)
    trailers = (list(like.trailers) + [""] * nblocks)[:nblocks]
    return VaspReference(trailers, like.electrons(), None)
