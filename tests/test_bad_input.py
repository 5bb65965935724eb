"""Every bad input gives one InputError naming the file and the problem (one line, exit 2 in the
CLI, no traceback, no partial output) - and random corruption of real files never gives anything
else. Cases already in test_chgcar.py / test_cli.py are not repeated here."""

import bz2
import gzip
import lzma
import os
import re
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from ase.build import bulk
from ase.units import Bohr
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import CORPUS, EXAMPLE_DFT, run
from deepmd_charge import cli
from deepmd_charge.errors import InputError
from deepmd_charge.io.chgcar import format_poscar, format_values, read_chgcar, write_chgcar
from deepmd_charge.io.cube import format_cube_values, read_cube, write_cube
from deepmd_charge.io.files import atomic_write, read_text
from deepmd_charge.io.structure import read_structure, read_volumetric

SI = bulk("Si", "diamond", a=5.43, cubic=True)


def _spin_chgcar_text():
    """A small spin CHGCAR as VASP writes it: 4x4x4 grid, augmentation, one moment per atom."""
    rng = np.random.default_rng(0)

    def numbers(values, fmt):
        return "".join(
            " " + " ".join(fmt.format(x) for x in values[i : i + 5]) + "\n" for i in range(0, len(values), 5)
        )

    aug = "".join(
        f"augmentation occupancies {a:3d}   7\n" + numbers(rng.normal(size=7), "{:14.7E}") for a in range(1, 9)
    )
    moments = numbers(np.full(8, 0.1), "{:19.12E}")
    text = format_poscar(SI, "Si8 spin") + "\n"
    for k, trailer in enumerate([aug + moments, aug]):
        text += "    4    4    4\n" + format_values(rng.random((4, 4, 4)) * 40 - 5 * k) + trailer
    return text


SPIN = _spin_chgcar_text()
LINES = SPIN.split("\n")
GRID = [i for i, line in enumerate(LINES) if line.split() == ["4", "4", "4"]]  # the two grid lines
AUG = [i for i, line in enumerate(LINES) if line.startswith("augmentation")]


def _lines(edit):
    def mutate(text):
        lines = text.split("\n")
        edit(lines)
        return "\n".join(lines)

    return mutate


def _set(i, value):
    def edit(lines):
        lines[i] = value

    return _lines(edit)


def _sub_token(i, k, value):
    def edit(lines):
        toks = lines[i].split()
        toks[k] = value
        lines[i] = " " + " ".join(toks)

    return _lines(edit)


