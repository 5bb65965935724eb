"""Can a richer linear prior carry a perfect crystal's density to rattled cells? (issue 12, a probe)

The radial superposition (tf/basis.py) is a sum of atomic densities. A covalent crystal's density
also has bond charges. This fits three linear priors on 2,000 points of ONE structure and scores
them on 10,000 random points of each test structure, for a range of ridges (relative to the mean
eigenvalue of the Gram matrix; no constant term), numpy only:

    radial   sum_j phi_k(r_j): 16 Gaussians over [0, 5] A (the project's prior)
    bond     radial + bond-charge features: for every bonded pair (i, j) (d_ij < 2.6 A, cosine
             switch to 3.2 A), Gaussians in the excess path e = r_pi + r_pj - d_ij (8 over
             [0, 2] A, cosine cutoff) times u^0, u^2, u^4 with u = (r_pi - r_pj) / d_ij: a shape
             that moves and stretches with the bond
    product  for every bonded pair, the symmetrised products phi_k(r_pi) phi_l(r_pj) of 8
             Gaussians over [0, RMAX] A (36 features; --rmax, --nk change them): an
             overlap-like bond density whose size depends on the bond length

    python benchmarks/bond_prior_probe.py --qe /tmp/qe_si8
    python benchmarks/bond_prior_probe.py --network --workdir /tmp/bond_net

--network asks whether the bond prior helps the trained model, without building it into the
graph: GPAW rattled_a is converted as si8_one_structure.py does (`dp-charge convert --seed 1`),
the bond prior (radial + bond, held-out ridge) fitted on 2,000 of its points is subtracted from
the labels, and the input of si8_one_structure.py (3000 steps, fitting defaults, seed 1) is trained on
the remainder; prediction = model + prior, scored on 20,000 points of rattled_b, rattled_c and
perfect, next to the same training on the plain labels.

Data: examples/silicon/dft (shipped GPAW Si8), examples/silicon/make_data_qe.py (--qe).
Prints one markdown table; each cell is "in-sample NMAE / mean NMAE over the test cells" for one
prior and ridge; the last column is the ridge that
`regularised_fit`'s held-out rule picks (which only sees the training structure).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from ase import Atoms
from scipy.spatial import cKDTree

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from deepmd_charge.convert import usable_grid  # noqa: E402
from deepmd_charge.grid import periodic_images, wrap_into_cell  # noqa: E402
from deepmd_charge.io.chgcar import read_chgcar  # noqa: E402
from deepmd_charge.tf.basis import basis_sums_numpy, least_squares, phi, regularised_fit  # noqa: E402

RCUT, K = 5.0, 16  # the radial prior as dp train makes it
BOND_ON, BOND_OFF = 2.6, 3.2  # A: pairs closer than BOND_OFF are bonds (cosine switch from BOND_ON)
EMAX, NE, POWERS = 2.0, 8, (0, 2, 4)
RIDGES = 10.0 ** np.arange(-6.0, -0.9, 1.0)


def switch(d, lo, hi):
    x = np.clip((d - lo) / (hi - lo), 0.0, 1.0)
    return 0.5 * (1.0 + np.cos(np.pi * x))


def sample(path: Path, n: int, seed: int):
    """(atoms, grid points, labels) of n random usable grid points of a CHGCAR."""
    vol = read_chgcar(path)
    points, usable = usable_grid(vol)
    pick = np.random.default_rng(seed).choice(usable, n, replace=False)
    return vol.atoms, wrap_into_cell(points[pick], vol.atoms.cell[:]), vol.total.ravel()[pick]


def bonds(atoms, reach: float):
    """End points, lengths and switch weights of every bond with an end within `reach` of the cell."""
    a = Atoms(numbers=np.ones(len(atoms), int), positions=atoms.positions, cell=atoms.cell, pbc=True)
    ext, _ = periodic_images(a, reach + BOND_OFF)
    pairs = np.array(sorted(cKDTree(ext).query_pairs(BOND_OFF)))
    pi, pj = ext[pairs[:, 0]], ext[pairs[:, 1]]
    d = np.linalg.norm(pi - pj, axis=1)
    return pi, pj, d, switch(d, BOND_ON, BOND_OFF)


def pair_features(atoms, pts, kind: str, rmax: float, nk: int) -> np.ndarray:
    reach = (BOND_OFF + EMAX) / 2 if kind == "bond" else rmax + BOND_OFF / 2
    pi, pj, d, s = bonds(atoms, reach)
    near = cKDTree((pi + pj) / 2).query_ball_point(pts, reach)
    mu, sig = np.linspace(0.0, EMAX, NE), EMAX / (NE - 1)
    iu = np.triu_indices(nk)
    out = np.zeros((len(pts), NE * len(POWERS) if kind == "bond" else len(iu[0])))
    for k, b in enumerate(near):
        b = np.asarray(b, int)
        if not len(b):
            continue
        ri, rj = np.linalg.norm(pts[k] - pi[b], axis=1), np.linalg.norm(pts[k] - pj[b], axis=1)
        if kind == "bond":
            e, u = ri + rj - d[b], (ri - rj) / d[b]
            inside = e < EMAX
            g = np.exp(-(((e[inside, None] - mu) / sig) ** 2))
            g *= (0.5 * (1.0 + np.cos(np.pi * e[inside] / EMAX)) * s[b][inside])[:, None]
            out[k] = np.concatenate([(g * (u[inside] ** p)[:, None]).sum(0) for p in POWERS])
        else:
            m = np.einsum("bk,bl,b->kl", phi(ri, rmax, nk), phi(rj, rmax, nk), s[b])
            out[k] = (m + m.T)[iu]
    return out


def features(atoms, pts, kind: str, rmax: float, nk: int) -> np.ndarray:
    types = np.zeros(len(atoms), int)
    radial = basis_sums_numpy(atoms.cell[:], atoms.positions, types, pts, 1, RCUT, K)
    if kind == "radial":
        return radial
    if kind == "bond":
        return np.hstack([radial, pair_features(atoms, pts, "bond", rmax, nk)])
    return pair_features(atoms, pts, "product", rmax, nk)


def nmae(pred, ref) -> float:
    return float(np.abs(pred - ref).sum() / np.abs(ref).sum())


def network(workdir: Path) -> None:
    """Train on labels minus the bond prior (and on the plain labels); print NMAE on unseen cells."""
    import json
    import subprocess

    from si8_one_structure import USER_INPUT

    from deepmd_charge import DeepCharge

    dft = ROOT / "examples" / "silicon" / "dft"
    train = dft / "rattled_a" / "CHGCAR.gz"
    atoms = read_chgcar(train).atoms
    a0, p0, y0 = sample(train, 2000, seed=1)
    w, _, _ = regularised_fit(features(a0, p0, "bond", 4.0, 8), y0)
    print("| prior under the network | rattled_b | rattled_c | perfect |\n|---|---|---|---|")
    for kind in ("radial", "bond"):  # radial: the plain labels (the model's own prior only)
        work = workdir / kind
        work.mkdir(parents=True, exist_ok=True)
        cmd = ["dp-charge", "convert", str(train), "-o", "data", "--overwrite", "--seed", "1"]
        subprocess.run(cmd, cwd=work, check=True, capture_output=True)
        types = np.loadtxt(work / "data" / "type.raw", dtype=int)
        ghost = types == types.max()
        sets = sorted((work / "data").glob("set.*"))
        if kind == "bond":
            for folder in sets:
                coord, dens = np.load(folder / "coord.npy"), np.load(folder / "density.npy")
                for i in range(len(coord)):
                    pts = wrap_into_cell(coord[i].reshape(-1, 3)[ghost], atoms.cell[:])
                    dens[i, ghost] -= features(atoms, pts, "bond", 4.0, 8) @ w
                np.save(folder / "density.npy", dens)
        inp = json.loads(json.dumps(USER_INPUT))
        inp["training"]["numb_steps"] = 3000
        for section in (inp["training"], inp["model"]["descriptor"], inp["model"]["fitting_net"]):
            section["seed"] = 1  # si8_one_structure.py --seeds 1
        (work / "input.json").write_text(json.dumps(inp))
        subprocess.run(["dp", "--tf", "train", "input.json"], cwd=work, check=True, capture_output=True)
        subprocess.run(["dp", "--tf", "freeze", "-o", "model.pb"], cwd=work, check=True, capture_output=True)
        model = DeepCharge(work / "model.pb")
        cells = []
        for name in ("rattled_b", "rattled_c", "perfect"):
            a, p, y = sample(dft / name / "CHGCAR.gz", 20000, seed=7)
            pred = model.predict_points(a, p)
            if kind == "bond":
                pred = pred + features(a, p, "bond", 4.0, 8) @ w
            cells.append(f"{100 * nmae(pred, y):.2f}%")
        label = "bond (labels minus the bond prior)" if kind == "bond" else "none (plain labels)"
        print(f"| {label} | " + " | ".join(cells) + " |", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--qe", type=Path, help="make_data_qe.py output folder")
    parser.add_argument("--rmax", type=float, default=4.0, help="product prior: Gaussians over [0, RMAX] A")
    parser.add_argument("--nk", type=int, default=8, help="product prior: Gaussians per end")
    parser.add_argument("--network", action="store_true", help="train models on labels minus the bond prior")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/bond_net"), help="--network: training folder")
    args = parser.parse_args()
    if args.network:
        network(args.workdir)
        return
    dft = ROOT / "examples" / "silicon" / "dft"
    cases = [
        ("GPAW", dft, "perfect", ["rattled_a", "rattled_b", "rattled_c"]),
        ("GPAW", dft, "rattled_a", ["rattled_b", "rattled_c", "perfect"]),
    ]
    if args.qe:
        cases += [
            ("QE", args.qe, "perfect", ["rattled_1", "rattled_2", "rattled_3"]),
            ("QE", args.qe, "rattled_1", ["rattled_2", "rattled_3", "perfect"]),
        ]
    print("| data | trained on | prior | " + " | ".join(f"ridge {r:.0e}" for r in RIDGES) + " | held-out rule |")
    print("|---|---|---|" + "---|" * (len(RIDGES) + 1))
    for code, root, train, tests in cases:
        atoms, pts, y = sample(root / train / "CHGCAR.gz", 2000, seed=1)
        test_sets = [sample(root / t / "CHGCAR.gz", 10000, seed=7) for t in tests]
        for kind in ("radial", "bond", "product"):
            f = features(atoms, pts, kind, args.rmax, args.nk)
            ft = [(features(a, p, kind, args.rmax, args.nk), yt) for a, p, yt in test_sets]
            cells = []
            for ridge in RIDGES:
                w, _ = least_squares(f, y, ridge, intercept=False)
                cells.append(f"{100 * nmae(f @ w, y):.1f} / {100 * np.mean([nmae(x @ w, yt) for x, yt in ft]):.1f}%")
            w, _, rep = regularised_fit(f, y)
            held = f"{rep.ridge:.0e}: {100 * np.mean([nmae(x @ w, yt) for x, yt in ft]):.1f}%"
            print(f"| {code} | {train} | {kind} | " + " | ".join(cells) + f" | {held} |", flush=True)


if __name__ == "__main__":
    main()
