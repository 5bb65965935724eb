import gzip
import time

import numpy as np
import pytest
from ase.build import bulk

from conftest import CORPUS, EXAMPLE_DFT, needs_shared
from deepmd_charge.errors import InputError
from deepmd_charge.io.chgcar import read_chgcar, write_chgcar, write_chgcar_slabs, write_volumetric
from deepmd_charge.io.cube import read_cube, write_cube

# file -> (electrons, number of blocks), from ../shared/data/chgcar-corpus/README.md
CORPUS_FILES = {
    "atomate__Al_PBE_CHGCAR.gz": (3.0, 2),
    "atomate__Al_PBEsol_CHGCAR.gz": (3.0, 2),
    "atomate__Al_SCAN_CHGCAR.gz": (3.0, 2),
    "atomate__LiH_PBEsol_CHGCAR.gz": (4.0, 2),
    "atomate__Si_static_CHGCAR.gz": (8.0, 2),
    "atomate__Si_static_AECCAR2.gz": (8.013, 1),
    "atomate__YPO4_AECCAR2.gz": (82.902, 1),
    "matterviz__Fe3O4_CHGCAR_stride2.gz": (96.0, 2),
    "matterviz__NiO_SOC_CHGCAR_stride2.gz": (44.0, 4),
    "pawpyseed__Ga4_CHGCAR.gz": (12.0, 2),
    "pyiron_atomistics__Fe1_CHGCAR_no_spin": (8.0, 1),
    "pyiron_atomistics__Fe1_CHGCAR_spin": (8.0, 2),
    "sisl-files__graphene_CHGCAR.gz": (8.0, 1),
    "sisl-files__NO_polarized_CHGCAR.gz": (11.0, 2),
    "vaspchg_rs__Li_CHGCAR.nospin.gz": (1.0, 1),
    "vaspchg_rs__Li_CHGCAR.spin.gz": (1.0, 2),
}


@needs_shared
@pytest.mark.parametrize("name", sorted(CORPUS_FILES))
def test_corpus_electron_count(name):
    electrons, nblocks = CORPUS_FILES[name]
    vol = read_chgcar(CORPUS / name)
    assert len(vol.blocks) == nblocks
    assert vol.electrons() == pytest.approx(electrons, abs=2e-3)


@needs_shared
def test_cube_corpus_electron_count():
    vol = read_cube(CORPUS / "baderkit__Ca2N_CHGCAR.cube.gz")
    assert vol.shape == (60, 60, 60)
    assert vol.electrons() == pytest.approx(25.0, abs=2e-3)


@needs_shared
@pytest.mark.parametrize(
    "name",
    ["atomate__Si_static_CHGCAR.gz", "matterviz__NiO_SOC_CHGCAR_stride2.gz", "pyiron_atomistics__Fe1_CHGCAR_spin"],
)
def test_round_trip_keeps_blocks_and_augmentation(tmp_path, name):
    vol = read_chgcar(CORPUS / name)
    write_volumetric(tmp_path / "CHGCAR", vol)
    back = read_chgcar(tmp_path / "CHGCAR")
    assert back.trailers == vol.trailers
    assert back.atoms.get_chemical_symbols() == vol.atoms.get_chemical_symbols()
    np.testing.assert_allclose(back.atoms.positions, vol.atoms.positions, atol=1e-12)
    np.testing.assert_allclose(back.atoms.cell[:], vol.atoms.cell[:], atol=1e-12)
    for a, b in zip(vol.blocks, back.blocks):
        np.testing.assert_allclose(b, a, rtol=1e-10, atol=1e-14)
    if "Si_static" in name:
        assert "augmentation occupancies" in back.trailers[0]


def test_shipped_example_round_trip_and_count(tmp_path):
    vol = read_chgcar(EXAMPLE_DFT / "rattled_a" / "CHGCAR.gz")
    assert vol.shape == (48, 48, 48)
    assert vol.electrons() == pytest.approx(32.0, abs=1e-3)
    write_chgcar(tmp_path / "out.gz", vol.atoms, vol.blocks)
    np.testing.assert_allclose(read_chgcar(tmp_path / "out.gz").total, vol.total, rtol=1e-10, atol=1e-14)


