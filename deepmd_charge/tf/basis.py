"""Radial basis sums: the superposition-of-atomic-densities part of the charge model.

For a grid point with real neighbours j (distance r_j, element t_j) within rcut, the features are

    B[t, k] = sum_{j of element t} phi_k(r_j),   phi_k(r) = exp(-((r - mu_k) / sigma)^2) * fc(r)

with K Gaussians evenly spread over [0, rcut] (sigma = their spacing) and the cosine cutoff
fc(r) = (1 + cos(pi r / rcut)) / 2, which makes every feature smooth where a neighbour crosses
rcut. A density is to first order a sum of atomic contributions: sum_{t,k} w[t, k] B[t, k] is
exactly such a sum, with one learned radial density per element.

The weights w are trainable (fitting_net/basis_trainable) but start at a constrained least-squares
fit to the training labels, done once in numpy on DeePMD-kit's statistics frames before training
(`regularised_fit`: no constant term, ridge chosen on held-out points): the network then learns
only the remainder, scaled to unit variance. Training structures that are an ideal lattice
(`distance_shells`: a perfect crystal, an ideal slab) get no fit: the basis is switched off.
Both the TensorFlow graph and the numpy fit call `phi`, so the two agree by construction
(tests/test_basis.py checks them against each other).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree


def centers(rcut: float, nbasis: int) -> tuple[np.ndarray, float]:
    """Gaussian centres mu_k (Angstrom) and their common width sigma."""
    mu = np.linspace(0.0, rcut, nbasis)
    sigma = rcut / max(nbasis - 1, 1)
    return mu, sigma


def phi(r, rcut: float, nbasis: int, xp=np):
    """phi_k(r) for r of any shape -> shape + (nbasis,); 0 for r >= rcut and for r <= 0 (empty slots).

    `xp` is numpy or a module with the same names (the TensorFlow graph passes tf).
    """
    mu, sigma = centers(rcut, nbasis)
    inside = xp.logical_and(r > 0.0, r < rcut)
    rr = xp.where(inside, r, xp.zeros_like(r))
    fc = xp.where(inside, 0.5 * (xp.cos(np.pi * rr / rcut) + 1.0), xp.zeros_like(r))
    x = (rr[..., None] - mu) / sigma
    return xp.exp(-x * x) * fc[..., None]


def basis_sums_numpy(cell, positions, types, points, ntypes_real: int, rcut: float, nbasis: int) -> np.ndarray:
    """B for each point: (npoints, ntypes_real * nbasis), periodic images included."""
    from ase import Atoms

    from deepmd_charge.grid import periodic_images, wrap_into_cell

    atoms = Atoms(numbers=np.ones(len(positions), dtype=int), positions=positions, cell=cell, pbc=True)
    ext_pos, ext_idx = periodic_images(atoms, rcut)
    ext_types = np.asarray(types)[ext_idx]
    pts = wrap_into_cell(points, cell)
    out = np.zeros((len(pts), ntypes_real, nbasis))
    if len(ext_pos) == 0:
        return out.reshape(len(pts), -1)
    pairs = cKDTree(pts).sparse_distance_matrix(cKDTree(ext_pos), rcut, output_type="coo_matrix")
    contrib = phi(pairs.data, rcut, nbasis)
    np.add.at(out, (pairs.row, ext_types[pairs.col]), contrib)
    return out.reshape(len(pts), -1)


def least_squares(
    features: np.ndarray, labels: np.ndarray, ridge: float = 1e-6, intercept: bool = True
) -> tuple[np.ndarray, float]:
    """Weights w (and intercept b) minimising |features @ w + b - labels|^2 + ridge * s * |w|^2.

    s is the mean eigenvalue of the Gram matrix (centred with an intercept), so `ridge` is relative
    to the features' scale. intercept=False fits features @ w alone (b = 0).
    """
    mean_f = features.mean(axis=0) if intercept else np.zeros(features.shape[1])
    mean_y = labels.mean() if intercept else 0.0
    a = features - mean_f
    gram = a.T @ a
    scale = np.trace(gram) / max(len(gram), 1) or 1.0
    w = np.linalg.solve(gram + ridge * scale * np.eye(len(gram)), a.T @ (labels - mean_y))
    return w, float(mean_y - mean_f @ w)


#: interatomic distances closer than this (A) belong to one shell (`distance_shells`)
SHELL_GAP = 0.05
#: training structures whose every shell is narrower than this (A) are an ideal lattice: no prior
IDEAL_SHELL_WIDTH = 0.02


def distance_shells(distances: np.ndarray) -> tuple[int, float]:
    """(number of shells, width of the widest) of a set of interatomic distances.

    Sorted distances are cut into shells wherever two neighbours differ by more than SHELL_GAP.
    A perfect crystal or an ideal slab has a few shells of width ~0 (diamond Si within 5 A:
    2.35, 3.84, 4.50 A); a rattled, strained-and-relaxed or liquid structure has shells as wide
    as the displacements (0.1 A rattles: one shell about 2 A wide).
    """
    d = np.sort(np.asarray(distances, dtype=float).ravel())
    if not d.size:
        return 0, 0.0
    cuts = np.flatnonzero(np.diff(d) > SHELL_GAP) + 1
    starts, ends = np.r_[0, cuts], np.r_[cuts, d.size] - 1
    return len(starts), float((d[ends] - d[starts]).max())


#: ridge values tried by `regularised_fit`, relative to the mean eigenvalue of the Gram matrix
RIDGES = 10.0 ** np.arange(-6.0, 0.01, 0.5)
#: `regularised_fit` takes the largest ridge whose held-out MAE is within this factor of the best
TOLERANCE = 1.05


@dataclass
class FitReport:
    """How well-posed the superposition fit was (logged by `dp train`)."""

    ridge: float  # chosen ridge, relative to the mean eigenvalue of the Gram matrix
    condition: float  # condition number of the Gram matrix B^T B
    dof: float  # effective degrees of freedom: sum of e / (e + ridge * s) over its eigenvalues e
    n_weights: int
    mae_in: float  # in-sample MAE of the final fit (all points)
    mae_held: float  # held-out MAE at the chosen ridge (fit on the other points)
    mae_held_unreg: float  # held-out MAE with the smallest ridge tried
    n_points: int

    def lines(self) -> list[str]:
        return [
            f"radial superposition fit: {self.n_weights} weights, condition number {self.condition:.2g}, "
            f"ridge {self.ridge:.0e} (x mean eigenvalue; largest with held-out MAE within "
            f"{100 * (TOLERANCE - 1):.0f}% of the best) -> {self.dof:.1f} effective degrees of freedom",
            f"radial superposition fit: MAE {self.mae_in:.4g} in-sample, {self.mae_held:.4g} on held-out points "
            f"({self.mae_held_unreg:.4g} unregularised) over {self.n_points} points, e/A^3",
        ]


def regularised_fit(features: np.ndarray, labels: np.ndarray, held_out: float = 0.2, seed: int = 0):
    """A pure superposition sum_k w_k B_k (no constant term), ridge chosen on held-out points.

    Returns (w, b, FitReport) with b = 0: the prior is a sum of atomic densities and nothing else.

    A perfect crystal or an ideal slab has few distinct neighbour distances: the Gram matrix of
    its radial sums is near-singular (condition numbers of 1e7 on perfect Si8), and a nearly
    unregularised fit uses its near-null directions - Gaussians that cancel at the distances seen
    and are large between them - which blow up on any other structure. Those directions barely
    change the fit, so the largest ridge that keeps the held-out MAE within TOLERANCE of the best
    removes them at almost no cost where the data are, and leaves a well-sampled fit (a rattled
    or disordered structure) essentially unregularised.

    No intercept: on a perfect crystal the sum of all Gaussians over the neighbours (which counts
    the atoms within rcut) is nearly constant, so a constant term can trade against it freely; under
    strain the atom count changes and such a fit shifted the whole density (electron count -17% on
    the GPAW Si8 cell strained by 2%, against +0.4% without the constant; benchmarks/prior_fit.py).
    A sum of atomic densities is also 0 where no atom is within rcut (vacuum), as DFT has it.
    """
    n = len(labels)
    rng = np.random.default_rng(seed)
    order = rng.permutation(n)
    n_held = int(round(held_out * n)) if n >= 10 else 0
    held, fit = order[:n_held], order[n_held:]
    eig = np.linalg.eigvalsh(features.T @ features)
    scale = eig.mean() or 1.0
    condition = float(eig.max() / eig.min()) if eig.min() > 0 else float("inf")
    if n_held:
        maes = []
        for ridge in RIDGES:
            w, b = least_squares(features[fit], labels[fit], ridge, intercept=False)
            maes.append(np.abs(features[held] @ w + b - labels[held]).mean())
        maes = np.array(maes)
        ridge = float(RIDGES[np.flatnonzero(maes <= TOLERANCE * maes.min()).max()])
        mae_held, mae_unreg = float(maes[RIDGES == ridge][0]), float(maes[0])
    else:
        ridge, mae_held, mae_unreg = float(RIDGES[0]), float("nan"), float("nan")
    w, b = least_squares(features, labels, ridge, intercept=False)
    report = FitReport(
        ridge=ridge,
        condition=condition,
        dof=float(np.sum(eig / (eig + ridge * scale))),
        n_weights=features.shape[1],
        mae_in=float(np.abs(features @ w + b - labels).mean()),
        mae_held=mae_held,
        mae_held_unreg=mae_unreg,
        n_points=n,
    )
    return w, b, report
