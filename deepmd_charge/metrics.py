"""Accuracy measures of a predicted density against a reference (both e/A^3)."""

from __future__ import annotations

import numpy as np


def score(pred, ref) -> dict:
    """MAE, RMSE, NMAE (sum|err| / sum|ref|), max |err|, R^2 and the point count."""
    pred = np.asarray(pred, dtype=np.float64).ravel()
    ref = np.asarray(ref, dtype=np.float64).ravel()
    err = pred - ref
    ss_tot = float(np.sum((ref - ref.mean()) ** 2))
    return {
        "points": int(ref.size),
        "mae": float(np.mean(np.abs(err))),
        "rmse": float(np.sqrt(np.mean(err**2))),
        "nmae": float(np.sum(np.abs(err)) / np.sum(np.abs(ref))),
        "max_abs_err": float(np.max(np.abs(err))),
        "r2": float(1.0 - np.sum(err**2) / ss_tot) if ss_tot > 0 else float("nan"),
    }


def electron_count(rho, volume: float) -> float:
    """Integral of rho over a periodic cell sampled on a uniform grid."""
    return float(np.mean(rho) * volume)
