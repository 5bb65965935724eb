"""Every flavour of real file reads right and writes back unchanged.

The corpus (../shared/data/chgcar-corpus) covers VASP 5 CHGCAR/AECCAR files, spin and
non-collinear; the cases it lacks (VASP 4 headers, CHG and PARCHG layouts, bz2/xz, Cartesian
positions, Selective dynamics, three scale factors, odd cube headers) are written here by hand.
"""

import bz2
import gzip
import lzma

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk
from ase.units import Bohr

from conftest import CORPUS, EXAMPLE_DFT, needs_shared
from deepmd_charge.errors import InputError
from deepmd_charge.io.chgcar import read_chgcar, read_poscar, write_chgcar, write_volumetric
from deepmd_charge.io.cube import read_cube, write_cube
from deepmd_charge.io.structure import is_cube, read_structure, read_volumetric

SI = bulk("Si", "diamond", a=5.43, cubic=True)
SHAPE = (4, 5, 6)


def _rho(shape=SHAPE, seed=0):
    return np.random.default_rng(seed).random(shape) + 0.1


def _values(block_times_volume, per_line=5, fmt="{:18.11E}"):
    """A block as a DFT code writes it: Fortran order, `per_line` values a line."""
    flat = np.asarray(block_times_volume).ravel(order="F")
    rows = [" ".join(fmt.format(x) for x in flat[i : i + per_line]) for i in range(0, flat.size, per_line)]
    return "".join(" " + r + "\n" for r in rows)


def _header(species_line="Si", counts="8", mode="Direct", positions=None, scale="1.0", cell=None, selective=False):
    cell = SI.cell[:] if cell is None else cell
    positions = SI.get_scaled_positions() if positions is None else positions
    out = ["test file", f"  {scale}"]
    out += ["  " + " ".join(f"{x:.12f}" for x in vec) for vec in cell]
    if species_line is not None:
        out.append("  " + species_line)
    out.append("  " + counts)
    if selective:
        out.append("Selective dynamics")
    out.append(mode)
    out += ["  " + " ".join(f"{x:.12f}" for x in p) + (" T T F" if selective else "") for p in positions]
    return "\n".join(out) + "\n"


def _aug(natoms, per_atom=7, seed=1):
    rng = np.random.default_rng(seed)
    text = ""
    for a in range(1, natoms + 1):
        text += f"augmentation occupancies {a:3d} {per_atom:3d}\n" + _values(rng.normal(size=per_atom), fmt="{:14.7E}")
    return text


def _chgcar(blocks, header=None, per_line=5, trailers=None, volume=None, fmt="{:18.11E}"):
    volume = SI.get_volume() if volume is None else volume
    header = _header() if header is None else header
    trailers = trailers or [""] * len(blocks)
    text = header + " \n"
    for block, trailer in zip(blocks, trailers):
        text += " {:4d} {:4d} {:4d}\n".format(*block.shape) + _values(block * volume, per_line, fmt) + trailer
    return text


def assert_round_trip(vol, back):
    """`back` (written and read again) holds what `vol` held: structure, blocks to 1e-10, trailers."""
    assert back.trailers == vol.trailers
    assert back.atoms.get_chemical_symbols() == vol.atoms.get_chemical_symbols()
    np.testing.assert_allclose(back.atoms.cell[:], vol.atoms.cell[:], atol=1e-12)
    np.testing.assert_allclose(back.atoms.get_scaled_positions(), vol.atoms.get_scaled_positions(), atol=1e-12)
    assert len(back.blocks) == len(vol.blocks)
    for a, b in zip(vol.blocks, back.blocks):
        np.testing.assert_allclose(b, a, rtol=1e-10, atol=0)
    assert back.electrons() == pytest.approx(vol.electrons(), rel=1e-10)


# ---- VASP layouts ------------------------------------------------------------------------------
def test_chgcar_spin_with_augmentation_and_moments_round_trips(tmp_path):
    total, mag = _rho(), _rho(seed=1) - 0.6
    moments = _values(np.full(8, 0.5), fmt="{:19.12E}")  # VASP: one moment per atom before the next block
    trailers = [_aug(8) + moments, _aug(8, seed=2)]
    path = tmp_path / "CHGCAR"
    path.write_text(_chgcar([total, mag], trailers=trailers))
    vol = read_chgcar(path)
    assert vol.block_names == ["total", "magnetization"]
    np.testing.assert_allclose(vol.blocks[0], total, rtol=1e-10)
    np.testing.assert_allclose(vol.blocks[1], mag, rtol=1e-10)
    assert vol.trailers == trailers
    write_volumetric(tmp_path / "back", vol)
    assert_round_trip(vol, read_chgcar(tmp_path / "back"))


