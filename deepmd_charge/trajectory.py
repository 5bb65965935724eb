"""Predicting every frame of a trajectory (extxyz, XDATCAR, ASE .traj, ...): one output per frame.

`dp-charge predict model.pb md.xyz -o CHGCAR_pred` writes CHGCAR_pred_0000, CHGCAR_pred_0001, ...
(`frame_name`). Frames are read one at a time (ase.io.iread) and each is predicted and written
before the next is read, with the model loaded once. A first pass over the file counts the frames
and checks every selected one (elements the model knows, a periodic cell), so that a bad frame
stops the run before any output is written.
"""

from __future__ import annotations

import copy
from pathlib import Path

from deepmd_charge.errors import InputError
from deepmd_charge.io.files import check_writable, printable

#: digits of the frame number in output names (more when the file has more frames)
WIDTH = 4
_COMPRESSED = (".gz", ".bz2", ".xz")
# files that hold one structure whatever their content: read by io.structure.read_structure
_SINGLE = ("POSCAR", "CONTCAR", "CHGCAR", "CHG", "AECCAR", "PARCHG", "LOCPOT", "ELFCAR")


def frame_name(output, number: int, width: int = WIDTH) -> str:
    """Output name of frame `number`: the number goes before the extension (if any).

    CHGCAR_pred -> CHGCAR_pred_0007, rho.cube -> rho_0007.cube, CHGCAR.gz -> CHGCAR_0007.gz,
    rho.cube.gz -> rho_0007.cube.gz, out/CHGCAR -> out/CHGCAR_0007.
    """
    path = Path(output)
    name = path.name
    tail = ""
    for z in _COMPRESSED:
        if name.lower().endswith(z):
            name, tail = name[: -len(z)], name[-len(z) :]
            break
    stem, dot, ext = name.rpartition(".")
    if not dot or not stem or not (ext.isalpha() and len(ext) <= 6):
        stem, ext = name, ""
    number_text = f"{number:0{width}d}"
    new = f"{stem}_{number_text}" + (f".{ext}" if ext else "") + tail
    return str(path.with_name(new))


def may_hold_frames(path) -> bool:
    """False for files that hold one structure by nature (POSCAR, CHGCAR, cube)."""
    from deepmd_charge.io.structure import is_cube

    name = Path(path).name.upper()
    return not (is_cube(path) or any(key in name for key in _SINGLE))


def _parse_index(index: str | None):
    """ASE-style frame selection: None/':' all, 'N' one frame, 'A:B:C' a slice (negative from the end)."""
    if index is None or index.strip() == ":":
        return slice(None)
    text = index.strip()
    try:
        if ":" in text:
            parts = [int(p) if p.strip() else None for p in text.split(":")]
            if len(parts) > 3:
                raise ValueError
            return slice(*parts)
        return int(text)
    except ValueError:
        raise InputError(
            "index", f"should be a frame number or a slice start:stop:step (as in ASE), got '{printable(index)}'"
        ) from None


def iter_file(path):
    """(number, Atoms) for every frame of `path`, read one at a time."""
    import ase.io

    n = -1
    try:
        for n, atoms in enumerate(ase.io.iread(str(path), index=":")):
            yield n, atoms
    except InputError:
        raise
    except Exception as exc:  # ASE raises many types for unreadable files
        where = f"frame {n + 1}: " if n >= 0 else ""
        raise InputError(
            path, f"ASE cannot read a structure from it ({where}{type(exc).__name__}: {printable(exc, 200)})"
        ) from None


def frame_source(path, number: int, count: int) -> str:
    """How messages name a frame: the file alone when it holds one frame."""
    return str(path) if count == 1 else f"{path} frame {number}"


def select_frames(path, index: str | None = None, check=None) -> list:
    """Numbers of the selected frames of `path`; `check(atoms, source)` runs on each of them."""
    selection = _parse_index(index)
    count = sum(1 for _ in iter_file(path))
    if count == 0:
        raise InputError(path, "holds no frames")
    if isinstance(selection, int):
        if not -count <= selection < count:
            raise InputError("index", f"frame {selection} does not exist: {path} has {count} frame(s)")
        chosen = [selection % count]
    else:
        chosen = list(range(count))[selection]
        if not chosen:
            raise InputError("index", f"selects no frame of the {count} in {path}")
    if check is not None:
        wanted = set(chosen)
        for n, atoms in iter_file(path):
            if n in wanted:
                source = frame_source(path, n, count)
                if len(atoms) == 0:
                    raise InputError(source, "holds no atoms")
                check(atoms, source)
    return chosen


def predict_frames(args, predict_one, load_model, rank: int = 0) -> int:
    """Run `predict_one(frame_args)` for every selected frame of args.structure.

    Each frame's args are a copy of `args` with `atoms`, `output` (frame_name) and `structure`
    (for messages) set, and a shared `model_cache` so that every frame uses the same loaded model.
    """
    cache: dict = {}
    models = [args.model] + ([args.spin_model] if getattr(args, "spin_model", None) else [])
    loaded = [load_model(m, args.threads, args.plain_graph, cache=cache) for m in models]

    like = None
    if getattr(args, "like", None):
        from deepmd_charge.io.structure import read_volumetric

        like = read_volumetric(args.like, elements=args.elements)

    def check(atoms, source):
        for dc in loaded:
            dc.check_structure(atoms, source)
        if like is not None:
            from deepmd_charge.grid import check_same_cell

            check_same_cell(atoms.cell[:], like.atoms.cell[:], like.shape, f"{args.like} (for {source})")

    chosen = select_frames(args.structure, getattr(args, "index", None), check=check)
    single_file = len(chosen) == 1 and not getattr(args, "index", None)  # a file of one frame
    width = max(WIDTH, len(str(max(chosen))))
    names = {n: frame_name(args.output, n, width) if len(chosen) > 1 else args.output for n in chosen}
    for name in names.values():
        check_writable(name)
    wanted = set(chosen)
    done = 0
    for n, atoms in iter_file(args.structure):
        if n not in wanted:
            continue
        frame_args = copy.copy(args)
        frame_args.atoms, frame_args.output, frame_args.model_cache, frame_args.like_data = atoms, names[n], cache, like
        frame_args.structure = args.structure if single_file else f"{args.structure} frame {n}"
        if rank == 0 and len(chosen) > 1:
            print(f"== frame {n} ({done + 1} of {len(chosen)}) -> {names[n]}", flush=True)
        code = predict_one(frame_args)
        if code:
            return code
        done += 1
    if rank == 0 and len(chosen) > 1:
        print(f"wrote {len(chosen)} files: {names[chosen[0]]} ... {names[chosen[-1]]}")
    return 0
