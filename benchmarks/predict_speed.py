"""Prediction speed: grid sizes, system sizes, float64/float32, stock DeePMD-kit, FLOP ceiling.

    python benchmarks/predict_speed.py [--workdir /tmp/speedbench] [--quick] [--ceiling [--rounds N]] [--concurrency] [--stock-large]

1. trains tiny models (100 steps: speed does not depend on training) on the shipped Si8 data with
   the issue's reference size, se_e2_a 16-32-64 / axis 8, rcut 5, fitting 64x3, radial sums
   [16, 32], in float64 and float32;
2. measures a fp32 matmul (TensorFlow, 2048^2) for the machine's FLOP ceiling;
3. for each case runs `dp-charge predict` twice, each in a fresh process (the faster run's
   points/s as the command prints it, prediction and writing; the larger peak RSS);
4. runs stock DeePMD-kit (DeepDOS.eval, all grid points as atoms of one frame) on 100 to 20,000
   points of the Si64 cell, with each model, best of 5 calls per size: the speed-up is over the
   best of these (its small system and small batches are stock's best case); and DeePMD-kit's
   environment op alone, batched as DeepCharge does: the most any network evaluation could reach;
   and the fitting net's first layer alone (its matmul, bias and activation): the environment op
   plus that layer is the ceiling the "fraction of ceiling" column divides by (--ceiling also
   times the same prediction with TensorFlow computing the fitting net, DP_CHARGE_FUSE_FIRST_LAYER=0,
   and ours against the environment op alone: the kernel's own fitting net is faster than
   TensorFlow's first layer in float64, so that ceiling is no longer an upper bound);
5. compares, in one process, the tabulated networks (the default) with the plain frozen graph and
   with `dp compress`ed models: points/s, max |difference|, file size;
and prints markdown tables. FLOP/point counts the multiply-adds of the networks per grid point x 2
(embedding and radial nets, descriptor products, fitting net) over the real neighbours a grid
point of crystalline Si has within rcut on average (26.2), not over all sel slots (40), which
would count the padding too: the fraction of the FLOP ceiling is the conservative one.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from unittest import mock

import numpy as np
from _common import sh

ROOT = Path(__file__).resolve().parents[1]
DFT = ROOT / "examples" / "silicon" / "dft"

MODEL_INPUT = {
    "model": {
        "type_map": ["Si", "X"],
        "descriptor": {
            "type": "se_e2_a",
            "sel": [40, 0],
            "rcut": 5.0,
            "rcut_smth": 0.5,
            "neuron": [16, 32, 64],
            "axis_neuron": 8,
            "seed": 1,
        },
        "fitting_net": {"type": "charge", "neuron": [64, 64, 64], "radial_neuron": [16, 32], "seed": 1},
    },
    "learning_rate": {"type": "exp", "start_lr": 0.005, "stop_lr": 1e-4, "smooth": True},
    "training": {"training_data": {"systems": "data"}, "numb_steps": 100, "disp_freq": 100, "save_freq": 100},
}


def make_models(work: Path) -> dict:
    models = {}
    for prec in ("float64", "float32"):
        d = work / prec
        d.mkdir(parents=True, exist_ok=True)
        inp = json.loads(json.dumps(MODEL_INPUT))
        inp["model"]["descriptor"]["precision"] = prec
        inp["model"]["fitting_net"]["precision"] = prec
        stale = not (d / "input.json").exists() or json.loads((d / "input.json").read_text()) != inp
        if stale or not (d / "model.pb").exists():  # a workdir of another model definition: retrain
            for old in work.glob(f"{prec}-compressed*.pb"):
                old.unlink()
            sh(
                [
                    "dp-charge",
                    "convert",
                    str(DFT / "rattled_a" / "CHGCAR.gz"),
                    "-o",
                    "data",
                    "--overwrite",
                    "--points",
                    "20000",
                    "--seed",
                    "0",
                ],
                d,
            )
            (d / "input.json").write_text(json.dumps(inp))
            sh(["dp", "--tf", "train", "input.json"], d)
            sh(["dp", "--tf", "freeze", "-o", "model.pb"], d)
        models[prec] = d / "model.pb"
    return models


def mean_neighbours(atoms, rcut: float, npoints: int = 20000) -> float:
    """Average number of atoms within rcut of a random point of the (periodic) cell."""
    from scipy.spatial import cKDTree

    from deepmd_charge.grid import periodic_images

    pos, _ = periodic_images(atoms, rcut)
    pts = np.random.default_rng(0).random((npoints, 3)) @ atoms.cell[:]
    return float(np.mean([len(n) for n in cKDTree(pos).query_ball_point(pts, rcut)]))


def flops_per_point(script: dict, nnei: float) -> float:
    desc = script["model"]["descriptor"]
    fit = script["model"]["fitting_net"]
    emb = [1] + list(desc["neuron"])
    m1, m2 = emb[-1], desc["axis_neuron"]
    macs = nnei * sum(a * b for a, b in zip(emb[:-1], emb[1:]))  # embedding net per neighbour slot
    macs += 4 * nnei * m1 + 4 * m1 * m2  # T = R^T G, D = T^T T<
    radial = [1] + list(fit.get("radial_neuron") or [])
    macs += nnei * sum(a * b for a, b in zip(radial[:-1], radial[1:])) + nnei * radial[-1]
    from deepmd_charge.tf.fitting import DEFAULT_BASIS

    nbasis = fit.get("radial_basis", DEFAULT_BASIS) * (len(desc["sel"]) - 1)  # per element
    macs += nbasis  # the superposition's linear layer (the Gaussians themselves are exp, not multiply-adds)
    layers = [m1 * m2 + radial[-1] + nbasis] + list(fit["neuron"]) + [1]
    macs += sum(a * b for a, b in zip(layers[:-1], layers[1:]))
    return 2.0 * macs


def matmul_gflops(threads: int) -> float:
    code = (
        "import time, tensorflow as tf\n"
        f"tf.config.threading.set_intra_op_parallelism_threads({threads})\n"
        "a = tf.random.normal((2048, 2048)); b = tf.random.normal((2048, 2048))\n"
        "c = tf.matmul(a, b); _ = c.numpy()\n"
        "t = time.perf_counter(); n = 10\n"
        "for _ in range(n): c = tf.matmul(a, b)\n"
        "_ = c.numpy(); dt = time.perf_counter() - t\n"
        "print(2 * 2048**3 * n / dt / 1e9)\n"
    )
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    return float(sh([sys.executable, "-c", code], env=env).strip().splitlines()[-1])


def predict_case(model: Path, atoms_file: Path, grid, threads: int, out: Path, repeats: int = 2) -> dict:
    """`dp-charge predict` in a fresh process, `repeats` times: the fastest run's points/s (as the
    command prints it: prediction and writing), and the largest peak RSS of those processes."""
    cmd = [
        "dp-charge",
        "predict",
        str(model),
        str(atoms_file),
        "-o",
        str(out),
        "--grid",
        *map(str, grid),
        "--quiet",
        "--threads",
        str(threads),
    ]
    code = (
        "import resource, subprocess, sys, time\n"
        f"t = time.perf_counter(); p = subprocess.run({cmd!r}, capture_output=True, text=True); dt = time.perf_counter() - t\n"
        "rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024\n"
        "print(p.returncode, dt, rss); print(p.stdout); print(p.stderr[-2000:], file=sys.stderr)\n"
    )
    npts = int(np.prod(grid))
    runs = []
    for _ in range(repeats):
        text = sh([sys.executable, "-c", code])
        rc, wall, rss = text.splitlines()[0].split()
        if int(rc):
            sys.exit(text)
        inner = next(line for line in text.splitlines() if line.startswith("grid "))
        # the printed rate, not the seconds: those are rounded to 0.1 s (2.5 % at 4 s)
        rate = float(inner.split(", ")[1].split(" points/s")[0].replace(",", ""))
        seconds = npts / rate
        runs.append(
            {
                "points": npts,
                "predict_s": seconds,
                "wall_s": float(wall),
                "points_per_s": npts / seconds,
                "peak_rss_mb": float(rss),
            }
        )
    return {**max(runs, key=lambda r: r["points_per_s"]), "peak_rss_mb": max(r["peak_rss_mb"] for r in runs)}


def best_rate(dc, atoms, n: int, repeats: int):
    """(best points/s of `repeats` DeepCharge.predict calls on an n^3 grid, the last density);
    DeepCharge makes TensorFlow's first call when it loads."""
    best = 0.0
    for _ in range(repeats):
        t = time.perf_counter()
        rho = dc.predict(atoms, grid=(n, n, n))
        best = max(best, n**3 / (time.perf_counter() - t))
    return best, rho


