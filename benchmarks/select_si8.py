"""Which structure to compute next: committee-deviation picks against random picks (Si8, GPAW).

Start: a committee trained on the perfect crystal only (benchmarks/committee_si8.py --work C).
Pool: every other Si8 structure with DFT (rattled_a/b/c shipped in examples/silicon/dft, and the
six of benchmarks/make_si8_pool.py: rattles 0.02/0.05/0.20 A, -3 % and +4 % strain, a vacancy).

1. `dp-charge select POOL/*/POSCAR --models C/m*/model.pb -n 2` picks the two most uncertain.
2. For the deviation picks and for --draws random pairs, one model is trained on perfect + the
   two picks (same recipe and seeds as the committee members; only the data differ).
3. Each model is scored with `dp-charge test` on the rest of the pool (the structures it did not
   train on): mean NMAE over those structures, and their worst NMAE; and on the whole pool
   (picks included: what the next model knows about all candidates).

    python benchmarks/select_si8.py --committee /tmp/cm/a_rb0 --pool /tmp/si8_pool --work /tmp/cm/b_rb0 --radial-basis 0
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from committee_si8 import sh, structures, train_member  # noqa: E402


def score(model, chgcars, out_json, cwd):
    sh([sys.executable, "-m", "deepmd_charge.cli", "test", model, *chgcars, "--json", out_json, "--quiet"], cwd)
    return json.loads(Path(out_json).read_text())


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--committee", type=Path, required=True, help="work folder of committee_si8.py (m*/model.pb)")
    parser.add_argument("--pool", required=True)
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--train", default="perfect")
    parser.add_argument("--picks", type=int, default=2)
    parser.add_argument("--draws", type=int, default=3)
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--points", type=int, default=20000)
    parser.add_argument("--radial-basis", type=int, default=None)
    parser.add_argument("--criterion", default="mean", choices=["mean", "max"])
    parser.add_argument(
        "--greedy",
        action="store_true",
        help="deviation picks one at a time: after each pick a committee (same members, recipe and seeds) is "
        "retrained on the start + the picks so far and ranks the rest again",
    )
    parser.add_argument("--jobs", type=int, default=1, help="committee members trained at a time (--greedy)")
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    found = structures(args.pool)
    train = found.pop(args.train)
    names = list(found)
    models = sorted(str(p) for p in args.committee.resolve().glob("m*/model.pb"))

    def rank(models, candidates, folder, count):
        """dp-charge select over `candidates`; the ranking (names, most uncertain first)."""
        if not folder.exists():
            out = sh(
                [sys.executable, "-m", "deepmd_charge.cli", "select"]
                + [found[n].parent / "POSCAR" for n in candidates]
                + ["--models", *models, "-n", count, "-o", folder, "--criterion", args.criterion],
                work,
            )
            print(out, flush=True)
        else:
            print((folder / "ranking.txt").read_text())
        return [Path(line.split()[-1]).parent.name for line in (folder / "ranking.txt").read_text().splitlines()[1:]]

    if not args.greedy:
        ranking = rank(models, names, work / f"picked_{args.criterion}", args.picks)
        dev_picks = ranking[: args.picks]
    else:
        from concurrent.futures import ThreadPoolExecutor

        dev_picks, committee = [], models
        for k in range(args.picks):
            left = [n for n in names if n not in dev_picks]
            dev_picks.append(rank(committee, left, work / f"greedy{k}_{args.criterion}", 1)[0])
            if k + 1 < args.picks:  # retrain the committee on the start + the picks so far
                data = [train] + [found[n] for n in dev_picks]
                with ThreadPoolExecutor(args.jobs) as pool:
                    jobs = [
                        pool.submit(
                            train_member, work / f"greedy{k}_m{i}", data, i, args.steps, args.radial_basis, args.points
                        )
                        for i in range(len(models))
                    ]
                    committee = [str(j.result()[0]) for j in jobs]
        print(f"greedy deviation picks: {dev_picks}", flush=True)
    arms = {"deviation": dev_picks}
    for d in range(args.draws):
        arms[f"random{d}"] = sorted(np.random.default_rng(d).choice(names, args.picks, replace=False).tolist())
    base = score(models[0], [found[n] for n in names], work / "base.json", work)
    base_nmae = {n: r["nmae"] for n, r in zip(names, base["inputs"])}
    rows = []
    for arm, picks in arms.items():
        model, seconds = train_member(
            work / f"{arm}_{args.criterion}{'_greedy' if args.greedy else ''}" if arm == "deviation" else work / arm,
            [train] + [found[n] for n in picks],
            0,
            args.steps,
            args.radial_basis,
            args.points,
        )
        rest = [n for n in names if n not in picks]
        res = score(model, [found[n] for n in names], model.parent / "score.json", work)  # the whole pool
        by_name = {n: r["nmae"] for n, r in zip(names, res["inputs"])}
        nmae = [by_name[n] for n in rest]
        rows.append(
            (
                arm,
                picks,
                float(np.mean(nmae)),
                float(np.max(nmae)),
                float(np.mean([base_nmae[n] for n in rest])),
                seconds,
                float(np.mean(list(by_name.values()))),
            )
        )
        print(
            f"{arm}: picks {picks}, rest mean NMAE {100 * rows[-1][2]:.2f}%, worst {100 * rows[-1][3]:.2f}% ({seconds:.0f} s)",
            flush=True,
        )
    print(
        f"\nstart: {args.train} only; pool {len(names)}; {args.picks} picks; radial_basis "
        f"{args.radial_basis if args.radial_basis is not None else 'default'}; "
        f"{args.steps} steps; ranking by {args.criterion} deviation{' (greedy: retrained after each pick)' if args.greedy else ''}"
    )
    print(
        f"{'arm':10s} {'picks':28s} {'rest: mean NMAE':>16s} {'worst NMAE':>11s} {'rest before':>12s} {'whole pool: mean NMAE':>22s}"
    )
    for arm, picks, mean, worst, before, _, whole in rows:
        print(
            f"{arm:10s} {', '.join(picks):28s} {100 * mean:15.2f}% {100 * worst:10.2f}% {100 * before:11.2f}% {100 * whole:21.2f}%"
        )
    for col, what in ((2, "rest"), (6, "whole pool")):
        rnd = [r[col] for r in rows if r[0].startswith("random")]
        if not rnd:
            continue
        print(
            f"random, {what}: mean over {len(rnd)} draws {100 * np.mean(rnd):.2f}% (min {100 * min(rnd):.2f}%, max {100 * max(rnd):.2f}%)"
        )


if __name__ == "__main__":
    main()