def test_upper_case_compression_suffix(tmp_path):
    """CHGCAR.GZ is compressed like CHGCAR.gz (the name's case does not matter)."""
    vol = read_chgcar(EXAMPLE_DFT / "perfect" / "CHGCAR.gz")
    write_chgcar(tmp_path / "CHGCAR.GZ", vol.atoms, vol.blocks)
    assert (tmp_path / "CHGCAR.GZ").read_bytes()[:2] == b"\x1f\x8b"
    text = gzip.decompress((tmp_path / "CHGCAR.GZ").read_bytes()).decode()
    assert text.splitlines()[7] == "Direct"
    np.testing.assert_allclose(read_chgcar(tmp_path / "CHGCAR.GZ").total, vol.total, rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("name", ["CHGCAR_pred", "CHGCAR_pred.gz"])
def test_streamed_nan_leaves_no_file(tmp_path, name):
    """A NaN in the third slab: InputError naming the file, nothing half-written, an old file kept."""
    atoms = bulk("Si", "diamond", a=5.43, cubic=True)
    rho = np.full((4, 4, 6), 0.25)
    rho[1, 2, 4] = np.nan
    slabs = [(k, k + 2, rho[:, :, k : k + 2]) for k in range(0, 6, 2)]
    with pytest.raises(InputError, match=f"{name}: not written: the density holds NaN or infinite values"):
        write_chgcar_slabs(tmp_path / name, atoms, rho.shape, [(slabs, "")])
    assert list(tmp_path.iterdir()) == []
    (tmp_path / name).write_text("old")
    with pytest.raises(InputError, match="NaN or infinite"):
        write_chgcar_slabs(tmp_path / name, atoms, rho.shape, [(iter(slabs), "")])
    assert [p.name for p in tmp_path.iterdir()] == [name] and (tmp_path / name).read_text() == "old"


def test_grid_orientation_fortran_order(tmp_path):
    """Value (i, j, k) must land at fractional (i/NX, j/NY, k/NZ): x runs fastest in the file."""
    atoms = bulk("Si", "diamond", a=5.43, cubic=True)
    shape = (4, 6, 10)
    rho = np.arange(np.prod(shape), dtype=float).reshape(shape)
    write_chgcar(tmp_path / "CHGCAR", atoms, rho)
    text = (tmp_path / "CHGCAR").read_text().split("\n")
    grid_line = next(i for i, line in enumerate(text) if line.split() == ["4", "6", "10"])
    first = [float(x) for x in text[grid_line + 1].split()]
    volume = atoms.get_volume()
    # the first five values in the file are rho[0..4, 0, 0]: x fastest
    np.testing.assert_allclose(
        np.array(first) / volume, [rho[0, 0, 0], rho[1, 0, 0], rho[2, 0, 0], rho[3, 0, 0], rho[0, 1, 0]]
    )
    np.testing.assert_allclose(read_chgcar(tmp_path / "CHGCAR").total, rho, rtol=1e-10, atol=1e-12)


def test_cube_round_trip_units(tmp_path):
    vol = read_chgcar(EXAMPLE_DFT / "perfect" / "CHGCAR.gz")
    write_cube(tmp_path / "rho.cube", vol.atoms, vol.total)
    back = read_cube(tmp_path / "rho.cube")
    np.testing.assert_allclose(back.total, vol.total, rtol=1e-5, atol=1e-8)
    np.testing.assert_allclose(back.atoms.cell[:], vol.atoms.cell[:], atol=1e-5)
    assert back.electrons() == pytest.approx(32.0, abs=1e-3)
    # on disk: e/bohr^3, so values are smaller than e/A^3 by bohr^3 = 0.148
    raw = float((tmp_path / "rho.cube").read_text().split("\n")[14].split()[0])
    assert raw == pytest.approx(vol.total[0, 0, 0] * 0.529177210544**3, rel=1e-4)


def test_read_speed_108_cubed(tmp_path):
    """A 108^3 CHGCAR (1.26 million values) must read in about a second, not minutes."""
    atoms = bulk("Si", "diamond", a=10.86, cubic=True)
    rho = np.random.default_rng(0).random((108, 108, 108))
    write_chgcar(tmp_path / "CHGCAR", atoms, rho)
    start = time.perf_counter()
    back = read_chgcar(tmp_path / "CHGCAR")
    elapsed = time.perf_counter() - start
    assert back.shape == (108, 108, 108)
    assert elapsed < 3.0, f"read took {elapsed:.2f} s"


def _write_text(path, text):
    path.write_text(text)
    return path


@pytest.fixture()
def small_chgcar(tmp_path):
    atoms = bulk("Si", "diamond", a=5.43, cubic=True)
    write_chgcar(tmp_path / "CHGCAR", atoms, np.full((4, 4, 4), 0.25))
    return tmp_path / "CHGCAR"


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda t: "", "is empty"),
        (lambda t: t[: len(t) // 2], "truncated"),
        (lambda t: t.rstrip("\n").rsplit("\n", 1)[0] + "\n 1.0 abc 2.0 3.0\n", "non-numeric value 'abc'"),
        (lambda t: t.replace("   4    4    4", "   4    4    5"), "should hold 80 values"),
        (lambda t: "\n".join(t.split("\n")[:1] + ["one"] + t.split("\n")[2:]), "malformed"),
        (lambda t: "\n".join(t.split("\n")[:5] + t.split("\n")[6:]), "VASP 4 header without a species line"),
    ],
)
def test_bad_files_give_one_clear_error(small_chgcar, mutate, message):
    text = small_chgcar.read_text()
    small_chgcar.write_text(mutate(text))
    with pytest.raises(InputError) as err:
        read_chgcar(small_chgcar)
    assert message in str(err.value)
    assert str(small_chgcar) in str(err.value)