STOCK_BATCHES = (100, 250, 500, 1000, 2000, 20000)


def stock_speed(model: Path, atoms, npoints: int, threads: int, repeats: int = 5) -> float:
    """DeePMD-kit's own DeepDOS.eval with every grid point an atom of one frame: points/s, the
    best of `repeats` calls after a warm-up call of the same size (its first calls are slower)."""
    os.environ["DP_INTRA_OP_PARALLELISM_THREADS"] = str(threads)
    from deepmd.tf.infer import DeepDOS

    dd = DeepDOS(str(model))
    pts = np.random.default_rng(0).random((npoints, 3)) @ atoms.cell[:]
    coords = np.concatenate([atoms.positions, pts]).reshape(1, -1)
    types = [0] * len(atoms) + [1] * npoints
    best = 0.0
    for _ in range(repeats + 1):  # the first is the warm-up
        t = time.perf_counter()
        dd.eval(coords, atoms.cell[:].reshape(1, 9), types, atomic=True)
        best = max(best, npoints / (time.perf_counter() - t)) if _ else best
    return best


def env_op_ceiling(model: Path, atoms, threads: int, repeats: int = 3) -> float:
    """Points/s of DeePMD-kit's environment op alone, fed and batched as DeepCharge does (Si64,
    100^3): the most any evaluation of the networks could reach while reusing that op."""
    from deepmd.tf.env import tf

    from deepmd_charge import DeepCharge

    dc = DeepCharge(model, threads=threads)
    s = dc.session  # tf/session.py: `output` is the tensor each batch call fetches
    with s.graph.as_default():
        nnei4 = 4 * int(sum(s.value("descrpt_attr/sel")))
        s.output = tf.reshape(s.graph.get_tensor_by_name("o_rmat:0"), [-1, nnei4])[:, 0]  # one value per point
    best, _ = best_rate(dc, atoms, 100, repeats)
    dc.close()
    return best


