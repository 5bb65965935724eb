"""Tabulated prediction graph: the frozen model's per-neighbour networks as interpolation tables.

Every per-neighbour quantity of a charge model is a smooth function of one number per neighbour:
the embedding net G(x) and the learned radial net g(x) of x = (s(r) - avg) / std (the first
column of se_e2_a's normalised environment matrix), and the radial basis phi(r) of the distance.
Prediction spent most of its time evaluating those nets, tanh and all, on every one of the sel
slots (profile_predict.py on the plain graph: embedding 30-47 %, radial net 10-13 %, basis
15-20 %). Here they become piecewise cubic tables, read by one fused kernel of ours
(table_sum.cc, op ChargeDescriptor) that goes from the environment op's outputs to the fitting
net's input row:

    T[c, m] = sum_j em[j, c] G_m(x_j)     D = T^T T< / nnei^2 (se_e2_a's descriptor)
    R[m]    = sum_j s_j g_m(x_j) / nnei   B[k] = sum_j phi_k(r_j)   row = [D, (B - mean) / std, R]

DeePMD-kit's environment op (neighbours, s(r), em) and the frozen fitting net are reused as they
are: the frozen graph is imported twice, once for its environment op and once, with the fitting
net's input row and the two linear paths (R . w, B . w) replaced, for its fitting net. Tables
cover the ghost centre type only (the only local atoms in prediction), the real neighbour types,
and the range prediction can meet (neighbours from CORE_RADIUS to rcut): a few MB of memory, no
file. This is what `dp compress` does for the embedding net alone (docs/large-systems.md). The
tables agree with the plain graph to 1e-10 (float64; tests/test_tabulate.py).
"""

from __future__ import annotations

import os

import numpy as np

from deepmd_charge.grid import CORE_RADIUS

# Piecewise cubics in x. Node spacing is a power of two so that the kernel (table_sum.cc) locates
# intervals exactly; 2^-6 below the near-core zone and 2^-5 in it (r < NEAR_CORE A, large x).
# Measured on the speed benchmark's embedding nets (outputs up to 2.9, 2 x 10^5 random x): max
# interpolation error 3e-12. The quintics used before (2^-7 / 2^-4) gave 6e-13 but cost 6 loads
# and 5 FMAs per column and neighbour against 4 and 3, in tables 2.5x larger: kernel time -25 %
# (float64) and -38 % (float32), best of six interleaved runs of benchmarks/kernel_alone.py.
DEGREE = 3
FINE_STRIDE = 2.0**-6
COARSE_STRIDE = 2.0**-5
NEAR_CORE = 0.7
# the radial basis on r (A): its Gaussians need a finer stride than the nets in x (the speed
# benchmark's float64 model, density at 20,000 points against the plain graph: max difference
# 6e-11 e/A^3 with 2^-8, 4e-12 with 2^-9, 3e-13 with 2^-10)
BASIS_STRIDES = (2.0**-9, 2.0**-5)


def _chebyshev_inverse(degree: int) -> np.ndarray:
    """Inverse Vandermonde matrix of the Chebyshev nodes on [0, 1] (within ~2x of the best fit)."""
    nodes = 0.5 * (1.0 - np.cos((2 * np.arange(degree + 1) + 1) * np.pi / (2 * degree + 2)))
    return nodes, np.linalg.inv(np.vander(nodes, degree + 1, increasing=True))


def unsupported_reason(script: dict, node_names: set) -> str | None:
    """Why the tabulated graph cannot reproduce this model (None if it can)."""
    model = script.get("model", {})
    desc = model.get("descriptor", {})
    if desc.get("type") not in ("se_e2_a", "se_a"):
        return f"descriptor type {desc.get('type')!r} (only se_e2_a is tabulated)"
    if "type_embedding" in model or desc.get("exclude_types"):
        return "type embedding or exclude_types"
    if desc.get("env_protection", 0.0):
        return "env_protection"
    if not any(n.startswith("filter_type_") and "/matrix_" in n for n in node_names):
        return "a compressed model (dp compress): its own tables are used"
    if "o_descriptor" not in node_names:
        return "no descriptor output in the graph"
    return None


#: per precision: does the kernel compute the fitting net's first layer (else TensorFlow's MatMul)?
#: $DP_CHARGE_FUSE_FIRST_LAYER=0/1 overrides it (benchmarks compare both)
FUSE_FIRST_LAYER = {"float64": True, "float32": True}
#: per precision: with the first layer, does the kernel also compute the rest of a tanh fitting net?
#: $DP_CHARGE_FUSE_TAIL=0/1 overrides it
#: (Si64 speed model, 100^3, 2-core Xeon: float64 265-280k against 240-244k points/s, one process;
#: float32, since its tanh is computed in float32: 78% against 74% of predict_speed.py --ceiling)
FUSE_TAIL = {"float64": True, "float32": True}