def test_chg_layout_ten_values_a_line_no_augmentation(tmp_path):
    """VASP's CHG: G11.5 numbers, ten a line (fixed notation for mid-range values), no augmentation."""

    def g11(x):
        return f"{x:11.5E}" if not 0.1 <= abs(x) < 1e5 else f"{x:11.5G}    "

    total = _rho() * 20
    path = tmp_path / "CHG"
    flat = (total * SI.get_volume()).ravel(order="F")
    body = "".join(" " + " ".join(g11(x) for x in flat[i : i + 10]) + "\n" for i in range(0, flat.size, 10))
    path.write_text(_header() + "\n" + " {:4d} {:4d} {:4d}\n".format(*SHAPE) + body)
    vol = read_chgcar(path)
    np.testing.assert_allclose(vol.total, total, rtol=1e-4)
    assert vol.trailers == [""]


@pytest.mark.parametrize("moments", [False, True])
def test_chg_spin_with_or_without_a_moments_line(tmp_path, moments):
    total, mag = _rho(), _rho(seed=3) - 0.5
    trailer = ("".join(f" {0.1:12.5E}" for _ in range(8)) + "\n") if moments else ""
    path = tmp_path / "CHG"
    path.write_text(_chgcar([total, mag], per_line=10, trailers=[trailer, ""], fmt="{:12.5E}"))
    vol = read_chgcar(path)
    assert len(vol.blocks) == 2
    np.testing.assert_allclose(vol.blocks[1], mag, rtol=1e-4, atol=1e-6)


def test_parchg_single_block(tmp_path):
    rho = _rho((6, 6, 6)) * 1e-3
    path = tmp_path / "PARCHG.0012.ALLK"
    path.write_text(_chgcar([rho]))
    assert read_structure(path).get_chemical_symbols() == ["Si"] * 8  # named like a grid file
    vol = read_volumetric(path)
    np.testing.assert_allclose(vol.total, rho, rtol=1e-10)


def test_non_collinear_four_blocks(tmp_path):
    blocks = [_rho(seed=s) for s in range(4)]
    path = tmp_path / "CHGCAR"
    path.write_text(_chgcar(blocks, trailers=[_aug(8, seed=s) for s in range(4)]))
    vol = read_chgcar(path)
    assert vol.block_names == ["total", "mx", "my", "mz"]
    np.testing.assert_allclose(vol.block("my"), blocks[2], rtol=1e-10)
    write_volumetric(tmp_path / "back", vol)
    assert_round_trip(vol, read_chgcar(tmp_path / "back"))


# ---- headers -----------------------------------------------------------------------------------
@pytest.mark.parametrize("beside", ["POSCAR", "CONTCAR"])
def test_vasp4_header_takes_species_from_a_poscar_beside(tmp_path, beside):
    rho = _rho()
    (tmp_path / "CHGCAR").write_text(_chgcar([rho], header=_header(species_line=None)))
    (tmp_path / beside).write_text(_header(species_line="Si"))
    vol = read_chgcar(tmp_path / "CHGCAR")
    assert vol.atoms.get_chemical_symbols() == ["Si"] * 8
    np.testing.assert_allclose(vol.total, rho, rtol=1e-10)


def test_vasp4_header_two_species_with_elements(tmp_path):
    atoms = Atoms("Na4Cl4", scaled_positions=SI.get_scaled_positions(), cell=SI.cell, pbc=True)
    path = tmp_path / "CHGCAR"
    path.write_text(_chgcar([_rho()], header=_header(species_line=None, counts="4 4")))
    vol = read_chgcar(path, elements=["Na", "Cl"])
    assert vol.atoms.get_chemical_symbols() == atoms.get_chemical_symbols()
    # what was a VASP 4 file is written back as VASP 5, species line included
    write_volumetric(tmp_path / "back", vol)
    assert read_chgcar(tmp_path / "back").atoms.get_chemical_symbols() == atoms.get_chemical_symbols()


def test_vasp6_potcar_labels_in_the_species_line(tmp_path):
    path = tmp_path / "CHGCAR"
    path.write_text(_chgcar([_rho()], header=_header(species_line="Si_GW/4f2b7c1a")))
    assert set(read_chgcar(path).atoms.get_chemical_symbols()) == {"Si"}


