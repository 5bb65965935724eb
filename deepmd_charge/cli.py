"""dp-charge convert | predict | test: parse arguments, call the library, print results."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from deepmd_charge.errors import InputError
from deepmd_charge.io.files import check_writable


def _add_evaluation_options(p):
    p.add_argument("--threads", type=int, default=None, help="CPU threads for TensorFlow (default: OMP_NUM_THREADS or all cores)")
    p.add_argument(
        "--plain-graph",
        action="store_true",
        help="evaluate the frozen graph as it is instead of its tabulated networks (same density to ~1e-12 in "
        "float64, several times slower; docs/large-systems.md)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dp-charge",
        description="Deep Charge: learn DFT charge densities with DeePMD-kit and predict them on any grid.",
        epilog="Train between convert and predict with DeePMD-kit itself: dp train input.json; dp freeze -o model.pb",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    c = sub.add_parser("convert", help="CHGCAR/cube grids -> ghost-point training frames (deepmd/npy)")
    c.add_argument("files", nargs="+", help="CHGCAR, CHG, AECCAR, PARCHG (plain/.gz/.bz2/.xz) or .cube files")
    c.add_argument("-o", "--output", required=True, help="output folder: a deepmd/npy system (one set per input file)")
    c.add_argument("--points-per-frame", type=int, default=200, help="grid points (ghost atoms) per frame (default 200)")
    g = c.add_mutually_exclusive_group()
    g.add_argument("--points", type=int, default=100_000, help="grid points sampled per input file (default 100000, capped by the grid)")
    g.add_argument("--frames", type=int, default=None, help="frames per input file (instead of --points)")
    c.add_argument("--sampling", choices=["uniform", "weighted"], default="uniform", help="uniform: all points alike; weighted: favour dense regions")
    c.add_argument("--seed", type=int, default=None, help="random seed for reproducible sampling")
    c.add_argument("--ghost", default="X", help="type name of grid points; must be last in type_map (default X)")
    c.add_argument("--channel", default="total", help="density block to learn: total (default) or magnetization")
    c.add_argument("--elements", nargs="+", default=None, help="species for VASP 4 files without a species line")

    p = sub.add_parser("predict", help="density of a structure on a grid, written as CHGCAR or cube")
    p.add_argument("model", nargs="+", help="frozen model from dp freeze (model.pb); several: a committee, its mean is written")
    p.add_argument("structure", help="any file ASE reads (POSCAR, CIF, extxyz, ...) or a CHGCAR/cube")
    p.add_argument("-o", "--output", required=True, help="output file: CHGCAR-style (default; .gz compresses) or .cube")
    grid = p.add_mutually_exclusive_group()
    grid.add_argument("--grid", type=int, nargs=3, metavar=("NX", "NY", "NZ"), help="grid points along a, b, c")
    grid.add_argument("--spacing", type=float, default=None, help="largest point spacing in Angstrom (default 0.1)")
    grid.add_argument("--like", help="copy the grid (and augmentation block) of this CHGCAR")
    p.add_argument("--format", choices=["chgcar", "cube"], default=None, help="output format (default: from the extension)")
    p.add_argument("--normalize", type=float, default=None, metavar="ELECTRONS", help="rescale the density to integrate to this electron count")
    p.add_argument("--spin-model", default=None, help="a model of the magnetization (trained on convert --channel magnetization): writes a spin-polarised CHGCAR")
    p.add_argument("--std", default=None, metavar="OUT", help="several models: write the committee's per-point standard deviation (e/A^3) to OUT (CHGCAR, or cube by extension)")
    p.add_argument("--elements", nargs="+", default=None, help="species for VASP 4 structure files")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--slab-points", type=int, default=None, help="grid points computed and written at a time (default 2^20; under MPI ~1/4 of a rank's share): less = less memory")
    _add_evaluation_options(p)

    t = sub.add_parser("test", help="accuracy of a model against DFT grids or ghost-point npy systems")
    t.add_argument("model", help="frozen model from dp freeze (model.pb); further leading *.pb arguments make a committee")
    t.add_argument("data", nargs="+", help="CHGCAR/cube files and/or deepmd/npy system folders (after the model(s))")
    t.add_argument("--json", help="write all metrics to this JSON file")
    t.add_argument("--plot", help="write a parity plot (png, pdf, svg)")
    t.add_argument("--slice", help="CHGCAR inputs: write a slice map DFT | model | error of the first one")
    t.add_argument("--label", default=None, help="npy label name (default: density, else atom_ener)")
    t.add_argument("--channel", default="total", help="CHGCAR block to score against: total (default) or magnetization (for a spin model)")
    t.add_argument("--elements", nargs="+", default=None, help="species for VASP 4 files")
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_evaluation_options(t)

    s = sub.add_parser("select", help="rank candidate structures by committee deviation; write the most uncertain as POSCARs")
    s.add_argument("candidates", nargs="+", help="structure files ASE reads (every frame of extxyz, XDATCAR, .traj) or CHGCAR/cube")
    s.add_argument("--models", nargs="+", required=True, help="two or more frozen models (a committee)")
    s.add_argument("-n", type=int, required=True, dest="count", metavar="K", help="how many structures to select")
    s.add_argument("-o", "--output", required=True, help="new folder: 001/POSCAR ... K/POSCAR and ranking.txt")
    s.add_argument("--spacing", type=float, default=0.3, help="grid spacing (A) of the deviation grid (default 0.3)")
    s.add_argument("--criterion", choices=["mean", "max"], default="mean", help="rank by the mean (default) or the max of the per-point deviation")
    s.add_argument("--elements", nargs="+", default=None, help="species for VASP 4 files")
    _add_evaluation_options(s)
    return parser


def _setup_threads(threads):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if threads:
        for var in ("OMP_NUM_THREADS", "DP_INTRA_OP_PARALLELISM_THREADS"):
            os.environ[var] = str(threads)
        os.environ["DP_INTER_OP_PARALLELISM_THREADS"] = "1"


def cmd_convert(args) -> int:
    import dpdata

    from deepmd_charge.convert import frames_from_volumetric, usable_grid, write_system
    from deepmd_charge.io.dpdata import register_density
    from deepmd_charge.io.structure import read_volumetric

    register_density()
    out = Path(args.output)
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / "type.raw").exists())):
        raise InputError(out, "exists and is not a deepmd/npy system; choose another --output")
    vols = [read_volumetric(f, elements=args.elements) for f in args.files]
    k = args.points_per_frame
    if k <= 0:
        raise InputError("--points-per-frame", f"must be positive, got {k}")
    wanted = args.frames if args.frames is not None else max(1, args.points // k)
    if wanted <= 0:
        raise InputError("--frames", f"must be positive, got {wanted}")
    # equal frames per file, so that each file is exactly one set of the system
    grids = [usable_grid(v) for v in vols]  # once per file: sizing and sampling both need it
    frames = min([wanted] + [usable.size // k for _, usable in grids])
    if frames < wanted:
        print(f"note: the smallest grid allows {frames} frames of {k} points per file (asked {wanted})")
    systems = []
    for i, (vol, grid) in enumerate(zip(vols, grids)):
        seed = None if args.seed is None else args.seed + i
        data = frames_from_volumetric(
            vol, points_per_frame=k, frames=frames, sampling=args.sampling, seed=seed, ghost=args.ghost, channel=args.channel, grid=grid
        )
        systems.append(dpdata.System(data=data))
        print(
            f"{vol.source}: {vol.atoms.get_chemical_formula()}, grid {'x'.join(map(str, vol.shape))}, "
            f"{vol.electrons():.4f} electrons, {args.channel} -> {frames} frames x {k} points"
        )
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    except OSError as exc:
        raise InputError(out, f"cannot write ({exc.strerror or exc})") from None
    try:
        written = write_system(systems, tmp, set_size=frames)
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise InputError(out, f"cannot write ({exc.strerror or exc})") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    names = systems[0]["atom_names"]
    for w in written:
        print(f"wrote {out / w.relative_to(tmp)}" if w != tmp else f"wrote {out}")
    print(f'in input.json: "type_map": {json.dumps(names)}, descriptor "sel": [..., 0] (0 for {names[-1]}), "systems": "{out}"')
    return 0


def _load_model(path, threads, plain_graph=False):
    from deepmd_charge.predict import DeepCharge

    return DeepCharge(path, threads=threads, tabulate=not plain_graph)


def cmd_predict(args) -> int:
    from deepmd_charge.io.structure import is_cube, read_structure, read_volumetric
    from deepmd_charge.parallel import mpi_comm, slabs_in_order

    if len(args.model) > 1 or args.std:
        return _cmd_predict_committee(args)
    args.model = args.model[0]
    comm = mpi_comm()
    rank = comm.Get_rank() if comm else 0
    fmt = args.format or ("cube" if is_cube(args.output) else "chgcar")
    check_writable(args.output)  # before any work: a late failure would also strand MPI ranks
    atoms = read_structure(args.structure, elements=args.elements)
    if comm and not args.plain_graph:
        # first use on this machine: one rank builds the prediction kernel, the others wait and load
        # it, instead of every rank compiling the same file (about 20 s of every core)
        from deepmd_charge.tf.kernel import load_kernel

        if rank == 0:
            load_kernel()
        comm.Barrier()
    dc = _load_model(args.model, args.threads, args.plain_graph)
    dc.check_structure(atoms, args.structure)
    models = [dc]
    if args.spin_model:
        if fmt == "cube":
            raise InputError("--spin-model", "writes a spin-polarised CHGCAR; a cube file holds one density")
        models.append(_load_model(args.spin_model, args.threads, args.plain_graph))
        models[1].check_structure(atoms, args.structure)
    trailers, shape = [""] * len(models), args.grid
    if args.like:
        like = read_volumetric(args.like, elements=args.elements)
        shape = like.shape
        if like.atoms.get_chemical_symbols() == atoms.get_chemical_symbols():
            trailers = (like.trailers + [""])[: len(models)]
        elif any(t.strip() for t in like.trailers) and rank == 0:
            print(f"note: {args.like} holds other atoms; its augmentation block is not copied")
    shape = dc.grid_shape(atoms, shape, args.spacing)
    if args.normalize is not None and args.normalize <= 0:
        raise InputError("--normalize", f"needs a positive electron count, got {args.normalize}")
    progress = not args.quiet
    if args.slab_points is not None and args.slab_points <= 0:
        raise InputError("--slab-points", f"must be positive, got {args.slab_points}")
    if comm:
        streams = [slabs_in_order(m, atoms, shape, comm, progress, args.slab_points) for m in models]
    else:
        streams = [m.iter_slabs(atoms, shape, slab_points=args.slab_points or 2**20, progress=progress) for m in models]
    if rank != 0:
        for stream in streams:  # compute and send this rank's share, block after block
            for _ in stream:
                pass
        return 0
    start = time.perf_counter()
    integrals = _write_prediction(args, fmt, atoms, shape, streams, trailers)
    count = integrals[0]
    elapsed = time.perf_counter() - start
    npts = int(np.prod(shape)) * len(models)
    ranks = f" on {comm.Get_size()} MPI ranks" if comm else ""
    how = "tabulated networks" if models[0].tabulated else f"plain graph: {models[0].why_not_tabulated}"
    print(f"grid {'x'.join(map(str, shape))} ({npts} points) in {elapsed:.1f} s{ranks}, {npts / elapsed:,.0f} points/s ({how})")
    print(f"electrons: {count:.6f}")
    if len(integrals) > 1:
        print(f"magnetization: {integrals[1]:.6f} muB")
    if args.normalize is not None:
        print(f"normalized to {args.normalize} electrons (factor {args.normalize / count:.6f})")
    print(f"wrote {args.output}")
    return 0


def _cmd_predict_committee(args) -> int:
    """Several models: the committee mean is the density, --std writes the per-point deviation."""
    from deepmd_charge.committee import Committee, write_committee_prediction
    from deepmd_charge.io.structure import is_cube, read_structure, read_volumetric
    from deepmd_charge.parallel import mpi_comm

    if len(args.model) < 2:
        raise InputError("--std", "needs a committee: give two or more models before the structure")
    if mpi_comm():
        raise InputError("predict", "a committee of models does not run under MPI; run it without mpiexec (one model runs under MPI)")
    if args.spin_model:
        raise InputError("--spin-model", "cannot be combined with a committee of models")
    fmt = args.format or ("cube" if is_cube(args.output) else "chgcar")
    for path in (args.output, args.std):
        if path:
            check_writable(path)
    atoms = read_structure(args.structure, elements=args.elements)
    com = Committee(args.model, threads=args.threads, tabulate=not args.plain_graph)
    com.check_structure(atoms, args.structure)
    trailer, shape = "", args.grid
    if args.like:
        like = read_volumetric(args.like, elements=args.elements)
        shape = like.shape
        if like.atoms.get_chemical_symbols() == atoms.get_chemical_symbols():
            trailer = like.trailers[0] if like.trailers else ""
    shape = com.grid_shape(atoms, shape, args.spacing)
    if args.normalize is not None and args.normalize <= 0:
        raise InputError("--normalize", f"needs a positive electron count, got {args.normalize}")
    if args.slab_points is not None and args.slab_points <= 0:
        raise InputError("--slab-points", f"must be positive, got {args.slab_points}")
    start = time.perf_counter()
    slabs = com.iter_slabs(atoms, shape, slab_points=args.slab_points or 2**20, progress=not args.quiet, with_std=True)
    res = write_committee_prediction(
        args.output, atoms, shape, slabs, fmt=fmt, std_output=args.std, std_fmt="cube" if args.std and is_cube(args.std) else "chgcar",
        trailer=trailer, title=f"{atoms.get_chemical_formula()} deepmd-charge committee mean of {len(com)} models", normalize=args.normalize,
    )
    elapsed = time.perf_counter() - start
    npts = int(np.prod(shape)) * len(com)
    print(f"grid {'x'.join(map(str, shape))} x {len(com)} models ({npts} points) in {elapsed:.1f} s, {npts / elapsed:,.0f} points/s")
    print(f"electrons: {res['electrons']:.6f}")
    if args.normalize is not None:
        print(f"normalized to {args.normalize} electrons (factor {args.normalize / res['electrons']:.6f})")
    print(f"committee deviation (std over {len(com)} models, e/A^3): mean {res['dev_mean']:.3e}, max {res['dev_max']:.3e}")
    print(f"wrote {args.output}" + (f" (committee mean) and {args.std} (deviation)" if args.std else " (committee mean)"))
    return 0


def _write_prediction(args, fmt, atoms, shape, streams, trailers) -> list:
    """Write the predicted grid(s); returns each block's integral (electrons, magnetisation)."""
    from deepmd_charge.io.chgcar import write_chgcar
    from deepmd_charge.io.cube import write_cube
    from deepmd_charge.io.stream import write_chgcar_slabs

    volume = atoms.get_volume()
    title = f"{atoms.get_chemical_formula()} deepmd-charge prediction"
    if fmt == "chgcar" and args.normalize is None:
        sums = write_chgcar_slabs(args.output, atoms, shape, list(zip(streams, trailers)), title=title)
        return [s / np.prod(shape) * volume for s in sums]
    grids = []
    for stream in streams:
        rho = np.empty(shape)
        for k0, k1, slab in stream:
            rho[:, :, k0:k1] = slab
        grids.append(rho)
    integrals = [float(g.mean() * volume) for g in grids]
    if args.normalize is not None:
        grids[0] *= args.normalize / integrals[0]
    if fmt == "cube":
        write_cube(args.output, atoms, grids[0], comment=f"deepmd-charge prediction, model {args.model}")
    else:
        write_chgcar(args.output, atoms, grids, trailers=trailers, title=title)
    return integrals