def _switch(table: dict, env: str, precision: str) -> bool:
    """table[precision], unless the environment variable env says 0 or 1."""
    value = os.environ.get(env)
    return table.get(precision, False) if value is None else value == "1"


_LINEAR_WEIGHTS = {"radial": "charge_radial/linear", "basis": "charge_basis/weights"}


def _linear_paths(graph_def) -> dict:
    """{"radial"/"basis": product tensor} of a frozen charge model's linear paths (tf/fitting.py).

    `dp freeze` keeps only the graph's declared outputs by name, so they are found by structure:
    the matrix product of a sum with its weights (charge_radial/linear, charge_basis/weights).
    """
    found = {}
    for n in graph_def.node:
        if n.op != "MatMul" or len(n.input) < 2:
            continue
        for key, weights in _LINEAR_WEIGHTS.items():
            if n.input[1].split(":")[0] in (weights, weights + "/read"):
                found[key] = n.name + ":0"
    return found


class Table:
    """Piecewise polynomial (DEGREE) interpolation of vector functions of x.

    Two zones: [lower, upper) with FINE_STRIDE and [upper, max) with COARSE_STRIDE;
    coef[k, p, m] multiplies (x - x_k)^p for output column m (table_sum.cc reads this layout).
    """

    def __init__(self, func, x_min: float, x_split: float, x_max: float, degree: int = None, strides=None):
        self.strides = h0, h1 = strides or (FINE_STRIDE, COARSE_STRIDE)
        degree = degree or DEGREE
        nodes, vander_inv = _chebyshev_inverse(degree)
        npow = degree + 1
        self.lower = np.floor(x_min / h1) * h1
        self.upper = max(self.lower + h1, np.ceil(x_split / h1) * h1)
        self.n0 = n0 = int(round((self.upper - self.lower) / h0))
        n1 = int(np.ceil((x_max - self.upper) / h1)) + 1
        self.max = self.upper + n1 * h1
        starts = np.concatenate([self.lower + h0 * np.arange(n0), self.upper + h1 * np.arange(n1)])
        widths = np.concatenate([np.full(n0, h0), np.full(n1, h1)])
        values = func((starts[:, None] + widths[:, None] * nodes).reshape(-1))  # (n * npow, M)
        values = values.reshape(len(starts), npow, values.shape[1])
        coef = np.einsum("pq,kqm->kpm", vander_inv, values)  # in t = (x - x_k) / width
        coef /= widths[:, None, None] ** np.arange(npow)[None, :, None]  # in (x - x_k)
        self.coef = np.ascontiguousarray(coef)  # [K, npow, M]: the kernel's layout, power by power

    def info_row(self, row0: int, avg: float = 0.0, std: float = 1.0) -> np.ndarray:
        """This table's row of table_sum.cc's info input, its coefficients starting at row0."""
        return np.array([self.lower, self.upper, self.max, *self.strides, row0, self.n0, len(self.coef), avg, std])

    def __call__(self, x):
        """numpy evaluation (for tests), as the kernel does it."""
        x = np.asarray(x, dtype=np.float64)
        n0, (h0, h1) = self.n0, self.strides
        k = np.where(x < self.upper, np.floor((x - self.lower) / h0), n0 + np.floor((x - self.upper) / h1)).astype(int)
        k = np.clip(k, 0, len(self.coef) - 1)
        start = np.where(k < n0, self.lower + k * h0, self.upper + (k - n0) * h1)
        t = np.clip(x, self.lower, self.max) - start
        return np.einsum("npm,np->nm", self.coef[k], t[:, None] ** np.arange(self.coef.shape[1]))


