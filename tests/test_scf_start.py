"""What a predicted CHGCAR takes from a VASP reference (--like), and structure matching."""

import numpy as np
import pytest
from ase.build import bulk

from deepmd_charge.io.chgcar import VolumetricData
from deepmd_charge.scf_start import species_mismatch, structure_mismatch, vasp_reference

AUG = "augmentation occupancies   1   2\n  0.1000000E+00  0.2000000E+00\n"


def _ref(atoms, trailers):
    return VolumetricData(atoms=atoms, blocks=[np.full((4, 4, 4), 0.5)], trailers=trailers, source="CHGCAR_ref")


def test_same_atoms_other_positions_take_augmentation_and_count():
    ref_atoms = bulk("Si", "diamond", a=5.43, cubic=True)
    atoms = ref_atoms.copy()
    atoms.rattle(0.1, seed=1)  # positions may differ: VASP mixes the occupancies with the density
    ref = vasp_reference(_ref(ref_atoms, [AUG * 8]), atoms, "CHGCAR_ref", 1)
    assert ref.trailers == [AUG * 8] and ref.note is None
    assert ref.electrons == pytest.approx(0.5 * ref_atoms.get_volume())
    two = vasp_reference(_ref(ref_atoms, [AUG * 8, "moments"]), atoms, "CHGCAR_ref", 2)
    assert two.trailers == [AUG * 8, "moments"]
    assert vasp_reference(_ref(ref_atoms, [AUG * 8]), atoms, "CHGCAR_ref", 2).trailers == [AUG * 8, ""]


@pytest.mark.parametrize(
    "change, why",
    [
        (lambda a: a.pop(), "8 atoms, the structure 7"),
        (lambda a: a.set_chemical_symbols(["Si"] * 3 + ["Ge"] + ["Si"] * 4), "atom 4 is Si, in the structure Ge"),
    ],
)
def test_other_atoms_take_nothing_and_say_so(change, why):
    ref_atoms = bulk("Si", "diamond", a=5.43, cubic=True)
    atoms = ref_atoms.copy()
    change(atoms)
    ref = vasp_reference(_ref(ref_atoms, [AUG * 8]), atoms, "CHGCAR_ref", 1)
    assert ref.trailers == [""] and ref.electrons is None
    assert (
        ref.note
        == f"note: CHGCAR_ref holds other atoms ({why}): its augmentation block and electron count are not used"
    )
    assert species_mismatch(ref_atoms, atoms) == why
    # without an augmentation block there is nothing to warn about: it only lends its grid
    assert vasp_reference(_ref(ref_atoms, [""]), atoms, "CHGCAR_ref", 1).note is None


def test_structure_mismatch_cell_and_positions():
    a = bulk("Si", "diamond", a=5.43, cubic=True)
    assert structure_mismatch(a, a.copy()) is None
    b = a.copy()
    b.positions[0] += a.cell[0]  # a lattice vector away: the same structure
    assert structure_mismatch(a, b) is None
    b.positions[3] += [0.01, 0, 0]
    assert structure_mismatch(a, b) == "atom 4 (Si) sits 0.01 A from where the structure has it"
    c = a.copy()
    c.set_cell(a.cell[:] * 1.01, scale_atoms=True)
    assert structure_mismatch(a, c).startswith("its cell differs from the structure's by up to 0.054")
