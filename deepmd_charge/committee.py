"""A committee of density models: mean density and per-point standard deviation.

Models trained on different samples of grid points (``dp-charge convert --seed``) and with
different network seeds agree where the training data pinned the density down and disagree
where they extrapolate: the spread of their predictions (the committee deviation) flags the
points, and the structures, whose prediction should not be trusted (docs/uncertainty.md).

>>> com = Committee(["m1.pb", "m2.pb", "m3.pb"])
>>> com.calibrate("train/CHGCAR")       # optional: deviation scaled to the error's size there
>>> mean, std = com.predict(atoms, grid=(48, 48, 48), return_std=True)
>>> for k0, k1, mean, std in com.iter_slabs(atoms, shape):   # bounded memory, any grid size
...     ...

The deviation is the population standard deviation over the members (numpy's default, as
DeePMD-kit's ``dp model-devi``), per grid point, in e/A^3, times `dev_scale` (1 unless the
committee was calibrated: members trained on the same structures agree on part of what they all
get wrong, so the raw deviation is smaller than the error; `dp-charge test` on a structure with DFT,
such as the training one, prints the factor that fits, docs/uncertainty.md).
"""

from __future__ import annotations

import numpy as np

from deepmd_charge.errors import InputError
from deepmd_charge.predict import SLAB_POINTS


class Committee:
    """Several frozen deepmd-charge models of the same elements, evaluated together.

    `models` are paths or already loaded DeepCharge objects. A Committee can be used where a
    DeepCharge is expected (``predict``, ``predict_points``, ``iter_slabs`` give the mean).
    Every deviation it returns is the members' standard deviation times `dev_scale`.
    """

    def __init__(self, models, threads: int | None = None, tabulate: bool = True, dev_scale: float = 1.0):
        from deepmd_charge.predict import DeepCharge

        models = list(models)
        if not models:
            raise InputError("committee", "needs at least one model")
        self.dev_scale = check_dev_scale(dev_scale)
        self.members = [
            m if isinstance(m, DeepCharge) else DeepCharge(m, threads=threads, tabulate=tabulate) for m in models
        ]
        first = self.members[0]
        for m in self.members[1:]:
            if m.type_map != first.type_map:
                raise InputError(
                    m.model_file,
                    f"has type_map {m.type_map}, but {first.model_file} has {first.type_map}: committee members must share their type_map",
                )

    # DeepCharge look-alike ----------------------------------------------------------------------
    def close(self) -> None:
        """Release every member's TensorFlow session."""
        for m in self.members:
            m.close()

    def __enter__(self) -> Committee:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __len__(self):
        return len(self.members)

    @property
    def type_map(self):
        return self.members[0].type_map

    @property
    def elements(self):
        return self.members[0].elements

    @property
    def model_file(self):
        return " ".join(m.model_file for m in self.members)

    @property
    def tabulated(self):
        return all(m.tabulated for m in self.members)

    @property
    def why_not_tabulated(self):
        return next((m.why_not_tabulated for m in self.members if not m.tabulated), "")

    def grid_shape(self, atoms, grid=None, spacing=None):
        return self.members[0].grid_shape(atoms, grid, spacing)

    def check_structure(self, atoms, source="structure"):
        return self.members[0].check_structure(atoms, source)

    # predictions --------------------------------------------------------------------------------
    def iter_slabs(
        self, atoms, shape, slab_points: int = SLAB_POINTS, progress: bool = False, slabs=None, with_std: bool = False
    ):
        """Yield (k0, k1, mean) or, with `with_std`, (k0, k1, mean, std) for runs of z-planes.

        Each member computes the same slab in turn: memory holds one slab per member, never a grid.
        """
        from deepmd_charge.grid import check_shape

        shape = check_shape(shape)
        streams = [m.iter_slabs(atoms, shape, slab_points=slab_points, slabs=slabs) for m in self.members]
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(
                total=int(np.prod(shape)), unit="pt", unit_scale=True, desc=f"predict x{len(self)}", mininterval=0.5
            )
        for items in zip(*streams):
            k0, k1 = items[0][0], items[0][1]
            mean, std = mean_std([item[2] for item in items])
            std *= self.dev_scale
            if bar:
                bar.update(mean.size)
            yield (k0, k1, mean, std) if with_std else (k0, k1, mean)
        if bar:
            bar.close()

    def predict(self, atoms, grid=None, spacing=None, progress: bool = False, return_std: bool = False):
        """Committee mean density (e/A^3) on a grid; with `return_std`, (mean, std)."""
        shape = self.grid_shape(atoms, grid, spacing)
        mean, std = np.empty(shape), np.empty(shape)
        for k0, k1, m, s in self.iter_slabs(atoms, shape, progress=progress, with_std=True):
            mean[:, :, k0:k1], std[:, :, k0:k1] = m, s
        return (mean, std) if return_std else mean

    def calibrate(self, reference, elements=None) -> float:
        """Set `dev_scale` so that the deviation has the error's RMS on a DFT grid (CHGCAR/cube path),
        best the committee's own training structure; returns it (`dp-charge test` prints the same)."""
        from deepmd_charge.evaluate import evaluate_volumetric

        self.dev_scale = 1.0
        fit = evaluate_volumetric(self, reference, elements=elements)["metrics"]["dev_scale_fit"]
        self.dev_scale = check_dev_scale(fit, f"calibration on {reference}")
        return self.dev_scale

    def predict_points(self, atoms, points, progress: bool = False, return_std: bool = False):
        """Committee mean (e/A^3) at cartesian points (M, 3); with `return_std`, (mean, std)."""
        mean, std = mean_std([m.predict_points(atoms, points, progress=progress) for m in self.members])
        return (mean, std * self.dev_scale) if return_std else mean