def _fmt_row(name, m):
    row = f"{name:40.40s} {m['points']:>9d} {m['mae']:10.3e} {m['rmse']:10.3e} {100 * m['nmae']:7.3f}% {m['max_abs_err']:10.3e} {m['r2']:8.5f}"
    if "electrons_ref" in m:
        row += f"  {m['electrons_pred']:.4f} vs {m['electrons_ref']:.4f}"
        if abs(m["electrons_ref"]) > 1e-6:  # a magnetisation may integrate to zero
            row += f" ({100 * (m['electrons_pred'] - m['electrons_ref']) / m['electrons_ref']:+.3f}%)"
    return row


def cmd_test(args) -> int:
    import numpy as np

    from deepmd_charge.evaluate import evaluate_system, evaluate_volumetric, is_npy_system
    from deepmd_charge.metrics import score

    for path in (args.json, args.plot, args.slice):
        if path:
            check_writable(path)
    from deepmd_charge.committee import load_models, split_models

    models, data = split_models([args.model] + args.data)
    dc = load_models(models, args.threads, not args.plain_graph)
    results = []
    for item in data:
        if is_npy_system(item):
            results.append(evaluate_system(dc, item, label=args.label, progress=not args.quiet))
        else:
            results.append(evaluate_volumetric(dc, item, elements=args.elements, progress=not args.quiet, channel=args.channel))
    print(f"{'input':40s} {'points':>9s} {'MAE':>10s} {'RMSE':>10s} {'NMAE':>8s} {'max|err|':>10s} {'R^2':>8s}  {'electrons' if args.channel == 'total' else 'moment (muB)'} pred vs DFT  (e/A^3)")
    for r in results:
        print(_fmt_row(r["name"], r["metrics"]))
    overall = score(np.concatenate([r["pred"].ravel() for r in results]), np.concatenate([r["ref"].ravel() for r in results]))
    if len(results) > 1:
        print(_fmt_row("overall", overall))
    if len(models) > 1:
        from deepmd_charge.committee import format_uncertainty
        from deepmd_charge.metrics import uncertainty_score

        overall.update(uncertainty_score(*(np.concatenate([r[k].ravel() for r in results]) for k in ("pred", "ref", "std"))))
        print(format_uncertainty(results, overall, len(models)))
    if args.json:
        from deepmd_charge.io.files import atomic_write

        with atomic_write(args.json) as fh:
            json.dump({"model": models[0] if len(models) == 1 else models, "inputs": [{"name": r["name"], **r["metrics"]} for r in results], "overall": overall}, fh, indent=2)
        print(f"wrote {args.json}")
    if args.plot:
        from deepmd_charge.plot import parity_plot

        parity_plot(args.plot, {r["name"]: (r["ref"], r["pred"]) for r in results})
        print(f"wrote {args.plot}")
    if args.slice:
        from deepmd_charge.plot import slice_plot

        grids = [r for r in results if "vol" in r]
        if not grids:
            raise InputError("--slice", "needs at least one CHGCAR/cube input")
        slice_plot(args.slice, grids[0]["ref"], grids[0]["pred"], title=grids[0]["name"], std=grids[0].get("std"))
        print(f"wrote {args.slice}")
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
    com = Committee(args.models, threads=args.threads, tabulate=not args.plain_graph)
    ranked = rank_candidates(com, candidates, spacing=args.spacing, criterion=args.criterion)
    print(format_ranking(ranked, args.criterion, args.count))
    written = write_selection(ranked, args.count, args.output, criterion=args.criterion)
    print(f"wrote {len(written)} POSCARs (the * rows) and ranking.txt to {args.output}")
    return 0


