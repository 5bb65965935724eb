"""Score a model against DFT: full CHGCAR/cube grids or ghost-point npy systems."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from ase import Atoms
from ase.data import chemical_symbols

from deepmd_charge.errors import InputError
from deepmd_charge.io.structure import read_volumetric
from deepmd_charge.metrics import electron_count, score, uncertainty_score


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
    volume = vol.atoms.get_volume()
    result = score(pred, ref)
    result["electrons_ref"] = electron_count(ref, volume)
    result["electrons_pred"] = electron_count(pred, volume)
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
    raise InputError(path, f"cannot tell which type is the grid-point type (model's ghost is '{model_ghost}', data types {data_types})")


def evaluate_system(dc, path, label: str | None = None, progress=False) -> dict:
    """Predict the density at every ghost point of a deepmd/npy system and compare to its labels."""
    path = Path(path)
    type_map = (path / "type_map.raw").read_text().split() if (path / "type_map.raw").is_file() else None
    types = np.loadtxt(path / "type.raw", dtype=int, ndmin=1)
    if type_map is None:
        raise InputError(path, "has no type_map.raw; cannot tell elements from grid points")
    ghost = type_map.index(_ghost_name(type_map, dc.type_map[-1], path))
    sets = sorted(p for p in path.glob("set.*") if p.is_dir())
    if not sets:
        raise InputError(path, "has no set.* folders")
    preds, refs, stds = [], [], []
    for set_dir in sets:
        name = label or next((n for n in ("density", "atom_ener") if (set_dir / f"{n}.npy").is_file()), None)
        if name is None or not (set_dir / f"{name}.npy").is_file():
            raise InputError(set_dir, f"has no label file {'density.npy or atom_ener.npy' if label is None else name + '.npy'}")
        coords = np.load(set_dir / "coord.npy").reshape(len(np.load(set_dir / "box.npy")), -1, 3)
        boxes = np.load(set_dir / "box.npy").reshape(-1, 3, 3)
        labels = np.load(set_dir / f"{name}.npy").reshape(len(coords), -1)
        real = types != ghost
        symbols = [type_map[t] for t in types[real]]
        # frames of one set usually share their atoms: predict all their ghosts in one call
        key = lambda f: (coords[f][real].tobytes(), boxes[f].tobytes())  # noqa: E731
        groups: dict = {}
        for f in range(len(coords)):
            groups.setdefault(key(f), []).append(f)
        for frames in groups.values():
            atoms = Atoms(symbols, positions=coords[frames[0]][real], cell=boxes[frames[0]], pbc=True)
            pts = np.concatenate([coords[f][~real] for f in frames])
            if _is_committee(dc):
                mean, std = dc.predict_points(atoms, pts, progress=progress, return_std=True)
                preds.append(mean)
                stds.append(std)
            else:
                preds.append(dc.predict_points(atoms, pts, progress=progress))
            refs.append(np.concatenate([labels[f][~real] for f in frames]))
    pred, ref = np.concatenate(preds), np.concatenate(refs)
    out = {"name": str(path), "metrics": score(pred, ref), "ref": ref, "pred": pred}
    if stds:
        out["std"] = np.concatenate(stds)
        out["metrics"].update(uncertainty_score(pred, ref, out["std"]))
    return out