def _net_function(consts: dict, scope: str, suffix: str, neuron, activation: str, resnet_dt: bool, precision):
    """x -> DeePMD-kit's embedding_net(x) with the frozen weights, evaluated by DeePMD-kit itself."""
    from deepmd.tf.common import get_activation_func
    from deepmd.tf.env import tf
    from deepmd.tf.utils.network import embedding_net

    consts = dict(consts)
    if resnet_dt:
        # a layer without a residual connection leaves its idt unused, and `dp freeze` drops it;
        # embedding_net still asks for it (any value gives the same output)
        for i, width in enumerate(neuron, start=1):
            consts.setdefault(f"{scope}/idt_{i}{suffix}", np.ones((1, width)))
    graph = tf.Graph()
    with graph.as_default():
        x = tf.placeholder(precision, [None, 1])
        with tf.variable_scope(scope):
            y = embedding_net(
                x,
                list(neuron),
                precision,
                activation_fn=get_activation_func(activation),
                resnet_dt=resnet_dt,
                name_suffix=suffix,
                initial_variables=consts,
            )
        init = tf.global_variables_initializer()

    def f(values):
        with tf.Session(graph=graph) as sess:  # a few calls per model load: no session left open
            sess.run(init)
            return sess.run(y, feed_dict={x: np.asarray(values).reshape(-1, 1)}).astype(np.float64)

    return f


def _constants(graph_def, prefixes) -> dict:
    from deepmd.tf.env import tf

    return {
        n.name: tf.make_ndarray(n.attr["value"].tensor)
        for n in graph_def.node
        if n.op == "Const" and n.name.startswith(tuple(prefixes))
    }


def _layer0_input(graph_def, ghost_type: int) -> str | None:
    """The fitting net's input tensor (the first layer's MatMul operand), or None if not found."""
    for n in graph_def.node:
        if n.op == "MatMul" and n.name.endswith(f"layer_0_type_{ghost_type}/MatMul"):
            return n.input[0] if ":" in n.input[0] else n.input[0] + ":0"
    return None


def _first_layer(nodes: dict, consts: dict, ghost_type: int, layer0: str, dtype) -> tuple | None:
    """(W, b, name of the BiasAdd) of the fitting net's first layer when the kernel can compute it
    (a plain MatMul of the feature row, then a BiasAdd, in the kernel's precision), else None.
    `nodes`: the graph's nodes by name; `consts`: its fitting-net constants (_constants)."""
    scope = f"layer_0_type_{ghost_type}"
    mm, ba = nodes.get(f"{scope}/MatMul"), nodes.get(f"{scope}/BiasAdd")
    if mm is None or ba is None or ba.input[0] != mm.name or mm.attr["transpose_a"].b or mm.attr["transpose_b"].b:
        return None
    if (mm.input[0] if ":" in mm.input[0] else mm.input[0] + ":0") != layer0:
        return None
    w, b = consts.get(f"{scope}/matrix"), consts.get(f"{scope}/bias")
    if w is None or b is None or w.dtype != dtype.as_numpy_dtype or b.dtype != w.dtype:
        return None
    return w, b, ba.name + ":0"


def _tail(nodes: dict, consts: dict, ghost_type: int, n0: int, dtype) -> tuple | None:
    """(widths, residual flags, flat parameters, name of the output layer's BiasAdd) of the fitting net after
    its first layer, for the kernel to compute, or None where it cannot (an activation other than
    tanh, layers it does not recognise). `nodes`, `consts` as for _first_layer."""
    g = f"type_{ghost_type}"
    if nodes.get(f"layer_0_{g}/Tanh") is None:
        return None
    widths, residual, params, nin = [], [], [], n0
    for i in range(1, 100):
        w = consts.get(f"layer_{i}_{g}/matrix")
        if w is None:
            break
        b, idt = consts.get(f"layer_{i}_{g}/bias"), consts.get(f"layer_{i}_{g}/idt")
        nout = w.shape[1]
        if b is None or w.shape[0] != nin or nodes.get(f"layer_{i}_{g}/Tanh") is None:
            return None
        # DeePMD-kit's fitting nets: a layer of the previous width adds to it (times idt if resnet_dt)
        residual.append(int(nout == nin))
        params += [w.ravel(), b.ravel(), (idt if idt is not None else np.ones(nout)).ravel()]
        widths.append(nout)
        nin = nout
    wf, bf = consts.get(f"final_layer_{g}/matrix"), consts.get(f"final_layer_{g}/bias")
    out = nodes.get(f"final_layer_{g}/BiasAdd")
    if wf is None or bf is None or out is None or wf.shape != (nin, 1):
        return None
    flat = np.concatenate([*params, wf.ravel(), bf.ravel()]).astype(dtype.as_numpy_dtype)
    return widths, residual, flat, out.name + ":0"


