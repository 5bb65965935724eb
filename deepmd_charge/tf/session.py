"""A frozen charge model's TensorFlow side: its graph, one session, one call per batch of points.

predict.py (DeepCharge) cuts the grid into batches and builds each batch's arrays in DeePMD-kit's
"neighbour list in the mesh tensor" layout; this module only turns those arrays into densities.
By default the per-neighbour networks are replaced by interpolation tables (tf/tabulate.py) when
the model's layout allows it.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from deepmd_charge.errors import InputError

#: the frozen graph's input tensors, fed by run() in this order
INPUTS = ("t_coord", "t_type", "t_natoms", "t_box", "t_mesh")


def load_graph(path: Path):
    """The tf.Graph of a frozen model file; InputError if it is not one."""
    from deepmd_charge.tf.backend import import_backend

    tf = import_backend()
    graph_def = tf.GraphDef()
    try:
        graph_def.ParseFromString(Path(path).read_bytes())
    except Exception:  # protobuf raises its own DecodeError types
        raise InputError(
            path, "is not a frozen TensorFlow model (.pb); make one with `dp freeze -o model.pb`"
        ) from None
    graph = tf.Graph()
    with graph.as_default():
        tf.import_graph_def(graph_def, name="")
    return graph


class ChargeSession:
    """A frozen deepmd-charge model loaded into a TensorFlow session.

    rcut, type_map (the ghost type last), ghost_type, precision (numpy dtype of the inputs),
    tabulated / why_not_tabulated; run(coord, atype, natoms, box, mesh) -> density (float64, one
    value per local atom); close().

    Hooks for benchmarks (benchmarks/predict_speed.py, kernel_alone.py, profile_predict.py):
    `output` is the tensor run() fetches (point it at another tensor of `graph` to time part of
    the graph), `inputs` maps the names in INPUTS to the graph's placeholders, and run() calls
    `tf_session.run(output, feed_dict=...)`, so a wrapper set on `tf_session.run` sees every call.
    """

    def __init__(self, model_file, threads: int = 0, tabulate: bool = True):
        from deepmd_charge.tf.backend import import_backend

        tf = import_backend()
        path = Path(model_file)
        self.path = path
        self.tf_session = None
        graph = load_graph(path)
        names = {n.name for n in graph.as_graph_def().node}
        need = {*INPUTS, "model_attr/tmap", "descrpt_attr/rcut"}
        if not need <= names:
            raise InputError(path, "is not a DeePMD-kit model (missing its input tensors)")
        if "train_attr/training_script" not in names or "o_atom_dos" not in names:
            raise InputError(path, "is not a deepmd-charge model (fitting_net type 'charge')")
        config = tf.ConfigProto(
            intra_op_parallelism_threads=threads, inter_op_parallelism_threads=min(threads, 2) if threads else 0
        )
        self.tf_session = tf.Session(graph=graph, config=config)
        self._bind(graph, graph.get_tensor_by_name("o_atom_dos:0"))
        self.script = json.loads(self.value("train_attr/training_script"))
        if self.script.get("model", {}).get("fitting_net", {}).get("type") != "charge":
            self.close()
            raise InputError(path, "is not a deepmd-charge model (its fitting_net type is not 'charge')")
        self.type_map = self.value("model_attr/tmap").decode().split()
        self.ghost_type = len(self.type_map) - 1
        self.rcut = float(self.value("descrpt_attr/rcut"))
        self.precision = self.inputs["t_coord"].dtype.as_numpy_dtype
        self.tabulated = False
        self.why_not_tabulated = "asked for (--plain-graph)"
        if tabulate:
            self._use_tables(names, config)
        self.warm_up()

    def _bind(self, graph, output):
        self.graph, self.output = graph, output
        self.inputs = {name: graph.get_tensor_by_name(name + ":0") for name in INPUTS}

    def _use_tables(self, names, config):
        """Switch to the tabulated graph (tf/tabulate.py) when it can reproduce this model."""
        from deepmd_charge.tf.backend import import_backend
        from deepmd_charge.tf.kernel import kernel_status, load_kernel
        from deepmd_charge.tf.tabulate import build_tabulated_graph, unsupported_reason

        tf = import_backend()
        self.why_not_tabulated = unsupported_reason(self.script, names)
        kernel = None if self.why_not_tabulated else load_kernel()
        if kernel is None:
            self.why_not_tabulated = self.why_not_tabulated or kernel_status()
            return
        try:
            graph, out = build_tabulated_graph(self.graph.as_graph_def(), self.script, self.ghost_type, kernel)
        except Exception as err:  # noqa: BLE001  a layout the tables do not know: the plain graph is right
            self.why_not_tabulated = f"the tables could not be built ({type(err).__name__}: {err})"
            return
        self.tf_session.close()
        self.tf_session = tf.Session(graph=graph, config=config)
        self._bind(graph, out)
        self.tabulated = True

    def value(self, name: str):
        """The value of the graph's tensor `name` (a constant such as "descrpt_attr/rcut")."""
        return self._open().run(self.graph.get_tensor_by_name(name + ":0"))

    def warm_up(self) -> None:
        """One tiny evaluation (one point, one neighbour). TensorFlow optimises a graph on its
        first call (0.1-0.3 s here): that is part of loading the model, not of the first
        prediction's points/s (the stock DeePMD-kit rate in benchmarks/predict_speed.py is also
        measured after a warm-up call)."""
        mesh = np.zeros(19, dtype=np.int32)
        mesh[0], mesh[17], mesh[18] = 1, 1, 1  # one local point (index 0) with one neighbour (index 1)
        natoms = np.zeros(len(self.type_map) + 2, dtype=np.int32)
        natoms[0], natoms[1], natoms[2 + self.ghost_type] = 1, 2, 1
        self.run(
            np.array([1.0, 1.0, 1.0, 0.0, 0.0, 0.0]),
            np.array([self.ghost_type, 0]),
            natoms,
            np.eye(3) * 2 * self.rcut,
            mesh,
        )

    def run(self, coord, atype, natoms, box, mesh) -> np.ndarray:
        """Density (float64, flat) at the local atoms of one batch in the mesh-tensor layout."""
        out = self._open().run(
            self.output,
            feed_dict={
                self.inputs["t_coord"]: np.asarray(coord).reshape(-1).astype(self.precision),
                self.inputs["t_type"]: np.asarray(atype).astype(np.int32),
                self.inputs["t_natoms"]: natoms,
                self.inputs["t_box"]: np.asarray(box).reshape(9).astype(self.precision),
                self.inputs["t_mesh"]: mesh,
            },
        )
        return np.asarray(out, dtype=np.float64).reshape(-1)

    @property
    def closed(self) -> bool:
        return self.tf_session is None

    def _open(self):
        if self.tf_session is None:
            raise RuntimeError(
                f"the model {self.path} was closed (close() or the end of its with block); load it again to predict"
            )
        return self.tf_session

    def close(self) -> None:
        """Release the TensorFlow session (its memory and threads); later calls raise."""
        if self.tf_session is not None:
            self.tf_session.close()
            self.tf_session = None