def first_layer_rate(model: Path, threads: int, points: int = 16384, repeats: int = 20) -> float:
    """Points/s of the fitting net's first layer alone (matmul + bias + activation of a
    [points, width] input with the model's own weights, its precision, the same threads)."""
    from deepmd.tf.env import tf

    from deepmd_charge import DeepCharge

    dc = DeepCharge(model, threads=threads, tabulate=False)
    names = [
        n.name
        for n in dc.session.graph.as_graph_def().node
        if n.name.startswith("layer_0_type_") and n.name.endswith("/matrix")
    ]
    w = dc.session.value(names[0])
    b = dc.session.value(names[0].replace("/matrix", "/bias"))
    dc.close()
    graph = tf.Graph()
    with graph.as_default():
        x = tf.placeholder(w.dtype, [None, w.shape[0]])
        y = tf.reduce_sum(tf.tanh(tf.matmul(x, tf.constant(w)) + tf.constant(b)))
    config = tf.ConfigProto(intra_op_parallelism_threads=threads, inter_op_parallelism_threads=1)
    with tf.Session(graph=graph, config=config) as sess:
        feed = {x: np.random.default_rng(0).standard_normal((points, w.shape[0])).astype(w.dtype)}
        sess.run(y, feed)
        best = 0.0
        for _ in range(repeats):
            t = time.perf_counter()
            sess.run(y, feed)
            best = max(best, points / (time.perf_counter() - t))
    return best


