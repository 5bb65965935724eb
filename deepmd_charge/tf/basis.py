"""Radial basis sums: the superposition-of-atomic-densities part of the charge model.

For a grid point with real neighbours j (distance r_j, element t_j) within rcut, the features are

    B[t, k] = sum_{j of element t} phi_k(r_j),   phi_k(r) = exp(-((r - mu_k) / sigma)^2) * fc(r)

with K Gaussians evenly spread over [0, rcut] (sigma = their spacing) and the cosine cutoff
fc(r) = (1 + cos(pi r / rcut)) / 2, which makes every feature smooth where a neighbour crosses
rcut. A density is to first order a sum of atomic contributions: sum_{t,k} w[t, k] B[t, k] is
exactly such a sum, with one learned radial density per element.

The weights w are trainable but start at the least-squares fit to the training labels (done once
in numpy on DeePMD-kit's statistics frames, before training): the network then learns only the
remainder, scaled to unit variance. Both the TensorFlow graph and the numpy fit call `phi`, so the
two agree by construction (tests/test_basis.py checks them against each other).
"""

from __future__ import annotations

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

    from deepmd_charge.convert import periodic_images

    atoms = Atoms(numbers=np.ones(len(positions), dtype=int), positions=positions, cell=cell, pbc=True)
    ext_pos, ext_idx = periodic_images(atoms, rcut)
    ext_types = np.asarray(types)[ext_idx]
    frac = np.asarray(points) @ np.linalg.inv(cell)
    pts = (frac - np.floor(frac)) @ cell
    out = np.zeros((len(pts), ntypes_real, nbasis))
    if len(ext_pos) == 0:
        return out.reshape(len(pts), -1)
    pairs = cKDTree(pts).sparse_distance_matrix(cKDTree(ext_pos), rcut, output_type="coo_matrix")
    contrib = phi(pairs.data, rcut, nbasis)
    np.add.at(out, (pairs.row, ext_types[pairs.col]), contrib)
    return out.reshape(len(pts), -1)


def least_squares(features: np.ndarray, labels: np.ndarray, ridge: float = 1e-6) -> tuple[np.ndarray, float]:
    """Weights w and intercept b minimising |features @ w + b - labels|^2 (+ a tiny ridge)."""
    mean_f = features.mean(axis=0)
    mean_y = labels.mean()
    a = features - mean_f
    gram = a.T @ a
    scale = np.trace(gram) / max(len(gram), 1) or 1.0
    w = np.linalg.solve(gram + ridge * scale * np.eye(len(gram)), a.T @ (labels - mean_y))
    return w, float(mean_y - mean_f @ w)