def build_tabulated_graph(graph_def, script: dict, ghost_type: int, kernel):
    """(graph, output tensor): the frozen model with tabulated networks.

    The graph has the frozen model's placeholders (t_coord, t_type, t_natoms, t_box, t_mesh) and
    is valid when every local atom is a ghost (as in DeepCharge's chunks). `kernel` is the module
    of kernel.load_kernel(). The kernel also computes the fitting net's first layer (by
    FUSE_FIRST_LAYER) and the rest of it (by FUSE_TAIL), or their environment variables say.
    """
    from deepmd.tf.env import tf

    from deepmd_charge.tf.basis import phi

    desc = script["model"]["descriptor"]
    fit = script["model"]["fitting_net"]
    names = {n.name for n in graph_def.node}
    consts = _constants(
        graph_def, ("descrpt_attr/", "filter_type_", "charge_radial/", "charge_basis/", "fitting_attr/t_basis_")
    )
    sel = [int(v) for v in consts["descrpt_attr/sel"]]
    nnei = sum(sel)
    rcut = float(consts["descrpt_attr/rcut"])
    avg = consts["descrpt_attr/t_avg"].reshape(-1, nnei, 4)[ghost_type]
    std = consts["descrpt_attr/t_std"].reshape(-1, nnei, 4)[ghost_type]
    prec = {"float32": tf.float32}.get(desc.get("precision", "default"), tf.float64)
    npprec = prec.as_numpy_dtype
    neuron = list(desc.get("neuron", [10, 20, 40]))
    axis = int(desc.get("axis_neuron", 4))
    n_real = len(sel) - 1  # the ghost type is last
    nbasis = len(consts.get("fitting_attr/t_basis_mean", [])) // n_real
    # the radial net's widths from its weights (the script may hold null for "the default")
    radial_neuron = [
        consts[f"charge_radial/matrix_{i}"].shape[1] for i in range(1, 99) if f"charge_radial/matrix_{i}" in consts
    ]
    bounds = np.cumsum([0] + sel)
    products = _linear_paths(graph_def)
    if bool(radial_neuron) != ("radial" in products) or bool(nbasis) != ("basis" in products):
        raise ValueError(f"radial/basis linear paths not found in the graph ({sorted(products)})")
    radial_net = None
    if radial_neuron:
        radial_net = _net_function(
            consts, "charge_radial", "", radial_neuron, fit.get("activation_function", "tanh"), False, prec
        )

    # per element: embedding (and radial-net) tables on x, stacked; info rows as table_sum.cc reads them
    g_coef, r_coef, info, pads, row0 = [], [], [], [], 0
    for t in range(n_real):
        block = slice(bounds[t], bounds[t + 1])
        if sel[t] == 0:  # no slots: never read
            info.append(np.zeros(10))
            pads.append(np.zeros(neuron[-1]))
            continue
        a0, s0 = float(avg[bounds[t], 0]), float(std[bounds[t], 0])
        if not (np.allclose(avg[block, 0], a0) and np.allclose(std[block, 0], s0)):
            raise ValueError("descriptor statistics differ between slots of one element")
        x_pad = -a0 / s0  # x of an empty slot (s = 0), as the environment op writes it
        x_split = (1.0 / NEAR_CORE - a0) / s0
        x_top = (1.0 / (0.5 * CORE_RADIUS) - a0) / s0
        scope = f"filter_type_{ghost_type}" if f"filter_type_{ghost_type}/matrix_1_{t}" in names else "filter_type_all"
        g_net = _net_function(
            consts,
            scope,
            f"_{t}",
            neuron,
            desc.get("activation_function", "tanh"),
            bool(desc.get("resnet_dt", False)),
            prec,
        )
        tab = Table(g_net, x_pad, x_split, x_top)
        g_coef.append(tab.coef)
        if radial_net is not None:
            r_coef.append(Table(radial_net, x_pad, x_split, x_top).coef)  # the same rows as tab
        info.append(tab.info_row(row0, a0, s0))
        # se_e2_a sums over the empty slots too: each adds G(x_pad) (x) (x_pad, 0, 0, 0)
        pads.append(x_pad * g_net(np.array([x_pad]))[0])
        row0 += len(tab.coef)
    if nbasis:
        # phi is smooth in r but not in x (r(x) has a cube-root branch at rcut): a table on r,
        # the same for every element
        # t_basis_on 0 (an ideal-lattice training set, tf/fitting.py): the graph multiplies the sums by 0
        on = float(consts.get("fitting_attr/t_basis_on", 1.0))
        tab_b = Table(lambda r: on * phi(r, rcut, nbasis), 0.0, rcut, rcut + COARSE_STRIDE, strides=BASIS_STRIDES)
        b_coef, b_info = tab_b.coef, tab_b.info_row(0)
        b_mean, b_std = (consts[f"fitting_attr/t_basis_{k}"] for k in ("mean", "std"))
    else:
        b_coef, b_info, b_mean, b_std = np.zeros((1, DEGREE + 1, 0)), np.zeros(10), np.zeros(0), np.zeros(0)
    r_coef = np.concatenate(r_coef) if r_coef else np.zeros((1, DEGREE + 1, 0))
    lin_w = np.concatenate(
        [consts[_LINEAR_WEIGHTS[k]].reshape(-1) for k in ("radial", "basis") if k in products] + [np.zeros(0)]
    )

    graph = tf.Graph()
    with graph.as_default():
        tf.import_graph_def(graph_def, name="")
        get = graph.get_tensor_by_name
        const = lambda a: tf.constant(np.asarray(a, dtype=npprec))  # noqa: E731
        # the environment op's own outputs (descrpt, descrpt_deriv, rij, nlist): `dp freeze` keeps
        # the o_rij / o_nlist identities only when the model reads them
        env = [op for op in graph.get_operations() if op.type == "ProdEnvMatA"]
        if len(env) != 1:
            raise ValueError(f"{len(env)} ProdEnvMatA ops in the graph (one expected)")
        em, _, rij, nlist = env[0].outputs
        layer0 = _layer0_input(graph_def, ghost_type)
        if layer0 is None:
            raise ValueError("the fitting net's first layer was not found in the graph")
        fused = tail = None
        if _switch(FUSE_FIRST_LAYER, "DP_CHARGE_FUSE_FIRST_LAYER", prec.name):
            nodes = {n.name: n for n in graph_def.node}
            fit_consts = _constants(graph_def, ("layer_", "final_layer_"))
            fused = _first_layer(nodes, fit_consts, ghost_type, layer0, prec)
        w0, b0 = fused[:2] if fused else (np.zeros((0, 0)), np.zeros(0))
        if fused and _switch(FUSE_TAIL, "DP_CHARGE_FUSE_TAIL", prec.name):
            tail = _tail(nodes, fit_consts, ghost_type, w0.shape[1], prec)
        features, linear = kernel.charge_descriptor(
            tf.reshape(em, [-1, nnei * 4]),
            tf.reshape(rij, [-1, nnei * 3]) if nbasis else tf.zeros([0, 0], dtype=em.dtype),  # unread without a basis
            tf.reshape(nlist, [-1, nnei]),
            const(np.concatenate(g_coef)),
            const(info),
            const(pads),
            const(r_coef),
            const(b_coef),
            const(b_info),
            const(b_mean),
            const(b_std),
            tf.constant(lin_w, dtype=tf.float64),
            const(w0),
            const(b0),
            const(tail[2] if tail else np.zeros(0)),
            sel=sel[:n_real],
            axis=axis,
            tail=tail[0] if tail else [],
            tail_residual=tail[1] if tail else [],
        )
        input_map = {}
        if not fused:
            d = features[:, : neuron[-1] * axis]
            input_map["o_descriptor:0"] = tf.reshape(tf.cast(d, get("o_descriptor:0").dtype), [1, -1])
        for p in ("t_coord", "t_type", "t_natoms", "t_box", "t_mesh"):
            input_map[p + ":0"] = get(p + ":0")
        # the linear paths' products (a matrix-vector product each: 6 % of float64 op time)
        for col, key in enumerate(("radial", "basis")):
            if key in products:
                input_map[products[key]] = tf.cast(linear[:, col : col + 1], get(products[key]).dtype)
        # The fitting net's input row itself, as the kernel wrote it, so that the graph's float64
        # concat and cast of it never run; the Shape ops that read the descriptor get its shape
        # (else they would make the descriptor's float64 cast run). Together 15 % of op time in the
        # float32 profile.
        if tail:  # the kernel's output is the output layer's BiasAdd
            input_map[tail[3]] = features
        elif fused:  # the kernel's output is the first layer's BiasAdd; the graph applies the activation
            input_map[fused[2]] = features
        else:
            input_map[layer0] = tf.cast(features, get(layer0).dtype)
        for n in graph_def.node:
            if n.op == "Shape" and n.input[0].split(":")[0] == "o_descriptor":
                shape = tf.stack([1, tf.shape(features, out_type=get(n.name + ":0").dtype)[0] * neuron[-1] * axis])
                input_map[n.name + ":0"] = shape
        (out,) = tf.import_graph_def(graph_def, input_map=input_map, return_elements=["o_atom_dos:0"], name="tabulated")
    return graph, out
