"""ChargeFitting: DeePMD-kit fitting type "charge" (TensorFlow backend).

Every grid point is an atom of the ghost type (the last entry of type_map). The fitting net maps the
ghost's descriptor to the density there: rho = std * F(D) + mean, with mean and std of the training
labels stored in the model. Real atoms get no network and output 0.

It subclasses DOSFitting so that DeePMD-kit's StandardModel builds a DOSModel around it: that model
only sums per-atom outputs (no force or virial graph), and `dp freeze` of a "dos" model keeps the
per-atom output `o_atom_dos` that prediction reads (one "DOS point" = the density).
"""

from __future__ import annotations

import numpy as np
from deepmd.tf.env import GLOBAL_TF_FLOAT_PRECISION, tf
from deepmd.tf.fit.dos import DOSFitting
from deepmd.tf.fit.fitting import Fitting
from deepmd.tf.utils.errors import GraphWithoutTensorError
from deepmd.tf.utils.graph import get_tensor_by_name_from_graph

from deepmd_charge.argcheck import FITTING_NEURON, RADIAL_BASIS, RADIAL_NEURON
from deepmd_charge.errors import ConfigError
from deepmd_charge.tf import log

# the module, not its names: importing deepmd_charge.tf.loss first loads DeePMD-kit's entry points,
# which import this module while loss.py is still half-initialised
from deepmd_charge.tf import loss as charge_loss
from deepmd_charge.tf.ghost_frame import centre_on_ghosts

#: the defaults of fitting_net/neuron, radial_neuron and radial_basis (argcheck.py, shown by dp doc-train-input)
DEFAULT_NEURON, DEFAULT_RADIAL, DEFAULT_BASIS = FITTING_NEURON, RADIAL_NEURON, RADIAL_BASIS


def check_ghost_setup(type_map, descrpt) -> None:
    """Raise ConfigError unless the last type is a ghost type that sees no other ghosts."""
    from ase.data import chemical_symbols

    if not type_map or len(type_map) < 2 or type_map[-1] in chemical_symbols[1:]:
        raise ConfigError(
            "fitting_net type 'charge' needs model/type_map with the elements followed by the ghost "
            f'type for grid points last, e.g. ["Si", "X"]; got {type_map}'
        )
    sel = getattr(descrpt, "sel_a", None)
    if sel is None:
        sel = getattr(descrpt, "sel", None)
    if isinstance(sel, (list, tuple)) and len(sel) == len(type_map) and sel[-1] != 0:
        raise ConfigError(
            f"fitting_net type 'charge': the ghost type '{type_map[-1]}' (last in type_map) must have "
            f"sel 0 so that grid points never see each other; descriptor sel is {list(sel)}, "
            f"use {list(sel[:-1]) + [0]}"
        )


#: a staircase exp schedule with fewer steps than this over the run is made smooth (smooth_lr_schedule)
MIN_LR_STAIRS = 20