def test_cartesian_positions_scale_and_selective_dynamics(tmp_path):
    """Cartesian positions are scaled with the cell; Selective dynamics flags are skipped."""
    half = SI.cell[:] / 2
    cart = SI.get_scaled_positions() @ half  # in units of the (unscaled) header cell
    (tmp_path / "cart").write_text(
        _chgcar([_rho()], header=_header(scale="2.0", cell=half, mode="Cartesian", positions=cart, selective=True))
    )
    (tmp_path / "direct").write_text(_chgcar([_rho()]))
    a, b = read_chgcar(tmp_path / "cart"), read_chgcar(tmp_path / "direct")
    np.testing.assert_allclose(a.atoms.cell[:], b.atoms.cell[:], atol=1e-9)
    np.testing.assert_allclose(a.atoms.positions, b.atoms.positions, atol=1e-9)
    np.testing.assert_allclose(a.total, b.total, rtol=1e-9)


def test_negative_scale_is_the_volume_also_for_cartesian_positions(tmp_path):
    half = SI.cell[:] / 2
    cart = SI.get_scaled_positions() @ half
    path = tmp_path / "CHGCAR"
    path.write_text(
        _chgcar([_rho()], header=_header(scale=f"-{SI.get_volume():.10f}", cell=half, mode="cartesian", positions=cart))
    )
    vol = read_chgcar(path)
    assert vol.atoms.get_volume() == pytest.approx(SI.get_volume())
    np.testing.assert_allclose(vol.atoms.positions, SI.positions, atol=1e-8)
    assert vol.electrons() == pytest.approx(_rho().mean() * SI.get_volume())


def test_three_scale_factors_scale_x_y_z(tmp_path):
    cell = np.array([[2.0, 0.0, 0.0], [1.0, 2.0, 0.0], [0.0, 1.0, 2.0]])
    path = tmp_path / "CHGCAR"
    path.write_text(_chgcar([_rho()], header=_header(scale="1.5 2.0 3.0", cell=cell)))
    vol = read_chgcar(path)
    np.testing.assert_allclose(vol.atoms.cell[:], cell * [1.5, 2.0, 3.0])
    np.testing.assert_allclose(vol.atoms.get_scaled_positions(), SI.get_scaled_positions(), atol=1e-12)


@pytest.mark.parametrize(
    "cell",
    [
        [[3.0, 0.0, 0.0], [0.0, 4.0, 0.0], [0.0, 0.0, 5.0]],
        [[4.0, 0.0, 0.0], [1.3, 3.5, 0.0], [0.7, -0.9, 5.2]],  # triclinic
        [[0.0, 2.7, 2.7], [2.7, 0.0, 2.7], [2.7, 2.7, 0.0]],  # fcc primitive
        [[3.0, 0.0, 0.0], [0.0, 0.0, 4.0], [0.0, 5.0, 0.0]],  # left-handed
    ],
)
def test_any_cell_shape_round_trips(tmp_path, cell):
    atoms = Atoms("SiO2", scaled_positions=[[0, 0, 0], [0.3, 0.2, 0.1], [0.9, 0.6, 0.5]], cell=cell, pbc=True)
    rho = _rho((3, 4, 5))
    write_chgcar(tmp_path / "CHGCAR", atoms, rho)
    vol = read_chgcar(tmp_path / "CHGCAR")
    np.testing.assert_allclose(vol.atoms.cell[:], cell, atol=1e-12)
    np.testing.assert_allclose(vol.atoms.positions, atoms.positions, atol=1e-12)
    np.testing.assert_allclose(vol.total, rho, rtol=1e-10)
    assert vol.electrons() == pytest.approx(rho.mean() * atoms.get_volume(), rel=1e-10)


# ---- number and line layouts -------------------------------------------------------------------
def test_uneven_lines_crlf_and_three_digit_fortran_exponents(tmp_path):
    """Other writers' layouts: lines of any length, Windows line ends, 0.1-100 for 0.1E-100."""
    rho = _rho()
    rho[1, 2, 3] = 1e-100 / SI.get_volume()
    flat = [f"{x:.11E}" for x in (rho * SI.get_volume()).ravel(order="F")]
    flat = [t.replace("E-100", "-100") for t in flat]
    lines, i, width = [], 0, 1
    while i < len(flat):
        lines.append(" ".join(flat[i : i + width]))
        i, width = i + width, width % 7 + 1
    text = _header() + "\n" + " {:4d} {:4d} {:4d}\n".format(*SHAPE) + "\n".join(lines) + "\n"
    (tmp_path / "CHGCAR").write_bytes(text.replace("\n", "\r\n").encode())
    vol = read_chgcar(tmp_path / "CHGCAR")
    np.testing.assert_allclose(vol.total, rho, rtol=1e-10)


