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


def rank_correlation(a, b) -> float:
    """Spearman rank correlation (ties get their average rank); NaN if either input is constant."""
    from scipy.stats import rankdata

    ra, rb = rankdata(np.ravel(a)), rankdata(np.ravel(b))
    ra, rb = ra - ra.mean(), rb - rb.mean()
    denom = np.sqrt(np.sum(ra**2) * np.sum(rb**2))
    return float(np.sum(ra * rb) / denom) if denom > 0 else float("nan")


def uncertainty_score(pred, ref, std, worst: float = 0.01, top: float = 0.05) -> dict:
    """How well a committee deviation `std` ranks the true error |pred - ref| (all e/A^3).

    - dev_mean, dev_max: mean and largest deviation;
    - dev_err_ratio: mean deviation / mean |error| (1 = the deviation has the error's size);
    - spearman: rank correlation of |error| and deviation over the points;
    - worst_in_top_dev: share of the `worst` (1 %) points by |error| that are among the `top`
      (5 %) points by deviation (a deviation that knows nothing scores `top`, a perfect one 1);
    - dev_scale_fit: the factor that would make the deviation's mean square equal the error's on
      these data (a calibration; see `dev_scale_fit`).
    """
    err = np.abs(np.asarray(pred, dtype=np.float64) - np.asarray(ref, dtype=np.float64)).ravel()
    std = np.asarray(std, dtype=np.float64).ravel()
    n_worst, n_top = max(1, int(round(worst * err.size))), max(1, int(round(top * err.size)))
    worst_idx = np.argsort(-err, kind="stable")[:n_worst]
    top_idx = np.argsort(-std, kind="stable")[:n_top]
    mae = float(err.mean())
    return {
        "dev_mean": float(std.mean()),
        "dev_max": float(std.max()),
        "dev_err_ratio": float(std.mean() / mae) if mae > 0 else float("nan"),
        "spearman": rank_correlation(err, std),
        "worst_in_top_dev": float(np.isin(worst_idx, top_idx).mean()) if std.max() > std.min() else float("nan"),
        "dev_scale_fit": dev_scale_fit(pred, ref, std),
    }


def dev_scale_fit(pred, ref, std) -> float:
    """Calibration factor of a committee deviation: sqrt(mean error^2 / mean std^2) over the points.

    The least-squares answer to "by how much must the deviation be multiplied to have the size of
    the error": a deviation multiplied by it has the error's root mean square on these data. Fitted
    on the committee's own training structure, it carries over to unseen structures better than
    the raw deviation does (docs/uncertainty.md). NaN if the deviation is zero everywhere.
    """
    err = np.asarray(pred, dtype=np.float64).ravel() - np.asarray(ref, dtype=np.float64).ravel()
    var = float(np.mean(np.asarray(std, dtype=np.float64).ravel() ** 2))
    return float(np.sqrt(np.mean(err**2) / var)) if var > 0 else float("nan")