def graph_ab(model: Path, atoms, threads: int, workdir: Path, repeats: int = 2) -> list:
    """Tabulated networks vs the plain frozen graph vs dp compress, Si64 64^3, one process.

    Rows: (variant, file MB, best points/s of `repeats`, max |rho - rho_plain| e/A^3).
    """
    from deepmd_charge import DeepCharge

    variants = [("plain frozen graph", model, False), ("tabulated networks (default)", model, True)]
    # DeePMD-kit's defaults (step 0.01), then the larger steps docs/large-systems.md recommends
    for suffix, opts in (("", []), ("-s05", ["-s", "0.05"]), ("-s10", ["-s", "0.1"])):
        compressed = workdir / f"{model.parent.name}-compressed{suffix}.pb"
        if not compressed.exists():
            sh(["dp", "--tf", "compress", "-i", str(model), "-o", str(compressed), *opts], model.parent)
        variants.append((f"dp compress {' '.join(opts) or '(defaults)'}, plain graph", compressed, False))
    rows, ref = [], None
    for name, path, tab in variants:
        dc = DeepCharge(path, threads=threads, tabulate=tab)
        best, rho = best_rate(dc, atoms, 64, repeats)
        ref = rho if ref is None else ref
        rows.append((name, path.stat().st_size / 1e6, best, float(np.abs(rho - ref).max())))
        dc.close()
    return rows