def test_a_file_without_final_newline_still_reads(tmp_path):
    rho = _rho()
    (tmp_path / "CHGCAR").write_text(_chgcar([rho]).rstrip("\n"))
    np.testing.assert_allclose(read_chgcar(tmp_path / "CHGCAR").total, rho, rtol=1e-10)


@pytest.mark.parametrize("suffix, opener", [(".gz", gzip.open), (".bz2", bz2.open), (".xz", lzma.open)])
def test_compression_is_read_by_content_and_written_by_name(tmp_path, suffix, opener):
    rho = _rho()
    text = _chgcar([rho], trailers=[_aug(8)])
    with opener(tmp_path / "CHGCAR_packed", "wt") as fh:  # no telling suffix: found by content
        fh.write(text)
    vol = read_chgcar(tmp_path / "CHGCAR_packed")
    np.testing.assert_allclose(vol.total, rho, rtol=1e-10)
    write_volumetric(tmp_path / f"out{suffix}", vol)
    with opener(tmp_path / f"out{suffix}", "rt") as fh:  # really compressed that way
        assert fh.readline().strip() == "test file"
    assert_round_trip(vol, read_chgcar(tmp_path / f"out{suffix}"))


def test_write_pads_missing_trailers_and_keeps_title(tmp_path):
    """One trailer for two blocks (as `predict --like` passes) must not drop the second block."""
    total, mag = _rho(), _rho(seed=5)
    write_chgcar(tmp_path / "CHGCAR", SI, [total, mag], trailers=[_aug(8).rstrip("\n")], title="Si8 – test")
    vol = read_chgcar(tmp_path / "CHGCAR")
    assert len(vol.blocks) == 2 and vol.trailers == [_aug(8), ""]
    assert vol.title == "Si8 – test"
    np.testing.assert_allclose(vol.blocks[1], mag, rtol=1e-10)


def test_write_refuses_non_finite_values_and_leaves_nothing(tmp_path):
    rho = _rho()
    rho[0, 0, 0] = np.nan
    with pytest.raises(InputError, match="NaN or infinite"):
        write_chgcar(tmp_path / "CHGCAR", SI, rho)
    with pytest.raises(InputError, match="NaN or infinite"):
        write_cube(tmp_path / "rho.cube", SI, rho)
    assert list(tmp_path.iterdir()) == []


# ---- corpus: every real file writes back unchanged ---------------------------------------------
CORPUS_VASP = [
    "atomate__Al_PBE_CHGCAR.gz",
    "atomate__LiH_PBEsol_CHGCAR.gz",
    "atomate__Si_static_AECCAR2.gz",
    "atomate__YPO4_AECCAR2.gz",
    "matterviz__Fe3O4_CHGCAR_stride2.gz",
    "pawpyseed__Ga4_CHGCAR.gz",
    "pyiron_atomistics__Fe1_CHGCAR_no_spin",
    "sisl-files__graphene_CHGCAR.gz",
    "sisl-files__NO_polarized_CHGCAR.gz",
    "vaspchg_rs__Li_CHGCAR.nospin.gz",
    "vaspchg_rs__Li_CHGCAR.spin.gz",
]  # the others are round-tripped in test_chgcar.py


@needs_shared
@pytest.mark.parametrize("name", CORPUS_VASP)
def test_corpus_round_trip(tmp_path, name):
    vol = read_chgcar(CORPUS / name)
    write_volumetric(tmp_path / "CHGCAR", vol)
    assert_round_trip(vol, read_chgcar(tmp_path / "CHGCAR"))


# ---- cube --------------------------------------------------------------------------------------
def _cube_text(atoms, rho, origin_bohr=(0.0, 0.0, 0.0), nat_sign=1, orbitals=None, nval=None):
    shape = rho.shape
    head = f"{nat_sign * len(atoms):5d}" + "".join(f"{x:12.6f}" for x in origin_bohr) + (f"{nval:5d}" if nval else "")
    out = ["cube", "test", head]
    for i in range(3):
        out.append(f"{shape[i]:5d}" + "".join(f"{x:12.6f}" for x in atoms.cell[i] / shape[i] / Bohr))
    for z, p in zip(atoms.numbers, atoms.positions / Bohr + origin_bohr):
        out.append(f"{z:5d}{0.0:12.6f}" + "".join(f"{x:12.6f}" for x in p))
    if orbitals:
        out.append(f"{len(orbitals):5d}" + "".join(f"{o:5d}" for o in orbitals))
    per_point = rho[..., None] * Bohr**3 if rho.ndim == 3 else rho * Bohr**3
    flat = per_point.reshape(-1)
    out += [" ".join(f"{x:.10E}" for x in flat[i : i + 6]) for i in range(0, flat.size, 6)]
    return "\n".join(out) + "\n"