def smooth_lr_schedule(lr) -> None:
    """Make a coarse staircase exp learning-rate schedule decay smoothly to stop_lr at the last step.

    DeePMD-kit's exp schedule drops the rate every `decay_steps` (default 5000) by a factor chosen
    so that it would reach stop_lr at numb_steps: with numb_steps 8000 it falls once, at step
    5000, from 5e-3 to 1e-4, and never reaches stop_lr (issue 17). With fewer than MIN_LR_STAIRS
    drops over the run (and no decay_rate given) this switches the schedule to DeePMD-kit's
    smooth mode, lr(t) = start_lr (stop_lr / start_lr)^(t / numb_steps), and logs it once.
    """
    params = getattr(lr, "_params", None)
    build = getattr(lr, "build", None)
    if not isinstance(params, dict) or build is None or getattr(lr, "_charge_smoothed", False):
        return
    if params.get("type", "exp") != "exp" or params.get("smooth") or params.get("decay_rate") is not None:
        return

    def smoothed_build(global_step, num_steps):
        decay_steps = int(params.get("decay_steps", 5000))
        warmup = int(params.get("warmup_steps") or 0) or int((params.get("warmup_ratio") or 0) * num_steps)
        total = num_steps - warmup
        if decay_steps < total and total / decay_steps < MIN_LR_STAIRS:
            params["smooth"] = True
            start = float(params["start_lr"])
            stop = (
                float(params["stop_lr"])
                if params.get("stop_lr") is not None
                else start * float(params["stop_lr_ratio"])
            )
            log.warning(
                "learning_rate: decay_steps %d over %d steps would drop the rate only %d time(s) and end at "
                '%.1e instead of stop_lr %.1e; using the smooth exp decay ("smooth": true) so that it reaches '
                "stop_lr at the last step (set decay_rate to keep a staircase)",
                decay_steps,
                total,
                total // decay_steps,
                start * (stop / start) ** ((total // decay_steps) * decay_steps / total),
                stop,
            )
        return build(global_step, num_steps)

    lr.build = smoothed_build
    lr._charge_smoothed = True


@Fitting.register("charge")
class ChargeFitting(DOSFitting):
    r"""Charge-density fitting: one scalar per ghost atom (grid point), in e/A^3.

    Parameters
    ----------
    ntypes, dim_descrpt
        Given by the model: number of types (elements + ghost) and descriptor width.
    neuron
        Hidden layer sizes of the fitting net.
    resnet_dt, activation_function, precision, trainable, seed
        As for DeePMD-kit's energy fitting.
    descrpt, type_map
        Given by the model; used to check that the ghost type is last and has sel 0.
    """

    def __init__(
        self,
        ntypes: int,
        dim_descrpt: int,
        neuron: list | None = None,
        resnet_dt: bool = True,
        activation_function: str = "tanh",
        precision: str = "default",
        trainable=None,
        seed: int | None = None,
        descrpt=None,
        type_map: list | None = None,
        mixed_types: bool = False,
        radial_neuron: list | None = None,
        radial_basis: int | None = None,
        basis_trainable: bool = True,
        ghost_centred: bool = True,
        **kwargs,
    ) -> None:
        check_ghost_setup(type_map, descrpt)
        for key in ("numb_fparam", "numb_aparam", "numb_dos"):
            kwargs.pop(key, None)
        super().__init__(
            ntypes=ntypes,
            dim_descrpt=dim_descrpt,
            neuron=neuron if neuron is not None else list(DEFAULT_NEURON),
            resnet_dt=resnet_dt,
            numb_dos=1,
            trainable=trainable,
            seed=seed,
            activation_function=activation_function,
            precision=precision,
            mixed_types=mixed_types,
            type_map=type_map,
            **{k: v for k, v in kwargs.items() if k in ("uniform_seed", "layer_name")},
        )
        self.ghost_type = ntypes - 1
        self.descrpt = descrpt
        # with type embedding (mixed types) build() has no per-element slots: no basis, no radial sums
        has_env = (
            all(hasattr(descrpt, a) for a in ("sel_a", "nnei"))
            and type(descrpt).__name__ == "DescrptSeA"
            and not mixed_types
        )
        if radial_neuron is None:  # default: on where the descriptor's environment matrix is readable
            radial_neuron = list(DEFAULT_RADIAL) if has_env else []
        self.radial_neuron = list(radial_neuron)
        if self.radial_neuron and not has_env:
            raise ConfigError(
                "fitting_net/radial_neuron needs an se_e2_a descriptor without type embedding (it reads its "
                "environment matrix); set it to []"
            )
        if radial_basis is None:
            radial_basis = DEFAULT_BASIS if has_env else 0
        if radial_basis and not has_env:
            raise ConfigError(
                "fitting_net/radial_basis needs an se_e2_a descriptor without type embedding (it reads its neighbour list); set it to 0"
            )
        if radial_basis < 0 or radial_basis == 1:
            raise ConfigError(f"fitting_net/radial_basis must be 0 (off) or at least 2, not {radial_basis}")
        self.radial_basis = int(radial_basis)
        self.ghost_centred = bool(ghost_centred) and has_env
        if self.ghost_centred:
            centre_on_ghosts(descrpt, ntypes)
        self.basis_trainable = bool(basis_trainable)
        self.n_real = ntypes - 1
        self.n_basis_features = self.n_real * self.radial_basis
        self.basis_w = np.zeros(self.n_basis_features)  # least-squares superposition weights (compute_input_stats)
        self.basis_mean = np.zeros(self.n_basis_features)  # feature standardisation for the fitting net input
        self.basis_std = np.ones(self.n_basis_features)
        # 0 switches the basis off (an ideal-lattice training set, compute_input_stats): a graph
        # variable, so a restarted training and the frozen model keep the choice
        self.basis_on = 1.0
        self.rho_mean = 0.0
        self.rho_std = 1.0
        self.radial_variables = None  # from a frozen model (dp compress, --init-frz-model)
        self.label = charge_loss.DEFAULT_LABEL
        self.loss = None  # the ChargeLoss made by get_loss: told the prior's error (divergence warning)
        self.prior_mae = None

    # ---- loss and statistics -------------------------------------------------------------
    def get_loss(self, loss: dict, lr) -> charge_loss.ChargeLoss:
        """The "charge" loss; the loss section may be omitted."""
        loss = dict(loss or {})
        ltype = loss.pop("type", "charge")
        if ltype not in ("charge",):
            raise ConfigError(
                f"fitting_net type 'charge' trains with loss type 'charge' (or no loss section), not '{ltype}'"
            )
        loss_obj = charge_loss.ChargeLoss(starter_learning_rate=lr.start_lr(), ghost_type=self.ghost_type, **loss)
        self.label = loss_obj.label
        self.loss = loss_obj
        smooth_lr_schedule(lr)
        return loss_obj

    def compute_input_stats(self, all_stat: dict, protection: float = 1e-2, stat_file_path=None) -> None:
        """Set the output mean/std from the ghost labels.

        DOSModel.data_stat does not call compute_output_stats, only this method; the label
        statistics are the output counterpart of the descriptor statistics computed next to it.
        """
        super().compute_input_stats(all_stat, protection=protection, stat_file_path=stat_file_path)
        if self.label not in all_stat:
            return
        from deepmd_charge.grid import pair_distances
        from deepmd_charge.tf.basis import IDEAL_SHELL_WIDTH, basis_sums_numpy, distance_shells, regularised_fit

        values, frames = [], []
        for labels, types, coords, boxes in zip(
            all_stat[self.label], all_stat["type"], all_stat["coord"], all_stat["box"]
        ):
            types = np.reshape(types, (-1, np.shape(types)[-1]))
            labels = np.reshape(labels, types.shape)
            coords = np.reshape(coords, types.shape + (3,))
            boxes = np.reshape(boxes, (-1, 3, 3))
            for t, label, xyz, box in zip(types, labels, coords, boxes):
                ghost = t == self.ghost_type
                values.append(label[ghost])
                frames.append((box, xyz[~ghost], t[~ghost], xyz[ghost]))
        values = np.concatenate(values) if values else np.zeros(0)
        if not values.size:
            return
        self.rho_mean = float(values.mean())
        self.rho_std = float(max(values.std(), protection * 1e-2, 1e-6))
        log.info(
            "charge fitting: density mean %.6g, std %.6g e/A^3 over %d ghost points",
            self.rho_mean,
            self.rho_std,
            values.size,
        )
        rcut = self.descrpt.get_rcut()
        n_shells, width = 0, 0.0
        if self.radial_basis:
            # DeePMD-kit's statistics batches repeat frames: each structure's distances once
            structures = {(box.tobytes(), real.tobytes()): (box, real) for box, real, _, _ in frames}
            n_shells, width = distance_shells(np.concatenate([pair_distances(*f, rcut) for f in structures.values()]))
        if self.radial_basis and width < IDEAL_SHELL_WIDTH:
            # A perfect crystal or ideal slab: every interatomic distance within rcut is one of a few
            # values. The superposition fit is then ill-posed, and its extrapolation to a distorted
            # structure is a gamble: on perfect Si8 -> rattled cells it was 0.2-1.6 points of NMAE better
            # than radial_basis 0 with GPAW data and 1.7-3.2 points worse with QE data (docs/benchmarks.md,
            # section 9). Off is the choice that is never worse than radial_basis 0.
            self.basis_on = 0.0
            self.basis_w = np.zeros(self.n_basis_features)
            self.basis_mean = np.zeros(self.n_basis_features)
            self.basis_std = np.ones(self.n_basis_features)
            self.prior_mae = float(np.abs(values - values.mean()).mean())
            log.warning(
                "charge fitting: the training structures are an ideal lattice (every interatomic distance "
                "within rcut is one of %d values, spread at most %.3f A): the radial superposition prior "
                "cannot be fitted from them and is switched off (as radial_basis 0). A model trained on "
                "ideal structures only extrapolates poorly to distorted ones (about 5-12%% NMAE on rattled "
                "silicon): add one rattled or MD structure to the training data",
                n_shells,
                width,
            )
        elif self.radial_basis:
            feats = np.concatenate(
                [
                    basis_sums_numpy(box, real, t, pts, self.n_real, rcut, self.radial_basis)
                    for box, real, t, pts in frames
                ]
            )
            self.basis_mean = feats.mean(axis=0)
            self.basis_std = np.maximum(feats.std(axis=0), 1e-3)
            self.basis_w, _, report = regularised_fit(feats, values)
            resid = values - feats @ self.basis_w
            self.rho_mean = float(resid.mean())  # the network's output offset (the prior has no constant)
            resid = resid - self.rho_mean
            # the network learns what the superposition leaves, scaled to unit variance
            self.rho_std = float(max(resid.std(), protection * 1e-2, 1e-6))
            log.info(
                "charge fitting: radial superposition (%d Gaussians per element) fits the labels to MAE %.4g "
                "(density MAE about its mean %.4g) e/A^3; the network learns the rest",
                self.radial_basis,
                np.abs(resid).mean(),
                np.abs(values - values.mean()).mean(),
            )
            for line in report.lines():
                log.info("charge fitting: %s", line)
            self.prior_mae = float(np.abs(resid).mean())
        else:
            self.prior_mae = float(np.abs(values - values.mean()).mean())
        if self.loss is not None:
            self.loss.set_prior(
                self.prior_mae, "radial superposition" if self.radial_basis and self.basis_on else "mean density"
            )

    # ---- graph ----------------------------------------------------------------------------
    def build(self, inputs, natoms, input_dict=None, reuse=None, suffix: str = ""):
        """Per-atom output [nframes, nloc, 1]: the density at ghosts, 0 at real atoms."""
        input_dict = input_dict or {}
        with tf.variable_scope("fitting_attr" + suffix, reuse=reuse):
            tf.constant(0, name="dfparam", dtype=tf.int32)
            tf.constant(0, name="daparam", dtype=tf.int32)
            tf.constant(1, name="numb_dos", dtype=tf.int32)
            t_mean = tf.get_variable(
                "t_rho_mean",
                [],
                dtype=GLOBAL_TF_FLOAT_PRECISION,
                trainable=False,
                initializer=tf.constant_initializer(self.rho_mean),
            )
            t_std = tf.get_variable(
                "t_rho_std",
                [],
                dtype=GLOBAL_TF_FLOAT_PRECISION,
                trainable=False,
                initializer=tf.constant_initializer(self.rho_std),
            )
            if self.radial_basis:
                t_bmean, t_bstd = (
                    tf.get_variable(
                        name,
                        [self.n_basis_features],
                        dtype=GLOBAL_TF_FLOAT_PRECISION,
                        trainable=False,
                        initializer=tf.constant_initializer(value),
                    )
                    for name, value in (("t_basis_mean", self.basis_mean), ("t_basis_std", self.basis_std))
                )
                t_bon = tf.get_variable(
                    "t_basis_on",
                    [],
                    dtype=GLOBAL_TF_FLOAT_PRECISION,
                    trainable=False,
                    initializer=tf.constant_initializer(self.basis_on),
                )
        g = self.ghost_type
        if not self.mixed_types:
            # DeePMD sorts local atoms by type, so the ghosts are the last natoms[2+g] of each frame;
            # a ghost-centred descriptor (ghost_frame.py) has only those rows, all frames in one
            nframes = input_dict.get("nframes", tf.shape(inputs)[0])
            n_ghost = natoms[2 + g]
            start = natoms[0] - n_ghost
            ghost_inputs = tf.reshape(inputs, [nframes, -1, self.dim_descrpt])[:, -n_ghost:, :]
            dim = extra = self.dim_descrpt
            if self.radial_basis:
                # switched off, the features are 0: no prior, no network input, no gradient for the weights
                basis = self._basis_features(nframes, n_ghost) * t_bon  # [nframes, n_ghost, nfeat]
                normed = (basis - t_bmean) / t_bstd
                ghost_inputs = tf.concat([ghost_inputs, tf.cast(normed, ghost_inputs.dtype)], axis=2)
                extra += self.n_basis_features
            if self.radial_neuron:
                radial = self._radial_features(nframes, n_ghost, reuse, suffix)
                ghost_inputs = tf.concat([ghost_inputs, tf.cast(radial, ghost_inputs.dtype)], axis=2)
                extra += self.radial_neuron[-1]
            self.dim_descrpt = extra
            try:
                out = self._build_lower(
                    0,
                    n_ghost,
                    ghost_inputs,
                    None,
                    None,
                    bias_dos=0.0,
                    type_suffix=f"_type_{g}",
                    suffix=suffix,
                    reuse=reuse,
                )
            finally:
                self.dim_descrpt = dim
            if self.radial_neuron:
                # linear path from the radial sums: sum_j f(r_j), a superposition of atomic densities
                with tf.variable_scope("charge_radial" + suffix, reuse=reuse):
                    init = self.radial_variables and self.radial_variables.get(f"charge_radial{suffix}/linear")
                    w = tf.get_variable(
                        "linear",
                        [self.radial_neuron[-1], 1],
                        dtype=radial.dtype,
                        initializer=tf.zeros_initializer() if init is None else tf.constant_initializer(init),
                        trainable=True,
                    )
                lin = tf.reshape(tf.matmul(tf.reshape(radial, [-1, self.radial_neuron[-1]]), w), [-1, 1])
                out = tf.cast(out, lin.dtype) + lin
            out = tf.reshape(tf.cast(out, GLOBAL_TF_FLOAT_PRECISION), [nframes, n_ghost, 1]) * t_std + t_mean
            if self.radial_basis:
                with tf.variable_scope("charge_basis" + suffix, reuse=reuse):
                    init = (self.radial_variables or {}).get(f"charge_basis{suffix}/weights")
                    w = tf.get_variable(
                        "weights",
                        [self.n_basis_features, 1],
                        dtype=GLOBAL_TF_FLOAT_PRECISION,
                        initializer=tf.constant_initializer(self.basis_w.reshape(-1, 1) if init is None else init),
                        trainable=self.basis_trainable,
                    )
                out = out + tf.reshape(
                    tf.matmul(tf.reshape(basis, [-1, self.n_basis_features]), w), [nframes, n_ghost, 1]
                )
            zeros = tf.zeros([nframes, start, 1], dtype=GLOBAL_TF_FLOAT_PRECISION)
            outs = tf.concat([zeros, out], axis=1)
        else:
            nframes = tf.shape(inputs)[0]
            inputs = tf.reshape(inputs, [-1, natoms[0], self.dim_descrpt])
            atype = tf.reshape(input_dict["atype"], [-1, natoms[1]])[:, : natoms[0]]
            out = self._build_lower(0, natoms[0], inputs, None, None, bias_dos=0.0, suffix=suffix, reuse=reuse)
            out = tf.reshape(tf.cast(out, GLOBAL_TF_FLOAT_PRECISION), [nframes, natoms[0], 1]) * t_std + t_mean
            mask = tf.cast(tf.equal(atype, g), GLOBAL_TF_FLOAT_PRECISION)[:, :, None]
            outs = out * mask
        return outs

    def _basis_features(self, nframes, n_ghost):
        """Radial basis sums per element (basis.py) from the descriptor's neighbour distances."""
        from deepmd_charge.tf.basis import phi

        d = self.descrpt
        nnei = d.nnei
        rij = tf.reshape(d.rij, [nframes, -1, nnei, 3])[:, -n_ghost:]
        nlist = tf.reshape(d.nlist, [nframes, -1, nnei])[:, -n_ghost:]
        r2 = tf.reduce_sum(tf.cast(rij, GLOBAL_TF_FLOAT_PRECISION) ** 2, axis=-1)
        # empty slots (nlist -1) get r = 0, which phi maps to 0; the sqrt is guarded for its gradient
        r = tf.where(nlist >= 0, tf.sqrt(tf.maximum(r2, 1e-12)), tf.zeros_like(r2))
        f = phi(r, float(d.rcut_r), self.radial_basis, xp=tf)  # [nframes, n_ghost, nnei, K]
        # se_e2_a keeps the neighbours of element t in the slots sel[:t].sum() .. sel[:t+1].sum()
        bounds = np.cumsum([0] + list(d.sel_a))
        per_type = [tf.reduce_sum(f[:, :, bounds[t] : bounds[t + 1], :], axis=2) for t in range(self.n_real)]
        return tf.concat(per_type, axis=2)

    def _radial_features(self, nframes, n_ghost, reuse, suffix):
        """Linear radial sums (1/nnei) sum_j s(r_j) g(s_j) over the ghost's real neighbours.

        The se_e2_a descriptor only holds products of such sums; a density is to first order a
        sum of atomic contributions, which these features give directly.
        """
        from deepmd.tf.utils.network import embedding_net

        d = self.descrpt
        nnei = d.nnei
        env = tf.reshape(d.descrpt_reshape, [nframes, -1, nnei, 4])[:, -n_ghost:, :, 0]
        avg = tf.reshape(d.t_avg[self.ghost_type], [nnei, 4])[:, 0]
        std = tf.reshape(d.t_std[self.ghost_type], [nnei, 4])[:, 0]
        s_raw = env * std + avg  # the op's normalisation undone: 0 for empty neighbour slots
        with tf.variable_scope("charge_radial" + suffix, reuse=reuse):
            g = embedding_net(
                tf.cast(tf.reshape(env, [-1, 1]), self.fitting_precision),
                self.radial_neuron,
                self.fitting_precision,
                activation_fn=self.fitting_activation_fn,
                resnet_dt=False,
                seed=self.seed,
                uniform_seed=self.uniform_seed,
                initial_variables=self.radial_variables,
            )
        g = tf.reshape(tf.cast(g, s_raw.dtype), [nframes, -1, nnei, self.radial_neuron[-1]])
        return tf.reduce_sum(g * s_raw[..., None], axis=2) / nnei

    def init_variables(self, graph, graph_def, suffix: str = "") -> None:
        """Take every fitting variable, radial net included, from a frozen model."""
        super().init_variables(graph, graph_def, suffix=suffix)
        prefix = f"charge_radial{suffix}/"
        self.radial_variables = {
            node.name: tf.make_ndarray(node.attr["value"].tensor)
            for node in graph_def.node
            if node.op == "Const"
            and (
                (
                    node.name.startswith(prefix)
                    and node.name[len(prefix) :].split("_")[0] in ("matrix", "bias", "linear")
                )
                or node.name == f"charge_basis{suffix}/weights"
            )
        } or None
        try:
            self.rho_mean = float(get_tensor_by_name_from_graph(graph, f"fitting_attr{suffix}/t_rho_mean"))
            self.rho_std = float(get_tensor_by_name_from_graph(graph, f"fitting_attr{suffix}/t_rho_std"))
            if self.radial_basis:
                self.basis_mean = np.asarray(get_tensor_by_name_from_graph(graph, f"fitting_attr{suffix}/t_basis_mean"))
                self.basis_std = np.asarray(get_tensor_by_name_from_graph(graph, f"fitting_attr{suffix}/t_basis_std"))
                try:
                    self.basis_on = float(get_tensor_by_name_from_graph(graph, f"fitting_attr{suffix}/t_basis_on"))
                except GraphWithoutTensorError:  # a model frozen before the switch existed
                    self.basis_on = 1.0
        except GraphWithoutTensorError:
            pass

    def serialize(self, suffix: str = "") -> dict:
        raise NotImplementedError("charge models exist in the TensorFlow backend only")