def _quiet_native_stderr(call):
    """Run `call` with the C-level stderr held back; show it only if `call` raises.

    Loading DeePMD-kit's op library prints CUDA-not-found and TensorFlow start-up lines from C
    code on every run of a CPU-only install; they say nothing useful to a user.
    """
    if os.environ.get("DP_CHARGE_VERBOSE"):
        return call()
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            return call()
        except BaseException:
            os.dup2(saved, 2)
            held.seek(0)
            sys.stderr.write(held.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def _import_backend() -> None:
    import deepmd.tf.env  # noqa: F401  (TensorFlow and DeePMD-kit's op library)


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _setup_threads(getattr(args, "threads", None))
    try:
        if args.command in ("predict", "test", "select"):
            _quiet_native_stderr(_import_backend)
        return {"convert": cmd_convert, "predict": cmd_predict, "test": cmd_test, "select": cmd_select}[args.command](args)
    except InputError as exc:
        print(f"dp-charge {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("dp-charge: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into `head` and the like: stop quietly, as Unix tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


def console_main() -> None:
    """The `dp-charge` command: main(), then exit without the native libraries' unload chatter."""
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    if not os.environ.get("DP_CHARGE_VERBOSE"):
        os.dup2(os.open(os.devnull, os.O_WRONLY), 2)  # CUDA stubs print on unload of a CPU-only install
    sys.exit(code)


if __name__ == "__main__":
    console_main()