def test_cube_with_a_non_zero_origin_moves_the_atoms(tmp_path):
    rho = _rho()
    (tmp_path / "zero.cube").write_text(_cube_text(SI, rho))
    (tmp_path / "shifted.cube").write_text(_cube_text(SI, rho, origin_bohr=(1.0, -2.0, 0.5)))
    a, b = read_cube(tmp_path / "zero.cube"), read_cube(tmp_path / "shifted.cube")
    np.testing.assert_allclose(b.atoms.positions, a.atoms.positions, atol=1e-5)  # relative to the grid: same
    np.testing.assert_allclose(b.total, a.total)
    np.testing.assert_allclose(a.total, rho, rtol=1e-9)
    assert b.electrons() == pytest.approx(rho.mean() * SI.get_volume(), rel=1e-6)


def test_cube_with_a_negative_atom_count_reads_the_first_orbital(tmp_path):
    rho = _rho()
    two = np.stack([rho, -rho], axis=-1)  # two orbitals a point
    (tmp_path / "orb.cube").write_text(_cube_text(SI, two, nat_sign=-1, orbitals=[12, 13]))
    vol = read_cube(tmp_path / "orb.cube")
    assert vol.shape == SHAPE and len(vol.atoms) == 8
    np.testing.assert_allclose(vol.total, rho, rtol=1e-9)
    (tmp_path / "one.cube").write_text(_cube_text(SI, rho, nat_sign=-1, orbitals=[7]))
    np.testing.assert_allclose(read_cube(tmp_path / "one.cube").total, rho, rtol=1e-9)


def test_cube_values_per_point_field(tmp_path):
    rho = _rho()
    (tmp_path / "n.cube").write_text(_cube_text(SI, np.stack([rho, rho * 2, rho * 3], axis=-1), nval=3))
    np.testing.assert_allclose(read_cube(tmp_path / "n.cube").total, rho, rtol=1e-9)


@pytest.mark.parametrize("name", ["rho.cube", "rho.cube.gz", "rho.cube.bz2", "rho.cube.xz"])
def test_cube_round_trip_compressed_and_gaussian_row_layout(tmp_path, name):
    rho = _rho((3, 4, 7))
    write_cube(tmp_path / name, SI, rho)
    assert is_cube(tmp_path / name)
    vol = read_volumetric(tmp_path / name)
    np.testing.assert_allclose(vol.total, rho, rtol=1e-5)
    if name == "rho.cube":
        lines = (tmp_path / name).read_text().splitlines()
        # each (x, y) row of 7 z-values starts a new line: 6 + 1 values
        assert [len(line.split()) for line in lines[14:18]] == [6, 1, 6, 1]


# ---- structures --------------------------------------------------------------------------------
def test_read_structure_picks_the_reader_by_name(tmp_path):
    write_chgcar(tmp_path / "CHGCAR_pred", SI, _rho())
    assert len(read_structure(tmp_path / "CHGCAR_pred")) == 8
    # "chg" inside a word is not a VASP grid file: ASE reads it
    SI.write(tmp_path / "my_chgnet.xyz", format="extxyz")
    assert len(read_structure(tmp_path / "my_chgnet.xyz")) == 8


def test_read_structure_vasp4_poscar_with_elements(tmp_path):
    (tmp_path / "POSCAR").write_text(_header(species_line=None, counts="4 4"))
    atoms = read_structure(tmp_path / "POSCAR", elements=["Ga", "As"])
    assert atoms.get_chemical_formula() == "As4Ga4"
    assert read_poscar(tmp_path / "POSCAR", elements=["Ga", "As"]).get_chemical_formula() == "As4Ga4"
    np.testing.assert_allclose(atoms.cell[:], SI.cell[:], atol=1e-9)


def test_shipped_example_pair_matches():
    """POSCAR and CHGCAR of the example describe the same structure."""
    a = read_structure(EXAMPLE_DFT / "perfect" / "POSCAR")
    b = read_structure(EXAMPLE_DFT / "perfect" / "CHGCAR.gz")
    np.testing.assert_allclose(a.positions, b.positions, atol=1e-9)