def check_dev_scale(value, option: str = "dev_scale") -> float:
    """A deviation calibration factor: a positive finite number."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise InputError(option, f"must be a positive number, got {value!r}") from None
    if not (np.isfinite(value) and value > 0):
        raise InputError(option, f"must be a positive number, got {value!r}")
    return value


def mean_std(values):
    """Mean and population standard deviation over the first axis of a list of equal arrays."""
    stack = np.stack(values)
    mean = stack.mean(axis=0)
    return mean, np.sqrt(np.mean((stack - mean) ** 2, axis=0))


def load_models(paths, threads=None, tabulate=True, dev_scale: float = 1.0):
    """One path: a DeepCharge; several: a Committee (its deviation times `dev_scale`)."""
    from deepmd_charge.predict import DeepCharge

    paths = list(paths)
    if len(paths) == 1:
        return DeepCharge(paths[0], threads=threads, tabulate=tabulate)
    return Committee(paths, threads=threads, tabulate=tabulate, dev_scale=dev_scale)


def write_committee_prediction(
    output,
    atoms,
    shape,
    slabs,
    fmt="chgcar",
    std_output=None,
    std_fmt="chgcar",
    trailer: str = "",
    title: str = "",
    normalize: float | None = None,
) -> dict:
    """Write the committee mean to `output` and, if given, the deviation to `std_output`.

    `slabs` yields (k0, k1, mean, std) in order (Committee.iter_slabs(..., with_std=True)).
    A CHGCAR mean is streamed slab by slab; the deviation waits in a memory-mapped temporary
    file next to `std_output` until the mean is written, so memory holds no whole grid.
    With `normalize` (electrons), mean and deviation are scaled by the same factor.
    Returns electrons (before normalising), mean and max deviation (after).
    """
    import tempfile
    from pathlib import Path

    from deepmd_charge.grid import electrons_from_sum
    from deepmd_charge.io.chgcar import write_chgcar, write_chgcar_slabs
    from deepmd_charge.io.cube import write_cube
    from deepmd_charge.predict import assemble_slabs

    shape = tuple(int(n) for n in shape)
    stats = {"sum": 0.0, "dev_sum": 0.0, "dev_max": 0.0}
    tmpdir = tempfile.TemporaryDirectory(prefix=".dp-charge-std.", dir=Path(std_output).parent if std_output else None)
    try:
        store = np.lib.format.open_memmap(Path(tmpdir.name) / "std.npy", mode="w+", shape=shape) if std_output else None

        def means():
            for k0, k1, mean, std in slabs:
                stats["sum"] += float(mean.sum())
                stats["dev_sum"] += float(std.sum())
                stats["dev_max"] = max(stats["dev_max"], float(std.max()))
                if store is not None:
                    store[:, :, k0:k1] = std
                yield k0, k1, mean

        if fmt == "chgcar" and normalize is None:
            write_chgcar_slabs(output, atoms, shape, [(means(), trailer)], title=title)
        else:
            rho = assemble_slabs(means(), shape)
            if normalize is not None:
                rho *= normalize / electrons_from_sum(stats["sum"], rho.size, atoms.cell[:])
            if fmt == "cube":
                write_cube(output, atoms, rho, comment=title)
            else:
                write_chgcar(output, atoms, [rho], trailers=[trailer], title=title)
            del rho
        electrons = electrons_from_sum(stats["sum"], int(np.prod(shape)), atoms.cell[:])
        factor = normalize / electrons if normalize is not None else 1.0
        if store is not None:
            std_title = f"{title} committee deviation (e/A^3)"
            if std_fmt == "cube":
                write_cube(std_output, atoms, np.asarray(store) * factor, comment=std_title)
            else:
                step = max(1, SLAB_POINTS // (shape[0] * shape[1]))
                blocks = (
                    (k, min(k + step, shape[2]), np.asarray(store[:, :, k : k + step]) * factor)
                    for k in range(0, shape[2], step)
                )
                write_chgcar_slabs(std_output, atoms, shape, [(blocks, "")], title=std_title)
            del store
    finally:
        tmpdir.cleanup()
    return {
        "electrons": electrons,
        "dev_mean": stats["dev_sum"] / np.prod(shape) * factor,
        "dev_max": stats["dev_max"] * factor,
    }


def split_models(args):
    """(models, data) from `dp-charge test` arguments: the first is a model, and so is every
    further leading argument whose name ends in .pb; the data (CHGCAR, cube, npy folders) start
    at the first argument that does not."""
    args = [str(a) for a in args]
    n = 1
    while n < len(args) and args[n].lower().endswith(".pb"):
        n += 1
    if n == len(args):
        raise InputError(
            args[-1], "is a model (.pb) and no data follow it: give CHGCAR/cube files or npy folders after the model(s)"
        )
    return args[:n], args[n:]


def format_uncertainty(results, overall, n_models, dev_scale: float = 1.0) -> str:
    """The committee table of `dp-charge test`: how the deviation compares with and ranks the error,
    and the calibration factor these inputs give (`dev_scale_fit`, relative to the raw deviation)."""
    scaled = f" x {dev_scale:g} (--dev-scale)" if dev_scale != 1.0 else ""
    lines = [
        f"committee of {n_models} models: deviation = std over models{scaled}; spearman = rank correlation of |error| and "
        "deviation; worst1%@top5% = share of the 1 % largest errors among the 5 % largest deviations (5 % = no skill); "
        "fit = --dev-scale that gives the deviation the error's RMS",
        f"{'input':40s} {'mean dev':>10s} {'max dev':>10s} {'dev/MAE':>8s} {'spearman':>9s} {'worst1%@top5%':>14s} {'fit':>7s}",
    ]
    rows = [(r["name"], r["metrics"]) for r in results] + ([("overall", overall)] if len(results) > 1 else [])
    for name, m in rows:
        lines.append(
            f"{name:40.40s} {m['dev_mean']:10.3e} {m['dev_max']:10.3e} {m['dev_err_ratio']:8.2f} {m['spearman']:9.3f} "
            f"{100 * m['worst_in_top_dev']:13.1f}% {m['dev_scale_fit']:7.2f}"
        )
    fit = overall["dev_scale_fit"]
    if np.isfinite(fit):
        lines.append(
            f"calibration: on these inputs the deviation matches the error with --dev-scale {fit:.2f}; use it for new "
            "structures when these are the committee's training structures (docs/uncertainty.md)"
        )
    return "\n".join(lines)