def concurrency_ab(models: dict, atoms, threads: int, repeats: int = 3) -> list:
    """Chunks in flight at once (DeepCharge.concurrent_calls) 1 vs 2, Si64 100^3, one process.

    Rows: (precision, calls, best points/s of `repeats`). `--threads 1` means one call.
    """
    from deepmd_charge import DeepCharge

    rows = []
    for prec, model in models.items():
        dc = DeepCharge(model, threads=threads)
        for calls in (1, 2):
            dc.concurrent_calls = calls
            rows.append((prec, calls, best_rate(dc, atoms, 100, repeats)[0]))
        dc.close()
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/speedbench"))
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--quick", action="store_true", help="skip the 10^4-atom and 128^3 cases")
    parser.add_argument(
        "--ceiling",
        action="store_true",
        help="only: our 10^6-point rate against the environment op + first layer ceiling",
    )
    parser.add_argument("--rounds", type=int, default=3, help="--ceiling: rounds of ceiling + ours side by side")
    parser.add_argument("--concurrency", action="store_true", help="only: one vs two chunks in flight (Si64, 100^3)")
    parser.add_argument(
        "--stock-large",
        action="store_true",
        help="only: stock DeePMD-kit on Si4096 (float64), against our 100^3 rate there",
    )
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    args.workdir.mkdir(parents=True, exist_ok=True)
    from ase.build import bulk
    from ase.io import write

    models = make_models(args.workdir)
    if args.stock_large:
        si4096 = bulk("Si", "diamond", a=5.43, cubic=True).repeat((8, 8, 8))
        path = args.workdir / "Si4096.vasp"
        write(path, si4096, format="vasp", direct=True)
        ours = predict_case(models["float64"], path, (100, 100, 100), args.threads, args.workdir / "out")[
            "points_per_s"
        ]
        st = {
            k: stock_speed(models["float64"], si4096, k, args.threads, repeats=3)
            for k in (1000, 2000, 4000, 8000, 16000)
        }
        print(
            "stock DeePMD-kit DeepDOS.eval, float64 model, Si4096 + N ghosts in one frame (best of 3): "
            + ", ".join(f"N={k}: {v:,.0f}" for k, v in st.items())
            + " points/s"
        )
        print(
            f"dp-charge predict, Si4096, 100^3, float64: {ours:,.0f} points/s = {ours / max(st.values()):.1f}x "
            "stock's best batch on the same system"
        )
        return
    if args.ceiling:
        from deepmd_charge import DeepCharge

        si64 = bulk("Si", "diamond", a=5.43, cubic=True).repeat((2, 2, 2))
        path = args.workdir / "Si64.vasp"
        write(path, si64, format="vasp", direct=True)
        # This virtual machine's speed drifts by 10-20 % over minutes, so the ceiling and our rate
        # are measured side by side in each round and the fraction is the median of the rounds'
        # ratios, not a ratio of rates taken minutes apart.
        print(
            "\n| precision | round | env op alone | first layer alone | ceiling (both) | DeepCharge.predict Si64 100^3"
            " | fraction | dp-charge predict (fresh process, with writing) | fraction "
            "| DeepCharge.predict, first layer by TensorFlow | fraction | ours / env op alone |"
            "\n|---|---|---|---|---|---|---|---|---|---|---|---|"
        )
        summary = []
        for prec, model in models.items():
            fracs, cli_fracs = [], []
            for k in range(args.rounds):
                env, layer = env_op_ceiling(model, si64, args.threads), first_layer_rate(model, args.threads)
                # the same harness as the environment op's rate: one process, best of 3 calls on 100^3
                dc = DeepCharge(model, threads=args.threads)
                ours = best_rate(dc, si64, 100, 3)[0]
                dc.close()
                cli = predict_case(model, path, (100, 100, 100), args.threads, args.workdir / "out")["points_per_s"]
                # The kernel computes the first layer itself (tf/table_sum.cc, first_layer), faster than
                # TensorFlow's MatMul in float64, so the "ceiling" is no longer an upper bound: the same
                # rate with TensorFlow's first layer, and ours against the environment op alone, say
                # how much of the fraction comes from that.
                with mock.patch.dict(os.environ, {"DP_CHARGE_FUSE_FIRST_LAYER": "0"}):
                    dc = DeepCharge(model, threads=args.threads)
                unfused = best_rate(dc, si64, 100, 3)[0]
                dc.close()
                top = 1.0 / (1.0 / env + 1.0 / layer)
                fracs.append(ours / top)
                cli_fracs.append(cli / top)
                print(
                    f"| {prec} | {k + 1} | {env:,.0f} | {layer:,.0f} | {top:,.0f} | {ours:,.0f} | {100 * ours / top:.0f}% | "
                    f"{cli:,.0f} | {100 * cli / top:.0f}% | {unfused:,.0f} | {100 * unfused / top:.0f}% | "
                    f"{100 * ours / env:.0f}% |",
                    flush=True,
                )
            summary.append((prec, fracs, cli_fracs))
        print(
            f"\n| precision | DeepCharge.predict: median fraction (range), {args.rounds} rounds "
            "| dp-charge predict: median fraction (range) |\n|---|---|---|"
        )
        for prec, fracs, cli_fracs in summary:
            print(
                f"| {prec} | {100 * np.median(fracs):.0f}% ({100 * min(fracs):.0f}-{100 * max(fracs):.0f}%) | "
                f"{100 * np.median(cli_fracs):.0f}% ({100 * min(cli_fracs):.0f}-{100 * max(cli_fracs):.0f}%) |"
            )
        return
    if args.concurrency:
        print("\n| precision | chunks in flight | points/s (Si64, 100^3, best of 3) |\n|---|---|---|")
        for prec, calls, pps in concurrency_ab(
            models, bulk("Si", "diamond", a=5.43, cubic=True).repeat((2, 2, 2)), args.threads
        ):
            print(f"| {prec} | {calls} | {pps:,.0f} |")
        return
    script = json.loads((args.workdir / "float64" / "input.json").read_text())
    neighbours = mean_neighbours(bulk("Si", "diamond", a=5.43, cubic=True), script["model"]["descriptor"]["rcut"])
    fpp = flops_per_point(script, neighbours)
    gflops = matmul_gflops(args.threads)
    unit = bulk("Si", "diamond", a=5.43, cubic=True)
    systems = {64: (2, 2, 2), 512: (4, 4, 4), 4096: (8, 8, 8), 10648: (11, 11, 11)}
    if args.quick:
        systems.pop(10648)
    rows = []
    si64 = unit.repeat((2, 2, 2))
    for n in (32, 64, 96, 128) if not args.quick else (32, 64, 96):
        for prec, model in models.items():
            path = args.workdir / "Si64.vasp"
            write(path, si64, format="vasp", direct=True)
            r = predict_case(model, path, (n, n, n), args.threads, args.workdir / "out")
            rows.append({"system": "Si64", "atoms": 64, "grid": f"{n}^3", "precision": prec, **r})
    for natoms, rep in systems.items():
        atoms = unit.repeat(rep)
        path = args.workdir / f"Si{natoms}.vasp"
        write(path, atoms, format="vasp", direct=True)
        r = predict_case(models["float64"], path, (100, 100, 100), args.threads, args.workdir / "out")
        rows.append({"system": f"Si{natoms}", "atoms": natoms, "grid": "100^3", "precision": "float64", **r})
    ab = {prec: graph_ab(m, si64, args.threads, args.workdir) for prec, m in models.items()}
    stock = {prec: {k: stock_speed(m, si64, k, args.threads) for k in STOCK_BATCHES} for prec, m in models.items()}
    ceiling = {prec: env_op_ceiling(m, si64, args.threads) for prec, m in models.items()}
    layer1 = {prec: first_layer_rate(m, args.threads) for prec, m in models.items()}
    # the ceiling: DeePMD-kit's environment op plus the first fitting layer, nothing else
    op_ceiling = {prec: 1.0 / (1.0 / ceiling[prec] + 1.0 / layer1[prec]) for prec in models}
    print(
        f"\nmachine: {os.cpu_count()} cores, {args.threads} threads; fp32 matmul {gflops:.1f} GFLOP/s; model {fpp / 1e6:.3f} MFLOP/point "
        f"over {neighbours:.1f} real neighbours "
        f"({flops_per_point(script, sum(script['model']['descriptor']['sel'])) / 1e6:.3f} over all sel slots)"
    )
    for prec, st in stock.items():
        print(
            f"stock DeePMD-kit DeepDOS.eval, {prec} model, Si64 + N ghosts in one frame (best of 5): "
            + ", ".join(f"N={k}: {v:,.0f}" for k, v in st.items())
            + " points/s"
        )
    for prec, c in ceiling.items():
        print(
            f"DeePMD-kit's environment op alone, batched as DeepCharge does, {prec} model, Si64 100^3: {c:,.0f} "
            f"points/s = {c / max(stock[prec].values()):.1f}x the best stock batch"
        )
    for prec in models:
        print(
            f"first fitting layer alone, {prec}: {layer1[prec]:,.0f} points/s; environment op + first layer: "
            f"{op_ceiling[prec]:,.0f} points/s (the ceiling)"
        )
    print(
        "\n| system | atoms | grid | precision | points/s | peak RSS (MB) | fraction of env op + first layer ceiling "
        "| fraction of fp32 matmul ceiling | speed-up over stock (best batch) |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        frac = r["points_per_s"] * fpp / (gflops * 1e9)
        best_stock = max(stock[r["precision"]].values())
        print(
            f"| {r['system']} | {r['atoms']} | {r['grid']} | {r['precision']} | {r['points_per_s']:,.0f} | {r['peak_rss_mb']:.0f} | "
            f"{100 * r['points_per_s'] / op_ceiling[r['precision']]:.0f}% | {100 * frac:.1f}% | {r['points_per_s'] / best_stock:.1f}x |"
        )
    print(
        "\n| model | evaluation | file (MB) | points/s (Si64, 64^3, best of 2) | max abs diff vs plain graph (e/A^3) |"
    )
    print("|---|---|---|---|---|")
    for prec, rows_ab in ab.items():
        for name, mb, pps, diff in rows_ab:
            print(f"| {prec} | {name} | {mb:.1f} | {pps:,.0f} | {diff:.1e} |")
    (args.workdir / "results.json").write_text(
        json.dumps(
            {
                "rows": rows,
                "stock": stock,
                "env_op_ceiling": ceiling,
                "first_layer": layer1,
                "op_ceiling": op_ceiling,
                "gflops": gflops,
                "flops_per_point": fpp,
                "graphs": ab,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
