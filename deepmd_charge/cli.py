"""dp-charge convert | predict | test: parse arguments, call the library, print results."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from deepmd_charge.errors import InputError
from deepmd_charge.io.files import check_writable


def _add_evaluation_options(p):
    p.add_argument(
        "--threads", type=int, default=None, help="CPU threads for TensorFlow (default: OMP_NUM_THREADS or all cores)"
    )
    p.add_argument(
        "--plain-graph",
        action="store_true",
        help="evaluate the frozen graph as it is instead of its tabulated networks (same density to ~1e-12 in "
        "float64, several times slower; docs/large-systems.md)",
    )
    p.add_argument(
        "--dev-scale",
        type=float,
        default=None,
        metavar="S",
        help="a committee: multiply its deviation by S, the calibration factor `dp-charge test` prints for the "
        "committee on a structure with DFT, e.g. its training one (default 1: the raw deviation; docs/uncertainty.md)",
    )


def _version_line() -> str:
    from importlib import metadata

    from deepmd_charge import __version__

    def installed(name):
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return "not installed"

    return f"dp-charge {__version__} (deepmd-kit {installed('deepmd-kit')}, dpdata {installed('dpdata')}, ase {installed('ase')})"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dp-charge",
        description="Deep Charge: learn DFT charge densities with DeePMD-kit and predict them on any grid.",
        epilog="Train between convert and predict with DeePMD-kit itself: dp train input.json; dp freeze -o model.pb",
    )
    parser.add_argument("--version", action="version", version=_version_line())
    sub = parser.add_subparsers(dest="command", required=True)

    c = sub.add_parser("convert", help="CHGCAR/cube grids -> ghost-point training frames (deepmd/npy)")
    c.add_argument("files", nargs="+", help="CHGCAR, CHG, AECCAR, PARCHG (plain/.gz/.bz2/.xz) or .cube files")
    c.add_argument(
        "-o",
        "--output",
        required=True,
        help="output folder: a deepmd/npy system (as many sets as input files, each mixing all of them)",
    )
    c.add_argument(
        "--points-per-frame", type=int, default=200, help="grid points (ghost atoms) per frame (default 200)"
    )
    g = c.add_mutually_exclusive_group()
    g.add_argument(
        "--points",
        type=int,
        default=100_000,
        help="grid points sampled per input file (default 100000, capped by the grid)",
    )
    g.add_argument("--frames", type=int, default=None, help="frames per input file (instead of --points)")
    c.add_argument(
        "--sampling",
        choices=["uniform", "weighted"],
        default="uniform",
        help="uniform: all points alike; weighted: favour dense regions",
    )
    c.add_argument("--seed", type=int, default=None, help="random seed for reproducible sampling")
    c.add_argument("--ghost", default="X", help="type name of grid points; must be last in type_map (default X)")
    c.add_argument("--channel", default="total", help="density block to learn: total (default) or magnetization")
    c.add_argument("--elements", nargs="+", default=None, help="species for VASP 4 files without a species line")
    c.add_argument("--overwrite", action="store_true", help="replace the training data already in the --output folder")
    c.add_argument(
        "--format",
        choices=["ghost", "grid"],
        default="ghost",
        help="ghost: ghost-point frames for dp train (default); grid: DeePMD-kit's set.*/grid.npy + density.npy layout. "
        "FILES may also be folders in the grid layout: they become ghost-point frames",
    )

    p = sub.add_parser("predict", help="density of a structure on a grid, written as CHGCAR or cube")
    p.add_argument(
        "model", nargs="+", help="frozen model from dp freeze (model.pb); several: a committee, its mean is written"
    )
    p.add_argument("structure", help="any file ASE reads (POSCAR, CIF, extxyz, ...) or a CHGCAR/cube")
    p.add_argument(
        "-o",
        "--output",
        help="output file: CHGCAR-style (default; .gz compresses) or .cube (required unless --qe-save)",
    )
    grid = p.add_mutually_exclusive_group()
    grid.add_argument("--grid", type=int, nargs=3, metavar=("NX", "NY", "NZ"), help="grid points along a, b, c")
    grid.add_argument("--spacing", type=float, default=None, help="largest point spacing in Angstrom (default 0.1)")
    grid.add_argument(
        "--like",
        help=(
            "copy the grid of this CHGCAR and, when it holds the same atoms in the same order, its augmentation "
            "block and electron count (a VASP ICHARG=1 start)"
        ),
    )
    grid.add_argument(
        "--qe-save",
        metavar="OUTDIR/PREFIX.save",
        help=(
            "write into this pw.x save folder of the same structure, on its FFT grid and G-vectors, for "
            "startingpot='file' (docs/scf-start.md)"
        ),
    )
    p.add_argument(
        "--format", choices=["chgcar", "cube"], default=None, help="output format (default: from the extension)"
    )
    p.add_argument(
        "--electrons",
        "--normalize",
        dest="normalize",
        type=float,
        default=None,
        metavar="N",
        help=(
            "rescale the density to integrate to N electrons (default: the reference's count with --like of the "
            "same atoms or --qe-save, else no rescaling)"
        ),
    )
    p.add_argument(
        "--spin-model",
        default=None,
        help="a model of the magnetization (trained on convert --channel magnetization): writes a spin-polarised CHGCAR",
    )
    p.add_argument(
        "--std",
        default=None,
        metavar="OUT",
        help="several models: write the committee's per-point standard deviation (e/A^3) to OUT (CHGCAR, or cube by extension)",
    )
    p.add_argument("--elements", nargs="+", default=None, help="species for VASP 4 structure files")
    p.add_argument(
        "--index",
        default=None,
        help="trajectories: frames to predict, ASE style (5, -1, 0:100:10; default all); "
        "several frames are written as OUT_0000, OUT_0001, ... (the frame number before the extension)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument(
        "--slab-points",
        type=int,
        default=None,
        help="grid points computed and written at a time (default 2^20; under MPI ~1/4 of a rank's share): less = less memory",
    )
    _add_evaluation_options(p)

    i = sub.add_parser("input", help="write the recommended input.json for dp train on converted data")
    i.add_argument(
        "data", nargs="+", help="data folders written by dp-charge convert (deepmd/npy systems, searched recursively)"
    )
    i.add_argument("-o", "--output", default="input.json", help="input file to write (default input.json)")
    length = i.add_mutually_exclusive_group()
    length.add_argument("--steps", type=int, default=None, help="training steps (default 8000)")
    length.add_argument(
        "--minutes",
        type=float,
        default=None,
        help="size the run for this training time on this machine (times a short dp train first)",
    )
    i.add_argument("--rcut", type=float, default=5.0, help="cutoff radius in Angstrom (default 5)")
    i.add_argument(
        "--precision",
        choices=["float64", "float32"],
        default="float64",
        help="network precision (float32: faster, slightly less accurate)",
    )
    i.add_argument("--seed", type=int, default=1, help="random seed of the networks and the training")

    t = sub.add_parser("test", help="accuracy of a model against DFT grids or ghost-point npy systems")
    t.add_argument(
        "model", help="frozen model from dp freeze (model.pb); further leading *.pb arguments make a committee"
    )
    t.add_argument("data", nargs="+", help="CHGCAR/cube files and/or deepmd/npy system folders (after the model(s))")
    t.add_argument("--json", help="write all metrics to this JSON file")
    t.add_argument("--plot", help="write a parity plot (png, pdf, svg), one colour per input")
    t.add_argument("--log", action="store_true", help="parity plot on symmetric-log axes (vacuum, molecules)")
    t.add_argument("--slice", help="grid inputs: write maps DFT | model | error of a plane of the first one")
    t.add_argument(
        "--axis",
        default="c",
        help="lattice vector normal to the --slice plane and along the --planar-average (a, b or c; default c)",
    )
    t.add_argument(
        "--slice-at",
        type=float,
        default=None,
        metavar="A",
        help="height of the --slice plane along --axis, Angstrom (default: middle of the cell)",
    )
    t.add_argument(
        "--planar-average",
        default=None,
        metavar="OUT",
        help="grid inputs: plot the planar averages of DFT and model along --axis for the first one (OUT.png and numbers in OUT.dat)",
    )
    t.add_argument(
        "--diff",
        default=None,
        metavar="OUT",
        help="grid inputs: write model - DFT as a CHGCAR (or .cube) to open in VESTA; several inputs: OUT_0000, OUT_0001, ...",
    )
    t.add_argument("--label", default=None, help="npy label name (default: density, else atom_ener)")
    t.add_argument(
        "--channel",
        default="total",
        help="CHGCAR block to score against: total (default) or magnetization (for a spin model)",
    )
    t.add_argument("--elements", nargs="+", default=None, help="species for VASP 4 files")
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_evaluation_options(t)

    s = sub.add_parser(
        "select", help="rank candidate structures by committee deviation; write the most uncertain as POSCARs"
    )
    s.add_argument(
        "candidates", nargs="+", help="structure files ASE reads (every frame of extxyz, XDATCAR, .traj) or CHGCAR/cube"
    )
    s.add_argument("--models", nargs="+", required=True, help="two or more frozen models (a committee)")
    s.add_argument("-n", type=int, required=True, dest="count", metavar="K", help="how many structures to select")
    s.add_argument("-o", "--output", required=True, help="new folder: 001/POSCAR ... K/POSCAR and ranking.txt")
    s.add_argument("--spacing", type=float, default=0.3, help="grid spacing (A) of the deviation grid (default 0.3)")
    s.add_argument(
        "--criterion",
        choices=["mean", "max"],
        default="mean",
        help="rank by the mean (default) or the max of the per-point deviation",
    )
    s.add_argument("--elements", nargs="+", default=None, help="species for VASP 4 files")
    _add_evaluation_options(s)
    return parser


def _check_evaluation_options(args) -> None:
    """Every numeric option of predict/test, checked before TensorFlow is imported."""
    from deepmd_charge.grid import check_shape

    if args.threads is not None and args.threads <= 0:
        raise InputError("--threads", f"must be a positive number of threads, got {args.threads}")
    if getattr(args, "grid", None) is not None:
        check_shape(args.grid)
    if getattr(args, "spacing", None) is not None and not (np.isfinite(args.spacing) and args.spacing > 0):
        raise InputError("--spacing", f"must be a positive length in Angstrom, got {args.spacing}")
    if getattr(args, "normalize", None) is not None and not (np.isfinite(args.normalize) and args.normalize > 0):
        raise InputError("--electrons", f"needs a positive electron count, got {args.normalize}")
    if getattr(args, "slab_points", None) is not None and args.slab_points <= 0:
        raise InputError("--slab-points", f"must be positive, got {args.slab_points}")
    if args.dev_scale is not None:
        from deepmd_charge.committee import check_dev_scale, split_models

        check_dev_scale(args.dev_scale, "--dev-scale")
        if args.command == "predict":
            n_models = len(args.model)
        elif args.command == "test":
            n_models = len(split_models([args.model] + args.data)[0])
        else:
            n_models = len(args.models)
        if n_models < 2:
            raise InputError("--dev-scale", "scales a committee's deviation: give two or more models")


def _setup_threads(threads):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if threads:
        for var in ("OMP_NUM_THREADS", "DP_INTRA_OP_PARALLELISM_THREADS"):
            os.environ[var] = str(threads)
        os.environ["DP_INTER_OP_PARALLELISM_THREADS"] = "1"


def cmd_convert(args) -> int:
    from deepmd_charge.convert import convert_files

    if args.format == "grid" or any(Path(f).is_dir() for f in args.files):
        return _convert_grid_layout(args)
    r = convert_files(
        args.files,
        args.output,
        points_per_frame=args.points_per_frame,
        points=args.points,
        frames=args.frames,
        sampling=args.sampling,
        seed=args.seed,
        ghost=args.ghost,
        channel=args.channel,
        elements=args.elements,
        overwrite=args.overwrite,
    )
    k = r.points_per_frame
    if r.frames < r.wanted:
        print(f"note: the smallest grid allows {r.frames} frames of {k} points per file (asked {r.wanted})")
    for source, formula, shape, electrons in r.inputs:
        print(
            f"{source}: {formula}, grid {'x'.join(map(str, shape))}, {electrons:.4f} electrons, {r.channel} -> "
            f"{r.frames} frames x {k} points"
        )
    for w in r.written:
        print(f"wrote {w}")
    names = r.type_map
    print(
        f'in input.json: "type_map": {json.dumps(names)}, descriptor "sel": [..., 0] (0 for {names[-1]}), "systems": "{r.output}"'
    )
    return 0


def _convert_grid_layout(args) -> int:
    """convert --format grid (grid files -> DeePMD-kit's grid layout), or grid-layout folders ->
    ghost-point frames."""
    from deepmd_charge.convert import files_to_grid_layout, grid_layout_to_frames

    if args.format == "grid":
        r = files_to_grid_layout(
            args.files,
            args.output,
            points=args.frames * args.points_per_frame if args.frames is not None else args.points,
            sampling=args.sampling,
            seed=args.seed,
            channel=args.channel,
            elements=args.elements,
            ghost=args.ghost,
            overwrite=args.overwrite,
        )
        for source, formula, shape in r["inputs"]:
            print(f"{source}: {formula}, grid {'x'.join(map(str, shape))} -> {r['points']} points ({args.channel})")
    else:
        r = grid_layout_to_frames(
            args.files, args.output, points_per_frame=args.points_per_frame, seed=args.seed, overwrite=args.overwrite
        )
        print(f"{len(args.files)} grid-layout folder(s) -> {r['frames']} frames x {args.points_per_frame} points")
    for w in r["written"]:
        print(f"wrote {w}")
    return 0


def cmd_input(args) -> int:
    from deepmd_charge import recipe

    check_writable(args.output)
    if args.minutes is not None and not (np.isfinite(args.minutes) and args.minutes > 0):
        raise InputError("--minutes", f"must be a positive training time, got {args.minutes}")
    jdata = recipe.recommended_input(
        args.data,
        steps=recipe.STEPS if args.steps is None else args.steps,
        rcut=args.rcut,
        precision=args.precision,
        seed=args.seed,
    )
    if args.minutes is not None:
        per_step = recipe.seconds_per_step(jdata)
        steps = max(100, int(args.minutes * 60 / per_step) // 100 * 100)
        print(f"timing: {per_step:.4f} s per step on this machine -> {steps} steps for {args.minutes:g} minutes")
        recipe.with_steps(jdata, steps)  # the data were read once, above
    from deepmd_charge.io.files import atomic_write

    with atomic_write(args.output) as fh:
        json.dump(jdata, fh, indent=2)
        fh.write("\n")
    model = jdata["model"]
    print(
        f"wrote {args.output}: type_map {model['type_map']}, sel {model['descriptor']['sel']}, "
        f"{jdata['training']['numb_steps']} steps, lr {jdata['learning_rate']['start_lr']:g} -> "
        f"{jdata['learning_rate']['stop_lr']:g} at the last step"
    )
    print(f"next: dp train {args.output} && dp freeze -o model.pb")
    return 0


def _load_model(path, threads, plain_graph=False, cache=None):
    """A DeepCharge; with a `cache` dict (the frames of a trajectory) each model is loaded once."""
    from deepmd_charge.predict import DeepCharge

    key = (str(path), threads, plain_graph)
    if cache is not None and key in cache:
        return cache[key]
    dc = DeepCharge(path, threads=threads, tabulate=not plain_graph)
    if cache is not None:
        cache[key] = dc
    return dc


def cmd_predict(args) -> int:
    from deepmd_charge.io.structure import is_cube, read_structure
    from deepmd_charge.parallel import mpi_comm, slabs_in_order

    if isinstance(args.model, list):  # from the command line (a trajectory's frames come back with one model)
        if len(args.model) > 1 or args.std:
            return _cmd_predict_committee(args)
        args.model = args.model[0]
    comm = mpi_comm()
    rank = comm.Get_rank() if comm else 0
    if args.qe_save:
        return _predict_qe_save(args)
    if not args.output:
        raise InputError("predict", "give an output file with -o (or a pw.x save folder with --qe-save)")
    fmt = args.format or ("cube" if is_cube(args.output) else "chgcar")
    check_writable(args.output)  # before any work: a late failure would also strand MPI ranks
    # a file that may hold several frames (extxyz, XDATCAR, .traj): every frame, one output each
    from deepmd_charge.trajectory import may_hold_frames, predict_frames

    atoms = getattr(args, "atoms", None)  # set for each frame of a trajectory
    trajectory = atoms is None and may_hold_frames(args.structure) and Path(args.structure).is_file()
    if atoms is None and not trajectory:
        atoms = read_structure(args.structure, elements=args.elements)
    if comm and not args.plain_graph:
        # first use on this machine: one rank builds the prediction kernel, the others wait and load
        # it, instead of every rank compiling the same file (about 20 s of every core)
        from deepmd_charge.tf.kernel import load_kernel

        if rank == 0:
            load_kernel()
        comm.Barrier()
    if trajectory:
        return predict_frames(args, cmd_predict, _load_model, rank=rank)
    cache = getattr(args, "model_cache", None)
    dc = _load_model(args.model, args.threads, args.plain_graph, cache=cache)
    dc.check_structure(atoms, args.structure)
    models = [dc]
    if args.spin_model:
        if fmt == "cube":
            raise InputError("--spin-model", "writes a spin-polarised CHGCAR; a cube file holds one density")
        models.append(_load_model(args.spin_model, args.threads, args.plain_graph, cache=cache))
        models[1].check_structure(atoms, args.structure)
    trailers, shape, electrons = _reference(args, atoms, len(models), fmt, speak=rank == 0)
    shape = dc.grid_shape(atoms, shape, args.spacing)
    progress = not args.quiet
    if comm:
        streams = [slabs_in_order(m, atoms, shape, comm, progress, args.slab_points) for m in models]
    else:
        from deepmd_charge.predict import SLAB_POINTS

        streams = [
            m.iter_slabs(atoms, shape, slab_points=args.slab_points or SLAB_POINTS, progress=progress) for m in models
        ]
    if rank != 0:
        for stream in streams:  # compute and send this rank's share, block after block
            for _ in stream:
                pass
        return 0
    start = time.perf_counter()
    from deepmd_charge.predict import write_prediction

    integrals = write_prediction(
        args.output, atoms, shape, streams, fmt=fmt, trailers=trailers, normalize=electrons, model_name=args.model
    )
    count = integrals[0]
    elapsed = time.perf_counter() - start
    npts = int(np.prod(shape)) * len(models)
    ranks = f" on {comm.Get_size()} MPI ranks" if comm else ""
    how = "tabulated networks" if models[0].tabulated else f"plain graph: {models[0].why_not_tabulated}"
    print(
        f"grid {'x'.join(map(str, shape))} ({npts} points) in {elapsed:.1f} s{ranks}, {npts / elapsed:,.0f} points/s ({how})"
    )
    print(f"electrons: {count:.6f}")
    if len(integrals) > 1:
        print(f"magnetization: {integrals[1]:.6f} muB")
    if electrons is not None:
        print(f"normalized to {electrons:g} electrons (factor {electrons / count:.6f})")
    print(f"wrote {args.output}")
    return 0


def _predict_qe_save(args) -> int:
    """--qe-save: the prediction replaces the density of a pw.x save folder (scf_start.py)."""
    from deepmd_charge.io.structure import read_structure
    from deepmd_charge.parallel import mpi_comm
    from deepmd_charge.scf_start import predict_into_qe_save

    for opt, given in (("-o", args.output), ("--format", args.format), ("--slab-points", args.slab_points)):
        if given:
            raise InputError("--qe-save", f"writes into the save folder on pw.x's own grid; drop {opt}")
    comm = mpi_comm()
    if comm and comm.Get_size() > 1:
        raise InputError("--qe-save", "runs on one process; start it without mpiexec")
    atoms = read_structure(args.structure, elements=args.elements)
    models = [_load_model(args.model, args.threads, args.plain_graph)]
    if args.spin_model:
        models.append(_load_model(args.spin_model, args.threads, args.plain_graph))
    for m in models:
        m.check_structure(atoms, args.structure)
    r = predict_into_qe_save(
        models, atoms, args.qe_save, args.structure, electrons=args.normalize, progress=not args.quiet
    )
    npts = int(np.prod(r.fft_grid)) * len(models)
    print(f"pw.x FFT grid {'x'.join(map(str, r.fft_grid))} ({npts} points), {r.ngm} G-vectors, in {r.seconds:.1f} s")
    print(f"electrons: {r.electrons_predicted:.6f} predicted, normalized to {r.electrons:.6f}")
    if r.magnetization is not None:
        print(f"magnetization: {r.magnetization:.6f} muB")
    print(f"wrote {r.density_file} (original kept as {r.backup}); run pw.x with startingpot = 'file'")
    return 0


def _reference(args, atoms, nblocks: int, fmt: str, speak: bool = True):
    """--like and --electrons for one model or a committee: (trailers, grid shape, electron count or
    None). The reference gives its grid, and its augmentation block and electron count when it
    holds the same atoms (a VASP ICHARG=1 start); the notes are printed when `speak`."""
    trailers, shape, electrons = [""] * nblocks, args.grid, args.normalize
    if args.like:
        from deepmd_charge.grid import check_same_cell
        from deepmd_charge.io.structure import read_volumetric
        from deepmd_charge.scf_start import vasp_reference

        # a trajectory reads the reference once (args.like_data)
        like = getattr(args, "like_data", None) or read_volumetric(args.like, elements=args.elements)
        shape = like.shape
        check_same_cell(atoms.cell[:], like.atoms.cell[:], shape, args.like)
        ref = vasp_reference(like, atoms, args.like, nblocks)
        trailers = ref.trailers
        electrons = electrons if electrons is not None else ref.electrons
        if ref.note and speak:
            print(ref.note)
    if electrons is not None and electrons <= 0:
        raise InputError("--electrons", f"needs a positive electron count, got {electrons}")
    if fmt == "chgcar" and not trailers[0].strip() and speak:
        from deepmd_charge.scf_start import NO_AUGMENTATION_NOTE

        print(NO_AUGMENTATION_NOTE.format(out=args.output))
    return trailers, shape, electrons


def _cmd_predict_committee(args) -> int:
    """Several models: the committee mean is the density, --std writes the per-point deviation."""
    from deepmd_charge.committee import Committee, write_committee_prediction
    from deepmd_charge.io.structure import is_cube, read_structure
    from deepmd_charge.parallel import mpi_comm

    if len(args.model) < 2:
        raise InputError("--std", "needs a committee: give two or more models before the structure")
    if args.qe_save:
        raise InputError("--qe-save", "takes one model, not a committee")
    if not args.output:
        raise InputError("predict", "give an output file with -o")
    if mpi_comm():
        raise InputError(
            "predict", "a committee of models does not run under MPI; run it without mpiexec (one model runs under MPI)"
        )
    if args.spin_model:
        raise InputError("--spin-model", "cannot be combined with a committee of models")
    fmt = args.format or ("cube" if is_cube(args.output) else "chgcar")
    for path in (args.output, args.std):
        if path:
            check_writable(path)
    atoms = read_structure(args.structure, elements=args.elements)
    com = Committee(args.model, threads=args.threads, tabulate=not args.plain_graph, dev_scale=args.dev_scale or 1.0)
    com.check_structure(atoms, args.structure)
    (trailer,), shape, electrons = _reference(args, atoms, 1, fmt)
    shape = com.grid_shape(atoms, shape, args.spacing)
    start = time.perf_counter()
    from deepmd_charge.predict import SLAB_POINTS

    slabs = com.iter_slabs(
        atoms, shape, slab_points=args.slab_points or SLAB_POINTS, progress=not args.quiet, with_std=True
    )
    res = write_committee_prediction(
        args.output,
        atoms,
        shape,
        slabs,
        fmt=fmt,
        std_output=args.std,
        std_fmt="cube" if args.std and is_cube(args.std) else "chgcar",
        trailer=trailer,
        title=f"{atoms.get_chemical_formula()} deepmd-charge committee mean of {len(com)} models",
        normalize=electrons,
    )
    elapsed = time.perf_counter() - start
    npts = int(np.prod(shape)) * len(com)
    print(
        f"grid {'x'.join(map(str, shape))} x {len(com)} models ({npts} points) in {elapsed:.1f} s, {npts / elapsed:,.0f} points/s"
    )
    print(f"electrons: {res['electrons']:.6f}")
    if electrons is not None:
        print(f"normalized to {electrons:g} electrons (factor {electrons / res['electrons']:.6f})")
    print(
        f"committee deviation (std over {len(com)} models, e/A^3): mean {res['dev_mean']:.3e}, max {res['dev_max']:.3e}"
    )
    print(
        f"wrote {args.output}" + (f" (committee mean) and {args.std} (deviation)" if args.std else " (committee mean)")
    )
    return 0


def _fmt_row(name, m):
    row = f"{name:40.40s} {m['points']:>9d} {m['mae']:10.3e} {m['rmse']:10.3e} {100 * m['nmae']:7.3f}% "
    row += f"{m['max_abs_err']:10.3e} {m['r2']:8.5f}"
    if "electrons_ref" in m:
        row += f"  {m['electrons_pred']:.4f} vs {m['electrons_ref']:.4f}"
        if abs(m["electrons_ref"]) > 1e-6:  # a magnetisation may integrate to zero
            row += f" ({100 * (m['electrons_pred'] - m['electrons_ref']) / m['electrons_ref']:+.3f}%)"
    return row


def cmd_test(args) -> int:
    import numpy as np

    from deepmd_charge.evaluate import (
        check_channel,
        evaluate_system,
        evaluate_volumetric,
        is_npy_system,
        reference_warnings,
        table_header,
    )
    from deepmd_charge.metrics import score

    for path in (args.json, args.plot, args.slice, args.planar_average, args.diff):
        if path:
            check_writable(path)
    for option, path in (("--slice", args.slice), ("--planar-average", args.planar_average), ("--diff", args.diff)):
        if path and all(is_npy_system(item) for item in args.data if not str(item).endswith(".pb")):
            raise InputError(option, "needs at least one CHGCAR/cube input")
    if args.slice or args.planar_average:
        from deepmd_charge.plot import axis_index

        axis = axis_index(args.axis)
    from deepmd_charge.committee import load_models, split_models

    models, data = split_models([args.model] + args.data)
    dc = load_models(models, args.threads, not args.plain_graph, dev_scale=args.dev_scale or 1.0)
    results = []
    for item in data:
        if is_npy_system(item):
            results.append(evaluate_system(dc, item, label=args.label, progress=not args.quiet))
        else:
            results.append(
                evaluate_volumetric(dc, item, elements=args.elements, progress=not args.quiet, channel=args.channel)
            )
            check_channel(results[-1], args.model, args.channel)
            results[-1]["warnings"] = reference_warnings(results[-1], args.channel)
    print(table_header(args.channel))
    for r in results:
        print(_fmt_row(r["name"], r["metrics"]))
    for r in results:
        for warning in r.get("warnings", []):
            print(f"dp-charge test: warning: {r['name']}: {warning}", file=sys.stderr)
    overall = score(
        np.concatenate([r["pred"].ravel() for r in results]), np.concatenate([r["ref"].ravel() for r in results])
    )
    if len(results) > 1:
        print(_fmt_row("overall", overall))
    if len(models) > 1:
        from deepmd_charge.committee import format_uncertainty
        from deepmd_charge.metrics import uncertainty_score

        overall.update(
            uncertainty_score(*(np.concatenate([r[k].ravel() for r in results]) for k in ("pred", "ref", "std")))
        )
        for m in [r["metrics"] for r in results if "std" in r] + [overall]:
            m["dev_scale_fit"] *= args.dev_scale or 1.0  # the factor to pass, relative to the raw deviation
        print(format_uncertainty(results, overall, len(models), args.dev_scale or 1.0))
    if args.json:
        from deepmd_charge.io.files import atomic_write

        with atomic_write(args.json) as fh:
            inputs = [{"name": r["name"], **r["metrics"], "warnings": r.get("warnings", [])} for r in results]
            json.dump(
                {
                    "model": models[0] if len(models) == 1 else models,
                    **({"dev_scale": args.dev_scale or 1.0} if len(models) > 1 else {}),
                    "channel": args.channel,
                    "inputs": inputs,
                    "overall": overall,
                },
                fh,
                indent=2,
            )
        print(f"wrote {args.json}")
    if args.plot:
        from deepmd_charge.plot import parity_plot

        parity_plot(args.plot, {r["name"]: (r["ref"], r["pred"]) for r in results}, log=args.log)
        print(f"wrote {args.plot}")
    grids = [r for r in results if "vol" in r]
    if args.slice:
        from deepmd_charge.plot import short_names, slice_plot

        first = grids[0]
        slice_plot(
            args.slice,
            first["ref"],
            first["pred"],
            atoms=first["vol"].atoms,
            axis=axis,
            position=args.slice_at,
            title=short_names([first["name"]])[0],
            std=first.get("std"),
            std_label=f"committee deviation x {args.dev_scale:g}" if args.dev_scale else "committee deviation",
        )
        print(f"wrote {args.slice}")
    if args.planar_average:
        from deepmd_charge.plot import planar_average_plot, short_names

        dat = planar_average_plot(
            args.planar_average,
            grids[0]["ref"],
            grids[0]["pred"],
            grids[0]["vol"].atoms,
            axis=axis,
            title=short_names([grids[0]["name"]])[0],
        )
        print(f"wrote {args.planar_average} and {dat}")
    if args.diff:
        from deepmd_charge.evaluate import write_difference

        for path, result in zip(write_difference(args.diff, grids), grids):
            print(f"wrote {path} (model - DFT for {result['name']})")
    return 0


def cmd_select(args) -> int:
    from deepmd_charge.committee import Committee
    from deepmd_charge.select import format_ranking, rank_candidates, read_candidates, write_selection

    if len(args.models) < 2:
        raise InputError("--models", "needs two or more models: one model has no deviation")
    if args.count <= 0:
        raise InputError("-n", f"must be a positive number of structures, got {args.count}")
    if args.spacing <= 0:
        raise InputError("--spacing", f"must be a positive length, got {args.spacing}")
    candidates = read_candidates(args.candidates, elements=args.elements)
    if args.count > len(candidates):
        raise InputError("-n", f"asks for {args.count} structures but the candidates hold only {len(candidates)}")
    com = Committee(args.models, threads=args.threads, tabulate=not args.plain_graph, dev_scale=args.dev_scale or 1.0)
    ranked = rank_candidates(com, candidates, spacing=args.spacing, criterion=args.criterion)
    print(format_ranking(ranked, args.criterion, args.count))
    written = write_selection(ranked, args.count, args.output, criterion=args.criterion)
    print(f"wrote {len(written)} POSCARs (the * rows) and ranking.txt to {args.output}")
    return 0


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _setup_threads(getattr(args, "threads", None))
    try:
        if args.command in ("predict", "test", "select"):
            _check_evaluation_options(args)  # a mistake costs one line, before any model or kernel work
            from deepmd_charge.tf.backend import import_backend

            import_backend()
        return {
            "convert": cmd_convert,
            "input": cmd_input,
            "predict": cmd_predict,
            "test": cmd_test,
            "select": cmd_select,
        }[args.command](args)
    except InputError as exc:
        print(f"dp-charge {args.command}: error: {_in_cli_words(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("dp-charge: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into `head` and the like: stop quietly, as Unix tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


#: library errors name parameters ("grid shape") and give advice in Python terms; dp-charge names
#: its options instead
_OPTION_OF = {
    "grid shape": "--grid",
    "spacing": "--spacing",
    "points": "--points",
    "points per frame": "--points-per-frame",
    "frames": "--frames",
    "sampling": "--sampling",
    "criterion": "--criterion",
    "models": "--models",
    "index": "--index",
    "electrons": "--electrons",
    "steps": "--steps",
    "rcut": "--rcut",
    "minutes": "--minutes",
}
_ADVICE = (
    (
        "give the grid shape NX NY NZ to keep the point counts, or a spacing",
        "use --grid NX NY NZ to keep the point counts, or --spacing",
    ),
    (
        "replace it with overwrite=True, or choose another output folder",
        "add --overwrite to replace it, or choose another --output",
    ),
    ("choose another output folder", "choose another --output"),
    ("choose another ghost name", "choose another --ghost name"),
    ("the grid layout is written from CHGCAR/cube files", "--format grid converts CHGCAR/cube files"),
    (
        "give the elements (e.g. elements=['Si', 'O']) or put",
        "give the elements with --elements (e.g. --elements Si O) or put",
    ),
    ("from the given elements", "from --elements"),
    ("in the given elements", "in --elements"),
    ("give a magnetisation model too", "give a magnetisation model with --spin-model"),
    ("drop the magnetisation model", "drop --spin-model"),
    ("convert them with one ghost name", "convert them with one --ghost"),
)


def _in_cli_words(exc: InputError) -> str:
    problem = exc.problem
    for library, cli in _ADVICE:
        problem = problem.replace(library, cli)
    return f"{_OPTION_OF.get(exc.source, exc.source)}: {problem}"


def console_main() -> None:
    """The `dp-charge` command: main(), then exit without the native libraries' unload chatter."""
    sys.exit(main())  # tf/backend.py holds back the native libraries' start-up and unload chatter


if __name__ == "__main__":
    console_main()
