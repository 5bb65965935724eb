"""Score a model against DFT: full CHGCAR/cube grids or ghost-point npy systems."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from ase import Atoms
from ase.data import chemical_symbols

from deepmd_charge.errors import InputError
from deepmd_charge.grid import electrons
from deepmd_charge.io.structure import read_volumetric
from deepmd_charge.metrics import score, uncertainty_score


def _is_committee(dc) -> bool:
    return hasattr(dc, "members")


def is_npy_system(path) -> bool:
    path = Path(path)
    return path.is_dir() and (path / "type.raw").is_file()


def evaluate_volumetric(dc, path, elements=None, progress=False, channel="total") -> dict:
    """Predict the whole grid of a CHGCAR/cube file; metrics and integrals (electrons, or moment).

    `channel` picks the block to compare with: "total", or "magnetization" for a spin model.
    """
    vol = read_volumetric(path, elements=elements)
    ref = vol.block(channel)
    dc.check_structure(vol.atoms, path)
    std = None
    if _is_committee(dc):  # a committee: its mean is the prediction, its deviation is scored too
        pred, std = dc.predict(vol.atoms, grid=vol.shape, progress=progress, return_std=True)
    else:
        pred = dc.predict(vol.atoms, grid=vol.shape, progress=progress)
    result = score(pred, ref)
    result["electrons_ref"] = electrons(ref, vol.atoms.cell[:])
    result["electrons_pred"] = electrons(pred, vol.atoms.cell[:])
    out = {"name": str(path), "metrics": result, "ref": ref, "pred": pred, "vol": vol}
    if std is not None:
        result.update(uncertainty_score(pred, ref, std))
        out["std"] = std
    return out


def _ghost_name(data_types, model_ghost, path):
    if model_ghost in data_types:
        return model_ghost
    others = [t for t in data_types if t not in chemical_symbols[1:]]
    if len(others) == 1:
        return others[0]
    raise InputError(
        path,
        f"cannot tell which type is the grid-point type (model's ghost is '{model_ghost}', data types {data_types})",
    )


def evaluate_system(dc, path, label: str | None = None, progress=False) -> dict:
    """Predict the density at every ghost point of a deepmd/npy system (or every grid point of a
    folder in DeePMD-kit's grid layout, io/grid_data.py) and compare to its labels."""
    path = Path(path)
    from deepmd_charge.io.grid_data import is_grid_system, read_grid_system

    if is_grid_system(path):
        frames = list(read_grid_system(path))
        return _scored(dc, path, [(atoms, grid) for atoms, grid, _ in frames], [dens for *_, dens in frames], progress)
    type_map = (path / "type_map.raw").read_text().split() if (path / "type_map.raw").is_file() else None
    types = np.loadtxt(path / "type.raw", dtype=int, ndmin=1)
    if type_map is None:
        raise InputError(path, "has no type_map.raw; cannot tell elements from grid points")
    ghost = type_map.index(_ghost_name(type_map, dc.type_map[-1], path))
    sets = sorted(p for p in path.glob("set.*") if p.is_dir())
    if not sets:
        raise InputError(path, "has no set.* folders")
    cases, refs = [], []
    for set_dir in sets:
        name = label or next((n for n in ("density", "atom_ener") if (set_dir / f"{n}.npy").is_file()), None)
        if name is None or not (set_dir / f"{name}.npy").is_file():
            raise InputError(
                set_dir, f"has no label file {'density.npy or atom_ener.npy' if label is None else name + '.npy'}"
            )
        coords = np.load(set_dir / "coord.npy").reshape(len(np.load(set_dir / "box.npy")), -1, 3)
        boxes = np.load(set_dir / "box.npy").reshape(-1, 3, 3)
        labels = np.load(set_dir / f"{name}.npy").reshape(len(coords), -1)
        real = types != ghost
        symbols = [type_map[t] for t in types[real]]
        # frames of one set usually share their atoms: predict all their ghosts in one call
        groups: dict = {}
        for f in range(len(coords)):
            groups.setdefault((coords[f][real].tobytes(), boxes[f].tobytes()), []).append(f)
        for frames in groups.values():
            atoms = Atoms(symbols, positions=coords[frames[0]][real], cell=boxes[frames[0]], pbc=True)
            cases.append((atoms, np.concatenate([coords[f][~real] for f in frames])))
            refs.append(np.concatenate([labels[f][~real] for f in frames]))
    return _scored(dc, path, cases, refs, progress)


def _scored(dc, path, cases, refs, progress=False) -> dict:
    """Predict at the points of each (atoms, points) case and score against `refs`."""
    preds, stds = [], []
    for atoms, pts in cases:
        if _is_committee(dc):
            mean, std = dc.predict_points(atoms, pts, progress=progress, return_std=True)
            preds.append(mean)
            stds.append(std)
        else:
            preds.append(dc.predict_points(atoms, pts, progress=progress))
    pred, ref = np.concatenate(preds), np.concatenate(refs)
    out = {"name": str(path), "metrics": score(pred, ref), "ref": ref, "pred": pred}
    if stds:
        out["std"] = np.concatenate(stds)
        out["metrics"].update(uncertainty_score(pred, ref, out["std"]))
    return out


# ---- is the comparison meaningful? --------------------------------------------------------------
#: radius (A) of the spheres around nuclei where codes' pseudo-densities differ most
NEAR_NUCLEUS = 0.5
#: warn when the NMAE inside those spheres is above this and ...
NEAR_NMAE_WARN = 0.5
#: ... this many times the NMAE elsewhere (measured: a GPAW model on unseen GPAW cells 2-3x,
#: on Quantum ESPRESSO densities of the same cells 33-39x; docs/theory.md)
NEAR_RATIO_WARN = 10.0
#: warn when the predicted electron count is off by more than this fraction
ELECTRONS_WARN = 0.02


def near_nucleus_nmae(vol, pred, ref, radius: float = NEAR_NUCLEUS):
    """(NMAE within `radius` of any nucleus, NMAE elsewhere, fraction of points within)."""
    from scipy.spatial import cKDTree

    from deepmd_charge.grid import cartesian_points, periodic_images

    points = cartesian_points(vol.atoms.cell[:], vol.shape)
    images, _ = periodic_images(vol.atoms, radius)
    dist, _ = cKDTree(images).query(points, k=1, distance_upper_bound=radius)
    near = (dist < radius).reshape(vol.shape)
    err = np.abs(pred - ref)

    def nmae(mask):
        denominator = np.abs(ref[mask]).sum()
        return float(err[mask].sum() / denominator) if mask.any() and denominator > 0 else float("nan")

    return nmae(near), nmae(~near), float(near.mean())


def check_channel(result: dict, model, channel: str) -> None:
    """InputError when the model's integral matches the other block of the file than `channel`.

    A total-density model scored with --channel magnetization (or a magnetisation model against
    the total density) gives meaningless numbers; its integral tells which block it learned.
    """
    vol = result.get("vol")
    if vol is None or "magnetization" not in vol.block_names:
        return
    predicted = result["metrics"]["electrons_pred"]
    total, moment = vol.electrons(0), vol.electrons(vol.block_names.index("magnetization"))
    if channel == "magnetization" and abs(predicted - total) < abs(predicted - moment):
        raise InputError(
            model,
            f"predicts {predicted:.3f} electrons in {result['name']}: its total density holds {total:.3f}, "
            f"its magnetization {moment:.3f} muB. This looks like a total-density model: leave out "
            "--channel magnetization (channel='magnetization' in Python), or give the model trained on "
            "convert --channel magnetization",
        )
    if channel == "total" and abs(predicted - moment) < abs(predicted - total):
        raise InputError(
            model,
            f"integrates to {predicted:.3f} in {result['name']}, near its magnetization ({moment:.3f} muB), "
            f"not its {total:.3f} electrons. This looks like a magnetization model: add --channel magnetization "
            "(channel='magnetization' in Python)",
        )


def reference_warnings(result: dict, channel: str = "total") -> list:
    """Warnings that the reference may not be comparable with the training data.

    Different DFT codes (and pseudopotentials) give different valence pseudo-densities near the
    nuclei (PAW with compensation charges dips negative there, norm-conserving stays positive), and
    a model reproduces the code it was trained on.
    """
    vol = result.get("vol")
    if vol is None or channel != "total":
        return []
    warnings = []
    m = result["metrics"]
    ref_e, pred_e = m["electrons_ref"], m["electrons_pred"]
    if abs(ref_e) > 1e-6 and abs(pred_e - ref_e) > ELECTRONS_WARN * abs(ref_e):
        warnings.append(
            f"the model predicts {pred_e:.3f} electrons, the reference holds {ref_e:.3f} "
            f"({100 * (pred_e - ref_e) / ref_e:+.1f}%): another DFT code, pseudopotential or number of "
            "valence electrons than the training data, or a structure unlike it?"
        )
    near, far, _ = near_nucleus_nmae(vol, result["pred"], result["ref"])
    m["nmae_near_nuclei"], m["nmae_elsewhere"] = near, far
    if np.isfinite(near) and near > NEAR_NMAE_WARN and (not far > 0 or near > NEAR_RATIO_WARN * far):
        warnings.append(
            f"the error is concentrated within {NEAR_NUCLEUS} A of the nuclei (NMAE {100 * near:.0f}% there, "
            f"{100 * far:.1f}% elsewhere): the reference probably comes from another DFT code or "
            "pseudopotential than the training data; codes' pseudo-densities differ near nuclei (docs/theory.md)"
        )
    return warnings


def table_header(channel: str = "total") -> str:
    """Column titles of `dp-charge test`, with units (a magnetization is in muB/A^3 and muB)."""
    dens, count = ("e/A^3", "electrons pred vs DFT") if channel == "total" else ("muB/A^3", "moment pred vs DFT (muB)")
    return (
        f"{'input':40s} {'points':>9s} {'MAE':>10s} {'RMSE':>10s} {'NMAE':>8s} {'max|err|':>10s} {'R^2':>8s}  {count}\n"
        f"{'':40s} {'':>9s} {'(' + dens + ')':>10s} {'(' + dens + ')':>10s} {'':>8s} {'(' + dens + ')':>10s}"
    )


def write_difference(output, grids: list) -> list:
    """Write model - DFT of each grid result as a CHGCAR (or a cube, by the name); returns the paths.

    One input: `output` itself; several: output_0000, output_0001, ... (trajectory.frame_name).
    """
    from deepmd_charge.io.chgcar import write_chgcar
    from deepmd_charge.io.cube import write_cube
    from deepmd_charge.io.structure import is_cube
    from deepmd_charge.trajectory import frame_name

    paths = []
    for n, result in enumerate(grids):
        path = output if len(grids) == 1 else frame_name(output, n)
        diff = result["pred"] - result["ref"]
        atoms = result["vol"].atoms
        if is_cube(path):
            write_cube(path, atoms, diff, comment=f"deepmd-charge model - DFT for {result['name']} (e/bohr^3)")
        else:
            write_chgcar(path, atoms, [diff], title=f"{atoms.get_chemical_formula()} model - DFT for {result['name']}")
        paths.append(path)
    return paths