def test_nan_values_rejected(small_chgcar):
    lines = small_chgcar.read_text().split("\n")
    i = next(i for i, line in enumerate(lines) if line.split() == ["4", "4", "4"])
    lines[i + 2] = " NaN" + lines[i + 2][len(" 0.00000000000E+00") :]
    small_chgcar.write_text("\n".join(lines))
    with pytest.raises(InputError, match="NaN or infinite"):
        read_chgcar(small_chgcar)


def test_vasp4_header_with_elements(small_chgcar):
    lines = small_chgcar.read_text().split("\n")
    del lines[5]
    small_chgcar.write_text("\n".join(lines))
    vol = read_chgcar(small_chgcar, elements=["Si"])
    assert vol.atoms.get_chemical_symbols() == ["Si"] * 8


def test_directory_and_gzip_errors(tmp_path):
    with pytest.raises(InputError, match="is a directory"):
        read_chgcar(tmp_path)
    (tmp_path / "bad.gz").write_bytes(gzip.compress(b"Si\n1.0\n")[:15])
    with pytest.raises(InputError, match="cannot be read"):
        read_chgcar(tmp_path / "bad.gz")


def test_negative_scale_means_volume(small_chgcar):
    lines = small_chgcar.read_text().split("\n")
    lines[1] = "  -320.0"
    small_chgcar.write_text("\n".join(lines))
    assert read_chgcar(small_chgcar).atoms.get_volume() == pytest.approx(320.0)


def test_values_are_formatted_exactly_as_python_formats_them():
    """The numpy formatter (_format_e) gives the bytes of " %17.10E" % x, rounding ties included."""
    from deepmd_charge.io.chgcar import format_values

    rng = np.random.default_rng(0)
    cases = [
        rng.random(20000) * 100,
        rng.normal(size=20000) * 1e-5,
        np.round(rng.random(20000), 11) + 0.5e-11,  # last digit exactly on a tie
        10.0 ** np.arange(-99, 100),
        np.array([0.0, -0.0, 1.0, 10.0, 9.99999999999, 9.99999999995, 0.1, 1 / 3, -1e-7, 123456789.0, 7.0]),
        np.array([1e-100, 2.0, 3.0]),  # 3-digit exponent: the %-format fallback
        np.array([np.nan, 1.0, -np.inf, 2.0, 3.0, 4.0]),
    ]
    for values in cases:
        nfull = values.size // 5
        expected = ((" %17.10E" * 5 + "\n") * nfull) % tuple(values[: 5 * nfull])
        if values.size % 5:
            expected += "".join(f" {x:17.10E}" for x in values[5 * nfull :]) + "\n"
        assert format_values(values) == expected