BAD_CHGCARS = {
    # truncation anywhere
    "truncated inside the header": (lambda t: "\n".join(t.split("\n")[:7]) + "\n", "ends inside the POSCAR header"),
    "only the POSCAR part": (lambda t: "\n".join(t.split("\n")[: GRID[0]]) + "\n", "no grid line"),
    "truncated after a grid line": (
        lambda t: "\n".join(t.split("\n")[: GRID[1] + 1]) + "\n",
        "ends after the grid line of data block 2",
    ),
    "truncated inside a number": (lambda t: t[: t.index("\n", len(t) // 3) - 4], "ends inside a number"),
    "truncated inside augmentation": (
        lambda t: "\n".join(t.split("\n")[: AUG[3] + 2]) + "\n",
        "augmentation occupancies",
    ),
    "truncated between atoms' augmentation": (
        lambda t: "\n".join(t.split("\n")[: AUG[3]]) + "\n",
        "cover 3 atoms, the header has 8",
    ),
    # non-numeric, NaN, inf
    "inf in the data": (_sub_token(GRID[0] + 3, 2, "inf"), "line 21: NaN or infinite value 'inf' in data block 1"),
    "-NaN in the second block": (_sub_token(GRID[1] + 1, 0, "-NaN"), "NaN or infinite value 'nan' in data block 2"),
    "Fortran overflow stars": (
        _sub_token(GRID[0] + 5, 1, "*****************"),
        "non-numeric value '*****************' in data block 1",
    ),
    "NaN in a lattice vector": (_set(3, "  0.0 nan 0.0"), "NaN or infinite number in the lattice vectors"),
    "inf in an atom position": (_set(9, " 0.25 inf 0.25"), "line 10: NaN or infinite atom position"),
    "NaN in augmentation": (
        _sub_token(AUG[2] + 1, 0, "NaN"),
        "NaN or infinite value 'nan' in the lines after data block 1",
    ),
    "garbage line in the data": (
        _lines(lambda ls: ls.insert(GRID[0] + 4, "hello world")),
        "non-numeric value 'hello' in data block 1",
    ),
    "text after the end": (
        lambda t: t + "written by hand\n",
        "non-numeric value 'written' in the lines after data block 2",
    ),
    # the grid line and the data disagree
    "grid line too small": (
        lambda t: t.replace("    4    4    4", "    4    4    3"),
        "should hold 48 values (NX*NY*NZ = 4x4x3) but runs past them",
    ),
    "grid line too small, whole lines": (
        lambda t: t.replace("    4    4    4", "    4    2    5"),
        "values between data block 1 and its augmentation",
    ),
    "second grid line differs": (
        _set(GRID[1], "    4    4    5"),
        "grid line '4    4    5' differs from the first one",
    ),
    "zero in the grid line": (lambda t: t.replace("    4    4    4", "    4    0    4"), "invalid grid size (4, 0, 4)"),
    "negative grid line": (lambda t: t.replace("    4    4    4", "   -4    4    4"), "invalid grid size (-4, 4, 4)"),
    "grid line with two numbers": (_set(GRID[0], "    4    4"), "should hold the grid size NX NY NZ"),
    "data line deleted": (
        _lines(lambda ls: ls.pop(GRID[0] + 4)),
        "should hold 64 values (NX*NY*NZ = 4x4x4), found 59 before line",
    ),
    "data line duplicated": (
        _lines(lambda ls: ls.insert(GRID[0] + 4, ls[GRID[0] + 4])),
        "should hold 64 values (NX*NY*NZ = 4x4x4) but runs past them",
    ),
    "augmentation line duplicated": (
        _lines(lambda ls: ls.insert(AUG[1] + 1, ls[AUG[1] + 1])),
        "augmentation occupancies of atom 2 should hold 7 values, found 12",
    ),
    "moments line duplicated": (
        _lines(lambda ls: ls.insert(GRID[1] - 1, ls[GRID[1] - 1])),
        "values between data blocks 1 and 2 belong to no block",
    ),
    "three blocks": (
        lambda t: t + "    4    4    4\n" + t.split("    4    4    4\n")[2],
        "3 data blocks; expected 1 (total), 2 (spin) or 4",
    ),
    "malformed augmentation header": (_set(AUG[4], "augmentation occupancies five"), "malformed augmentation header"),
    # malformed header
    "two scale factors": (_set(1, "  1.0 1.0"), "line 2 should hold the scale factor (one number, or three)"),
    "scale factor 0": (_set(1, "  0.0"), "the scale factor in line 2 is 0"),
    "negative one of three scale factors": (_set(1, "  1.0 -1.0 1.0"), "three scale factors must all be positive"),
    "lattice vector with two numbers": (_set(3, "  0.0 5.43"), "line 4 should hold a lattice vector (three numbers)"),
    "flat cell": (_set(4, "  5.43 0.0 0.0"), "span no volume"),
    "species but no counts": (_set(6, "Direct"), "line 7 should hold the atom counts"),
    "more species than counts": (
        _set(5, "  Si O"),
        "2 species ['Si', 'O'] from the species line (line 6) but 1 atom counts in line 7",
    ),
    "unknown element": (_set(5, "  Qq"), "unknown element(s) ['Qq'] in the species line (line 6)"),
    "negative count": (_set(6, "  -8"), "invalid atom counts [-8] in line 7"),
    "more atoms than lines": (
        _set(6, "  80"),
        "line 17 should hold the position of atom 9 of 80 (atom counts in line 7), found ''",
    ),
    "more atoms than the file has lines": (_set(6, "  8000"), "the header declares 8000 atoms but the file ends after"),
    "no Direct line": (_lines(lambda ls: ls.pop(7)), "line 8 should hold 'Direct' or 'Cartesian'"),
    "blank line for Direct": (_set(7, ""), "line 8 should hold 'Direct' or 'Cartesian', found ''"),
    "position with two numbers": (_set(10, " 0.5 0.5"), "line 11 should hold the position of atom 3 of 8"),
    "tiny cell": (_set(1, "  1e-9"), "cell volume of"),
    # not a text CHGCAR at all
    "binary file": (lambda t: t[:100] + "\x00\x01" + t[100:], "is not a text file (NUL byte at byte 101)"),
}


def test_the_unmutated_file_reads(tmp_path):
    """The cases above all start from a good file."""
    (tmp_path / "CHGCAR").write_text(SPIN)
    vol = read_chgcar(tmp_path / "CHGCAR")
    assert len(vol.blocks) == 2 and vol.trailers[0].count("augmentation") == 8
    (tmp_path / "rho.cube").write_text(CUBE)
    assert read_cube(tmp_path / "rho.cube").shape == (3, 4, 5)


@pytest.mark.parametrize(
    "kind, pack",
    [
        ("gzip", lambda b: gzip.compress(b)[:-30]),
        ("bzip2", lambda b: bz2.compress(b)[:-30]),
        ("xz", lambda b: lzma.compress(b)[:-30]),
        ("gzip", lambda b: (lambda z: z[:40] + bytes([z[40] ^ 0xFF]) + z[41:])(gzip.compress(b))),
    ],
    ids=["gz-truncated", "bz2-truncated", "xz-truncated", "gz-flipped-byte"],
)
def test_broken_compression(tmp_path, kind, pack):
    path = tmp_path / "CHGCAR.packed"
    path.write_bytes(pack(SPIN.encode()))
    with pytest.raises(InputError, match=f"^{re.escape(str(path))}: cannot be read: broken {kind} data"):
        read_chgcar(path)


def test_missing_file_and_special_files(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        read_chgcar(tmp_path / "CHGCAR")
    with pytest.raises(InputError, match="is a directory"):
        read_cube(tmp_path)
    if Path("/dev/null").exists():
        with pytest.raises(InputError, match="is not a regular file"):
            read_chgcar("/dev/null")


def test_vasp4_with_a_mismatched_poscar_beside_names_it(tmp_path):
    lines = SPIN.split("\n")
    del lines[5]
    (tmp_path / "CHGCAR").write_text("\n".join(lines))
    (tmp_path / "POSCAR").write_text("x\n1.0\n5 0 0\n0 5 0\n0 0 5\nGa As\n1 1\nDirect\n0 0 0\n.5 .5 .5\n")
    with pytest.raises(
        InputError, match=re.escape(f"from the species line of {tmp_path / 'POSCAR'} but 1 atom counts")
    ):
        read_chgcar(tmp_path / "CHGCAR")


def test_a_cube_named_like_a_chgcar(tmp_path):
    write_cube(tmp_path / "rho.cube", SI, np.ones((2, 3, 4)))
    (tmp_path / "CHGCAR").write_bytes((tmp_path / "rho.cube").read_bytes())
    with pytest.raises(InputError, match="is a Gaussian cube file, not a CHGCAR"):
        read_chgcar(tmp_path / "CHGCAR")


# ---- cube --------------------------------------------------------------------------------------
def _cube_text():
    """A small cube as write_cube writes it: 8 Si atoms, a 3x4x5 grid."""
    head = ["cube", "test", f"{8:5d}" + f"{0.0:12.6f}" * 3]
    head += [f"{n:5d}" + "".join(f"{x:12.6f}" for x in SI.cell[i] / n / Bohr) for i, n in enumerate((3, 4, 5))]
    head += [f"{14:5d}{0.0:12.6f}" + "".join(f"{x:12.6f}" for x in p / Bohr) for p in SI.positions]
    return "\n".join(head) + "\n" + format_cube_values(np.random.default_rng(1).random((3, 4, 5)))


CUBE = _cube_text()
BAD_CUBES = {
    "empty": (lambda t: "\n", "is empty"),
    "header only": (lambda t: "\n".join(t.split("\n")[:9]), "truncated cube header: the file ends before line 10"),
    "truncated data": (
        lambda t: "\n".join(t.split("\n")[:20]) + "\n",
        "the cube data should hold 60 values (3x4x5 grid), found",
    ),
    "truncated inside a number": (lambda t: t.rstrip("\n")[:-3], "ends inside a number"),
    "non-numeric": (lambda t: t.replace("E-0", "X-0", 1), "non-numeric value"),
    "NaN": (_sub_token(16, 1, "nan"), "line 17: NaN or infinite value 'nan' in the cube data"),
    "malformed atom count": (_set(2, "eight 0 0 0"), "line 3 should hold the atom count and the origin"),
    "NaN origin": (_set(2, "    8 0.0 nan 0.0"), "NaN or infinite number in line 3"),
    "negative grid": (lambda t: t.replace("\n    4 ", "\n   -4 ", 1), "negative sizes mean Angstrom units"),
    "atomic number 0": (lambda t: t.replace("\n   14", "\n    0", 1), "line 7: atomic number 0 is not an element"),
    "flat steps": (_set(4, "    4    0.0    0.0    0.0"), "span no volume"),
    "too many values": (lambda t: t + " 1.0\n", "should hold 60 values (3x4x5 grid), found 61"),
}


BAD_FILES = [("CHGCAR", case) for case in sorted(BAD_CHGCARS)] + [("rho.cube", case) for case in sorted(BAD_CUBES)]


@pytest.mark.parametrize("name, case", BAD_FILES, ids=[f"{n}: {c}" for n, c in BAD_FILES])
def test_bad_file_gives_one_clear_error(tmp_path, name, case):
    good, cases = (CUBE, BAD_CUBES) if name.endswith(".cube") else (SPIN, BAD_CHGCARS)
    mutate, message = cases[case]
    path = tmp_path / name
    path.write_text(mutate(good))
    with pytest.raises(InputError) as err:
        read_volumetric(path)
    text = str(err.value)
    assert text.startswith(f"{path}: ") and "\n" not in text
    assert message in text, text


# ---- structures and outputs ---------------------------------------------------------------------
def test_unreadable_structure_is_one_line(tmp_path):
    (tmp_path / "junk.xyz").write_text("three\nnot an xyz\nO 0 0\n")
    with pytest.raises(InputError) as err:
        read_structure(tmp_path / "junk.xyz")
    assert "ASE cannot read a structure" in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize(
    "target, message",
    [
        ("{tmp}", "is a directory, expected an output file name"),
        ("{tmp}/nope/CHGCAR", "does not exist"),
        ("{tmp}/afile/CHGCAR", "afile is a file, not a folder"),
        ("/proc/deepmd-charge-test/CHGCAR", "does not exist"),
        ("/proc/CHGCAR", "cannot write"),
    ],
)
def test_unwritable_output_is_an_input_error_and_leaves_nothing(tmp_path, target, message):
    (tmp_path / "afile").write_text("x")
    target = target.format(tmp=tmp_path)
    if target.startswith("/proc") and not Path("/proc/self").exists():
        pytest.skip("no /proc")
    with pytest.raises(InputError, match=re.escape(message)):
        write_chgcar(target, SI, np.ones((2, 2, 2)))
    with pytest.raises(InputError, match=re.escape(message)):
        write_cube(target, SI, np.ones((2, 2, 2)))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]


def test_failure_while_writing_removes_the_temporary_file(tmp_path):
    with pytest.raises(InputError, match="cannot write"):
        with atomic_write(tmp_path / "out") as fh:
            fh.write("half")
            raise OSError(28, "No space left on device")
    assert list(tmp_path.iterdir()) == []


# ---- through the CLI ----------------------------------------------------------------------------
CLI_CASES = [
    "truncated inside a number",
    "NaN in augmentation",
    "grid line too small",
    "no Direct line",
    "binary file",
    "data line deleted",
]


def _assert_one_line_exit_2(proc, path, message, tmp_path):
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"dp-charge convert: error: {path}: ") and message in lines[0], lines[0]
    assert not (tmp_path / "data").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary leftovers


@pytest.mark.parametrize("case", CLI_CASES)
def test_cli_convert_bad_chgcar(tmp_path, case):
    mutate, message = BAD_CHGCARS[case]
    path = tmp_path / "CHGCAR"
    path.write_text(mutate(SPIN))
    proc = run(
        [sys.executable, "-m", "deepmd_charge.cli", "convert", str(path), "-o", str(tmp_path / "data")], check=False
    )
    _assert_one_line_exit_2(proc, path, message, tmp_path)


def test_cli_convert_vasp4_and_missing_species(tmp_path):
    """VASP 4 header: an error naming the way out; with --elements it converts."""
    lines = SPIN.split("\n")
    del lines[5]
    path = tmp_path / "CHGCAR"
    path.write_text("\n".join(lines))
    proc = run(
        [sys.executable, "-m", "deepmd_charge.cli", "convert", str(path), "-o", str(tmp_path / "data")], check=False
    )
    _assert_one_line_exit_2(
        proc, path, "VASP 4 header without a species line: give the elements with --elements", tmp_path
    )
    run(
        [
            sys.executable,
            "-m",
            "deepmd_charge.cli",
            "convert",
            str(path),
            "-o",
            str(tmp_path / "data"),
            "--elements",
            "Si",
            "--points-per-frame",
            "8",
            "--points",
            "16",
            "--seed",
            "0",
        ]
    )
    assert (tmp_path / "data" / "type_map.raw").read_text().split() == ["Si", "X"]


def test_cli_convert_one_good_one_bad_writes_nothing(tmp_path, capsys):
    bad = tmp_path / "CHGCAR_bad"
    bad.write_text(SPIN[: len(SPIN) // 2])
    code = cli.main(["convert", str(EXAMPLE_DFT / "perfect" / "CHGCAR.gz"), str(bad), "-o", str(tmp_path / "data")])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"dp-charge convert: error: {bad}: ")
    assert not (tmp_path / "data").exists()


@pytest.mark.parametrize("output", ["{tmp}/afile/data", "/proc/deepmd-charge-test/data"])
def test_cli_convert_unwritable_output(tmp_path, capsys, output):
    (tmp_path / "afile").write_text("x")
    code = cli.main(
        ["convert", str(EXAMPLE_DFT / "perfect" / "CHGCAR.gz"), "-o", output.format(tmp=tmp_path), "--points", "400"]
    )
    assert code == 2
    assert "cannot write" in capsys.readouterr().err


# ---- random corruption of real files -----------------------------------------------------------
NONFINITE = ["nan", "NaN", "-nan", "inf", "-inf", "Infinity", "1e999", "*************"]
GARBAGE = st.one_of(
    st.text(max_size=30),
    st.sampled_from(
        [
            "\n",
            "\n\n",
            " 1.0",
            " 1.0\n",
            "   28   28   28\n",
            "    4    4    4\n",
            "augmentation occupancies   1  33\n",
            " -",
            "E+",
            "\x00",
            "\t",
            "\r",
            "\x0c",
            " 0.1-100",
            "Si\n",
        ]
    ),
)


@st.composite
def _corruption(draw, lines, anchors):
    kind = draw(st.sampled_from(["truncate", "delete", "duplicate", "replace", "insert", "nonfinite"]))
    line = draw(st.one_of(st.sampled_from(anchors), st.integers(0, len(lines) - 1)))
    col = draw(st.integers(0, 120))
    if kind == "replace":
        payload = draw(st.text(min_size=1, max_size=3))
    elif kind == "insert":
        payload = draw(GARBAGE)
    elif kind == "nonfinite":
        payload = draw(st.sampled_from(NONFINITE))
    else:
        payload = ""
    return kind, line, col, payload


def _apply(lines, op):
    kind, i, col, payload = op
    if not lines:
        return lines
    i %= len(lines)
    line = lines[i]
    c = col % (len(line) + 1)
    if kind == "truncate":
        return lines[:i] + [line[:c]]
    if kind == "delete":
        return lines[:i] + lines[i + 1 :]
    if kind == "duplicate":
        return lines[: i + 1] + [line] + lines[i + 1 :]
    if kind == "replace":
        return lines[:i] + [line[:c] + payload + line[c + len(payload) :]] + lines[i + 1 :]
    if kind == "insert":
        return lines[:i] + [line[:c] + payload + line[c:]] + lines[i + 1 :]
    spans = [m.span() for m in re.finditer(r"\S+", line)]
    if not spans:
        return lines
    a, b = spans[col % len(spans)]
    return lines[:i] + [line[:a] + payload + line[b:]] + lines[i + 1 :]


def _source(path):
    """Lines (with their ends) of a real file, the original read, and lines worth aiming at."""
    text = read_text(path)
    lines = text.splitlines(keepends=True)
    vol = read_chgcar(path)
    grid = [i for i, line in enumerate(lines) if line.split() == [str(n) for n in vol.shape]]
    aug = [i for i, line in enumerate(lines) if line.startswith("augmentation")]
    near = {i + d for i in grid + aug for d in (-2, -1, 0, 1, 2)} | set(range(12)) | {len(lines) - 2, len(lines) - 1}
    return lines, vol, sorted(i for i in near if 0 <= i < len(lines))


def _read_is_clean(path, original):
    """Either one clean InputError naming the file, or a read that makes sense."""
    try:
        vol = read_volumetric(path)
    except InputError as exc:
        assert str(exc).startswith(f"{path}: ") and "\n" not in str(exc), str(exc)
        return
    assert vol.shape == original.shape
    assert len(vol.blocks) in (1, 2, 4) and len(vol.blocks) <= len(original.blocks)
    assert all(np.isfinite(b).all() and b.shape == original.shape for b in vol.blocks)
    assert len(vol.atoms) == len(original.atoms) and np.isfinite(vol.atoms.positions).all()
    assert np.isfinite(vol.electrons())


SOURCES = {
    "si_example": EXAMPLE_DFT / "perfect" / "CHGCAR.gz",
    "fe_spin": CORPUS / "pyiron_atomistics__Fe1_CHGCAR_spin",
    "nio_soc": CORPUS / "matterviz__NiO_SOC_CHGCAR_stride2.gz",
}
_CACHE = {}
# DEEPMD_CHARGE_FUZZ=2000 python -m pytest tests/test_bad_input.py -k random   for a long hunt
FUZZ = settings(
    max_examples=int(os.environ.get("DEEPMD_CHARGE_FUZZ", "50")),
    deadline=10_000,  # ms per example: a hang fails, a busy machine does not
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.mark.parametrize("name", sorted(SOURCES))
def test_random_corruption_of_a_real_chgcar(tmp_path, name):
    if not SOURCES[name].exists():
        pytest.skip("../shared/data is not present (fresh clone)")
    if name not in _CACHE:
        _CACHE[name] = _source(SOURCES[name])
    lines, original, anchors = _CACHE[name]
    path = tmp_path / "CHGCAR"

    @FUZZ
    @given(ops=st.lists(_corruption(lines, anchors), min_size=1, max_size=3))
    def check(ops):
        bad = lines
        for op in ops:
            bad = _apply(bad, op)
        path.write_bytes("".join(bad).encode("utf-8", errors="surrogateescape"))
        _read_is_clean(path, original)

    check()


@FUZZ
@given(data=st.data())
def test_random_damage_to_compressed_bytes(tmp_path, data):
    raw = (EXAMPLE_DFT / "perfect" / "CHGCAR.gz").read_bytes()
    kind = data.draw(st.sampled_from(["truncate", "flip", "zero"]))
    pos = data.draw(st.integers(0, len(raw) - 1))
    if kind == "truncate":
        raw = raw[:pos]
    else:
        raw = raw[:pos] + bytes([raw[pos] ^ 0xFF if kind == "flip" else 0]) + raw[pos + 1 :]
    path = tmp_path / "CHGCAR.gz"
    path.write_bytes(raw)
    if "original" not in _CACHE:
        _CACHE["original"] = read_chgcar(EXAMPLE_DFT / "perfect" / "CHGCAR.gz")
    if raw:
        _read_is_clean(path, _CACHE["original"])


@FUZZ
@given(ops=st.lists(_corruption(CUBE.splitlines(keepends=True), list(range(12))), min_size=1, max_size=3))
def test_random_corruption_of_a_cube(tmp_path, ops):
    lines = CUBE.splitlines(keepends=True)
    for op in ops:
        lines = _apply(lines, op)
    path = tmp_path / "rho.cube"
    path.write_bytes("".join(lines).encode("utf-8", errors="surrogateescape"))
    _read_is_clean(path, SimpleNamespace(shape=(3, 4, 5), blocks=[None], atoms=SI))
