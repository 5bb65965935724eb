"""DeepCharge: a frozen charge model -> density at any points or on any grid.

Why not DeePMD-kit's DeepDOS/DeepPot.eval: with all grid points as atoms of one frame its CPU
neighbour list is brute force over every atom, ghosts included (DESIGN.md: 8.7k points/s at 500
ghosts per call, 460 points/s at 50,000). Here the grid is cut into small spatial bins; each bin's
points are the local atoms of one call and only the real atoms (periodic images included) within
rcut + the bin's half-diagonal are passed as their candidate neighbours, in DeePMD-kit's own
"neighbour list in the mesh tensor" mode. The same C++ environment op then keeps the true
neighbours within rcut. Cost is linear in the number of points and independent of system size.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
from ase import Atoms
from scipy.spatial import cKDTree

from deepmd_charge.convert import CORE_RADIUS, periodic_images
from deepmd_charge.errors import InputError
from deepmd_charge.grid import cartesian_points, check_shape, shape_from_spacing

DEFAULT_SPACING = 0.1
BIN_LENGTH = 1.2  # Angstrom; smaller bins = fewer wasted candidates, more Python calls
CHUNK_POINTS = 8192  # points per TensorFlow call


def _load_graph(path: Path):
    from deepmd.tf.env import tf

    graph_def = tf.GraphDef()
    try:
        graph_def.ParseFromString(path.read_bytes())
    except Exception:  # protobuf raises its own DecodeError types
        raise InputError(path, "is not a frozen TensorFlow model (.pb); make one with `dp freeze -o model.pb`") from None
    graph = tf.Graph()
    with graph.as_default():
        tf.import_graph_def(graph_def, name="")
    return graph


class DeepCharge:
    """A frozen deepmd-charge model (from ``dp freeze``).

    >>> dc = DeepCharge("model.pb")
    >>> rho = dc.predict(atoms, grid=(48, 48, 48))       # e/A^3, rho[i,j,k] at (i/48, j/48, k/48)
    >>> rho_pts = dc.predict_points(atoms, points)        # points: (M, 3) cartesian Angstrom
    """

    def __init__(self, model_file, threads: int | None = None):
        from deepmd.tf.env import tf

        path = Path(model_file)
        if not path.is_file():
            raise InputError(path, "no such model file" if not path.exists() else "is not a file")
        self.model_file = str(path)
        self.graph = _load_graph(path)
        names = {n.name for n in self.graph.as_graph_def().node}
        need = {"t_coord", "t_type", "t_natoms", "t_box", "t_mesh", "model_attr/tmap", "descrpt_attr/rcut"}
        if not need <= names:
            raise InputError(path, "is not a DeePMD-kit model (missing its input tensors)")
        if "train_attr/training_script" not in names or "o_atom_dos" not in names:
            raise InputError(path, "is not a deepmd-charge model (fitting_net type 'charge')")
        threads = threads or int(os.environ.get("OMP_NUM_THREADS", "0") or 0)
        config = tf.ConfigProto(intra_op_parallelism_threads=threads, inter_op_parallelism_threads=min(threads, 2) if threads else 0)
        self.sess = tf.Session(graph=self.graph, config=config)
        get = lambda name: self.sess.run(self.graph.get_tensor_by_name(name + ":0"))  # noqa: E731
        self.script = json.loads(get("train_attr/training_script"))
        if self.script.get("model", {}).get("fitting_net", {}).get("type") != "charge":
            raise InputError(path, "is not a deepmd-charge model (its fitting_net type is not 'charge')")
        self.type_map = get("model_attr/tmap").decode().split()
        self.ghost_type = len(self.type_map) - 1
        self.rcut = float(get("descrpt_attr/rcut"))
        self._t_coord = self.graph.get_tensor_by_name("t_coord:0")
        self._t_type = self.graph.get_tensor_by_name("t_type:0")
        self._t_natoms = self.graph.get_tensor_by_name("t_natoms:0")
        self._t_box = self.graph.get_tensor_by_name("t_box:0")
        self._t_mesh = self.graph.get_tensor_by_name("t_mesh:0")
        self._o_rho = self.graph.get_tensor_by_name("o_atom_dos:0")
        self.precision = self._t_coord.dtype.as_numpy_dtype

    @property
    def elements(self) -> list:
        """Elements the model knows (type_map without the ghost type)."""
        return self.type_map[:-1]

    def _types_of(self, atoms: Atoms, source="structure") -> np.ndarray:
        symbols = atoms.get_chemical_symbols()
        unknown = sorted(set(symbols) - set(self.elements))
        if unknown:
            raise InputError(source, f"has element(s) {unknown} that the model does not know (it knows {self.elements})")
        return np.array([self.type_map.index(s) for s in symbols])

    # ---- public API --------------------------------------------------------------------------
    def predict(self, atoms: Atoms, grid=None, spacing: float | None = None, progress: bool = False, out=None) -> np.ndarray:
        """Density (e/A^3) on the periodic grid `grid` = (nx, ny, nz) of the atoms' cell.

        Without `grid`, the grid has at most `spacing` (default 0.1 A) between points.
        """
        cell = np.asarray(atoms.cell[:])
        shape = check_shape(grid) if grid is not None else shape_from_spacing(cell, spacing or DEFAULT_SPACING)
        points = cartesian_points(cell, shape)
        rho = self.predict_points(atoms, points, progress=progress)
        return rho.reshape(shape)

    def predict_points(self, atoms: Atoms, points, progress: bool = False) -> np.ndarray:
        """Density (e/A^3) at cartesian `points` (M, 3), Angstrom, in a periodic cell."""
        points = np.asarray(points, dtype=np.float64).reshape(-1, 3)
        types = self._types_of(atoms)
        cell = np.asarray(atoms.cell[:], dtype=np.float64)
        if not np.all(atoms.pbc):
            raise InputError("structure", "needs a periodic cell (pbc in all directions); put molecules in a box")
        if abs(np.linalg.det(atoms.cell[:])) < 1e-6:
            raise InputError("structure", "has no cell volume")
        frac = points @ np.linalg.inv(cell)
        points = (frac - np.floor(frac)) @ cell  # the density is periodic
        points, sphere_of = self._substitute_core_points(atoms, points)
        rho = self._evaluate(atoms, types, points, progress)
        if sphere_of is not None:
            n_core, idx, weights = sphere_of
            core_values = np.bincount(idx, weights=rho[n_core:] * weights, minlength=n_core)
            rho = rho[:n_core].copy()
            hits = np.unique(idx)
            rho[hits] = core_values[hits]
        return rho

    # ---- near-nucleus points -----------------------------------------------------------------
    def _substitute_core_points(self, atoms, points):
        """Points within CORE_RADIUS of a nucleus are replaced by a sphere average around it.

        The descriptor's 1/r diverges at a nucleus (NaN exactly on it) and training skips these
        points. The sphere points lie at CORE_RADIUS from the nucleus towards and away from each
        neighbour within rcut, so the set turns with the structure: rotation invariant.
        """
        pos, idx = periodic_images(atoms, CORE_RADIUS)
        dist, near = cKDTree(pos).query(points, k=1, distance_upper_bound=CORE_RADIUS)
        hit = np.flatnonzero(dist < CORE_RADIUS)
        if hit.size == 0:
            return points, None
        images, image_idx = periodic_images(atoms, self.rcut + CORE_RADIUS)
        tree = cKDTree(images)
        extra, owner, weights = [], [], []
        for p in hit:
            center = pos[near[p]]
            neigh = np.asarray(tree.query_ball_point(center, self.rcut))
            vec = images[neigh] - center
            d = np.linalg.norm(vec, axis=1)
            vec = vec[d > 1e-8] / d[d > 1e-8, None]
            if len(vec) == 0:
                vec = np.eye(3)
            dirs = np.concatenate([vec, -vec]) * CORE_RADIUS
            extra.append(center + dirs)
            owner.append(np.full(len(dirs), p))
            weights.append(np.full(len(dirs), 1.0 / len(dirs)))
        n = len(points)
        points = np.concatenate([points] + extra)
        return points, (n, np.concatenate(owner), np.concatenate(weights))

    # ---- evaluation in spatially local chunks -------------------------------------------------
    def _evaluate(self, atoms, types, points, progress):
        cell = np.asarray(atoms.cell[:], dtype=np.float64)
        inv = np.linalg.inv(cell)
        frac = points @ inv
        frac -= np.floor(frac)
        wrapped = frac @ cell
        thickness = 1.0 / np.linalg.norm(inv.T, axis=1)  # distance between opposite faces
        nbins = np.maximum(1, np.floor(thickness / BIN_LENGTH)).astype(int)
        bin_ijk = np.minimum((frac * nbins).astype(int), nbins - 1)
        bin_id = np.ravel_multi_index(bin_ijk.T, nbins)
        order = np.argsort(bin_id, kind="stable")
        bounds = np.flatnonzero(np.diff(bin_id[order])) + 1
        groups = np.split(order, bounds)
        corners = np.array([[i, j, k] for i in (0, 1) for j in (0, 1) for k in (0, 1)]) - 0.5
        half_diag = np.max(np.linalg.norm((corners / nbins) @ cell, axis=1))
        ext_pos, ext_idx = periodic_images(atoms, self.rcut + half_diag)
        ext_types = types[ext_idx]
        tree = cKDTree(ext_pos)
        centers = ((np.array([bin_ijk[g[0]] for g in groups]) + 0.5) / nbins) @ cell
        cand_lists = tree.query_ball_point(centers, self.rcut + half_diag)

        rho = np.empty(len(points))
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=len(points), unit="pt", unit_scale=True, desc="predict", mininterval=0.5)
        batch, batch_n = [], 0
        for g, cands in zip(groups, cand_lists):
            batch.append((g, np.asarray(cands, dtype=np.int64)))
            batch_n += len(g)
            if batch_n >= CHUNK_POINTS:
                self._run_batch(batch, wrapped, ext_pos, ext_types, cell, rho)
                if bar:
                    bar.update(batch_n)
                batch, batch_n = [], 0
        if batch:
            self._run_batch(batch, wrapped, ext_pos, ext_types, cell, rho)
            if bar:
                bar.update(batch_n)
        if bar:
            bar.close()
        return rho

    def _run_batch(self, batch, points, ext_pos, ext_types, cell, rho):
        idx = np.concatenate([g for g, _ in batch])
        nloc = len(idx)
        used = np.unique(np.concatenate([c for _, c in batch]))
        remap = np.full(len(ext_pos), -1, dtype=np.int64)
        remap[used] = nloc + np.arange(len(used))
        numneigh = np.concatenate([np.full(len(g), len(c)) for g, c in batch])
        jlist = np.concatenate([np.tile(remap[c], len(g)) for g, c in batch]) if len(used) else np.zeros(0, int)
        mesh = np.zeros(16 + 2 * nloc + len(jlist), dtype=np.int32)
        mesh[0] = nloc
        mesh[16 : 16 + nloc] = np.arange(nloc)
        mesh[16 + nloc : 16 + 2 * nloc] = numneigh
        mesh[16 + 2 * nloc :] = jlist
        coord = np.concatenate([points[idx], ext_pos[used]]).reshape(-1)
        atype = np.concatenate([np.full(nloc, self.ghost_type), ext_types[used]])
        natoms = np.zeros(len(self.type_map) + 2, dtype=np.int32)
        natoms[0], natoms[1], natoms[2 + self.ghost_type] = nloc, nloc + len(used), nloc
        out = self.sess.run(
            self._o_rho,
            feed_dict={
                self._t_coord: coord.astype(self.precision),
                self._t_type: atype.astype(np.int32),
                self._t_natoms: natoms,
                self._t_box: cell.reshape(9).astype(self.precision),
                self._t_mesh: mesh,
            },
        )
        rho[idx] = np.asarray(out, dtype=np.float64).reshape(-1)
