"""The radial superposition prior alone, before any training: how it transfers to unseen structures.

For each train -> test pair this fits the prior the way `dp train` does (2,000 training points,
deepmd_charge.tf.basis.regularised_fit; rcut 5, 16 Gaussians per element) and, for comparison,
the nearly unregularised least-squares fit with a constant term used before issue 12 (ridge 1e-6),
then scores both, and the training mean, on 20,000 random points of each test grid (--points;
0 = every point; points within 0.1 A of a nucleus left out, as in training). Numpy only.

    python benchmarks/prior_fit.py --qe /tmp/qe_si8 [--fresh /tmp/si8_fresh] [--water /tmp/materials/water_fine]

Data: examples/silicon/dft (shipped), examples/silicon/make_data_qe.py (--qe),
examples/silicon/make_data.py --fresh (--fresh), benchmarks/make_materials.py water_fine --water-extra 1 (--water).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from deepmd_charge.convert import usable_grid  # noqa: E402
from deepmd_charge.io.chgcar import read_chgcar  # noqa: E402
from deepmd_charge.tf.basis import basis_sums_numpy, least_squares, regularised_fit  # noqa: E402

RCUT, K, N_FIT = 5.0, 16, 2000


def features(path: Path, n: int | None, elements: list, seed: int = 1):
    vol = read_chgcar(path)
    points, usable = usable_grid(vol)
    if n:
        usable = np.random.default_rng(seed).choice(usable, n, replace=False)
    atoms = vol.atoms
    types = np.array([elements.index(s) for s in atoms.get_chemical_symbols()])
    feats = basis_sums_numpy(atoms.cell[:], atoms.positions, types, points[usable], len(elements), RCUT, K)
    return feats, vol.total.ravel()[usable]


def nmae(pred, ref) -> float:
    return float(np.abs(pred - ref).sum() / np.abs(ref).sum())


def pair(label: str, trains: list, tests: list, n_test: int) -> list:
    elements = list(dict.fromkeys(read_chgcar(trains[0]).atoms.get_chemical_symbols()))
    parts = [features(t, N_FIT // len(trains), elements, seed=1 + i) for i, t in enumerate(trains)]
    feats, labels = np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
    w, b, report = regularised_fit(feats, labels)
    w0, b0 = least_squares(feats, labels, 1e-6)
    rows = []
    for test in tests:
        ft, yt = features(test, n_test or None, elements, seed=7)
        rows.append(
            (
                label,
                test.parent.name,
                nmae(np.full_like(yt, labels.mean()), yt),
                nmae(ft @ w0 + b0, yt),
                nmae(ft @ w + b, yt),
                report,
            )
        )
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--qe", type=Path, help="make_data_qe.py output folder")
    parser.add_argument("--fresh", type=Path, help="make_data.py --fresh output folder")
    parser.add_argument(
        "--water", type=Path, help="make_materials.py water_fine folder (rattled_a, rattled_b, rattled_c)"
    )
    parser.add_argument("--points", type=int, default=20000, help="test points per structure (0: the whole grid)")
    args = parser.parse_args()
    n = args.points
    dft = ROOT / "examples" / "silicon" / "dft"
    fresh = sorted(args.fresh.glob("rattled_*/CHGCAR.gz")) if args.fresh else []
    g = lambda *names: [dft / n / "CHGCAR.gz" for n in names]  # noqa: E731
    rows = pair("Si8 GPAW perfect", g("perfect"), g("rattled_a", "rattled_b", "rattled_c") + fresh, n)
    rows += pair("Si8 GPAW rattled_a", g("rattled_a"), g("rattled_b", "perfect", "rattled_c") + fresh, n)
    if args.qe:
        q = lambda *names: [args.qe / n / "CHGCAR.gz" for n in names]  # noqa: E731
        rows += pair("Si8 QE perfect", q("perfect"), q("rattled_1", "rattled_2", "rattled_3"), n)
        rows += pair("Si8 QE rattled_1", q("rattled_1"), q("rattled_2", "rattled_3", "perfect"), n)
    if args.water:
        rows += pair(
            "8 H2O, 72^3: rattled_a + rattled_c",
            [args.water / n / "CHGCAR.gz" for n in ("rattled_a", "rattled_c")],
            [args.water / "rattled_b" / "CHGCAR.gz"],
            n,
        )
    print(
        "\n| trained on | test | NMAE: training mean | prior, ridge 1e-6 + constant (before) | prior, regularised, no "
        "constant (now) | ridge chosen | condition number | effective dof |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for label, test, n_mean, n_old, n_new, rep in rows:  # noqa: B007
        print(
            f"| {label} | {test} | {100 * n_mean:.1f}% | {100 * n_old:.1f}% | {100 * n_new:.1f}% | {rep.ridge:.0e} | "
            f"{rep.condition:.1e} | {rep.dof:.1f} of {rep.n_weights} |"
        )


if __name__ == "__main__":
    main()
