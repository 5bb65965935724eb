"""ChargeLoss: loss type "charge", computed on ghost atoms (grid points) only."""

from __future__ import annotations

import numpy as np
from deepmd.tf.env import tf
from deepmd.tf.loss.loss import Loss
from deepmd.tf.utils.sess import run_sess
from deepmd.utils.data import DataRequirementItem

from deepmd_charge.errors import ConfigError
from deepmd_charge.tf import log

DEFAULT_LABEL = "density"
LOSS_FUNCS = ("mse", "mae", "huber", "relative")
#: the divergence warning fires when the training MAE stays above this multiple of the prior's ...
DIVERGE_RATIO = 1.5
#: ... for this many displayed steps (lcurve.out lines) in a row, step 0 not counted
DIVERGE_DISPLAYS = 3


class ChargeLoss(Loss):
    """Error of the predicted density at the ghost atoms; real atoms are never read.

    Parameters
    ----------
    starter_learning_rate
        Given by the trainer (unused: the loss has no prefactor schedule).
    ghost_type
        Index of the ghost type (the last type).
    loss_func
        "mae" (default), "mse", "huber" or "relative" (|error| / (|label| + relative_floor)).
    huber_delta
        Transition point of the Huber loss, e/A^3.
    relative_floor
        For "relative": added to |label| so that near-zero densities do not dominate, e/A^3.
    label
        Name of the per-atom label file in the data sets (`density` -> `set.*/density.npy`).
    """

    def __init__(
        self,
        starter_learning_rate: float,
        ghost_type: int,
        loss_func: str = "mae",
        huber_delta: float = 0.01,
        relative_floor: float = 0.01,
        label: str = DEFAULT_LABEL,
        **kwargs,
    ) -> None:
        if loss_func not in LOSS_FUNCS:
            raise ConfigError(f"loss/loss_func must be one of {LOSS_FUNCS}, got '{loss_func}'")
        self.starter_learning_rate = starter_learning_rate
        self.ghost_type = ghost_type
        self.loss_func = loss_func
        self.huber_delta = huber_delta
        self.relative_floor = relative_floor
        self.label = label
        self.prior_mae = None  # MAE of the model before training (set_prior)
        self.prior_name = ""
        self._last_step = None
        self._above: list = []  # (step, mae) of the displays in a row above DIVERGE_RATIO x prior
        self.warned = False

    def set_prior(self, mae: float, name: str) -> None:
        """The training MAE of what the network starts from (the radial superposition, or the mean)."""
        self.prior_mae = float(mae)
        self.prior_name = name

    def _ghost_part(self, values, natoms):
        values = tf.cast(tf.reshape(values, [-1, natoms[0]]), tf.float64)
        n_ghost = natoms[2 + self.ghost_type]
        return values[:, natoms[0] - n_ghost :]

    def build(self, learning_rate, natoms, model_dict, label_dict, suffix):
        pred = self._ghost_part(model_dict["atom_dos"], natoms)
        ref = self._ghost_part(label_dict[self.label], natoms)
        diff = pred - ref
        mse = tf.reduce_mean(tf.square(diff), name="l2_rho_" + suffix)
        mae = tf.reduce_mean(tf.abs(diff), name="l1_rho_" + suffix)
        if self.loss_func == "mse":
            loss = mse
        elif self.loss_func == "mae":
            loss = mae
        elif self.loss_func == "relative":
            loss = tf.reduce_mean(tf.abs(diff) / (tf.abs(ref) + self.relative_floor))
        else:
            adiff = tf.abs(diff)
            d = self.huber_delta
            loss = tf.reduce_mean(tf.where(adiff < d, 0.5 * tf.square(diff), d * (adiff - 0.5 * d)))
        find = tf.cast(label_dict["find_" + self.label], tf.float64)
        self.l2_l = find * loss
        self.l2_more = {"mse": self.display_if_exist(mse, find), "mae": self.display_if_exist(mae, find)}
        self.l2_loss_summary = tf.summary.scalar("rmse_rho_" + suffix, tf.sqrt(mse))
        self._step = tf.train.get_or_create_global_step()
        return self.l2_l, self.l2_more

    def eval(self, sess, feed_dict, natoms) -> dict:
        """RMSE and MAE of the density at the ghost atoms, e/A^3 (printed in lcurve.out)."""
        mse, mae, step = run_sess(sess, [self.l2_more["mse"], self.l2_more["mae"], self._step], feed_dict=feed_dict)
        step = int(step)
        if step != self._last_step:  # the first evaluation of a display is the training batch
            self._last_step = step
            self.watch(step, float(mae))
        return {"natoms": natoms[0], "rmse": float(np.sqrt(mse)), "mae": float(mae)}

    def watch(self, step: int, mae: float) -> bool:
        """Warn once when the training MAE stays well above the prior's; True when it warns."""
        if self.prior_mae is None or self.warned or step == 0 or not np.isfinite(self.prior_mae):
            return False
        if not mae > DIVERGE_RATIO * self.prior_mae:
            self._above = []
            return False
        self._above.append((step, mae))
        if len(self._above) < DIVERGE_DISPLAYS:
            return False
        self.warned = True
        log.warning(
            "charge fitting: the training MAE (%.3g e/A^3 at step %d) has stayed above %.1fx that of the %s "
            "the network started from (%.3g) since step %d: the network is making the model worse; lower "
            "learning_rate/start_lr (e.g. to a third) or check the data",
            mae,
            step,
            DIVERGE_RATIO,
            self.prior_name,
            self.prior_mae,
            self._above[0][0],
        )
        return True

    @property
    def label_requirement(self) -> list:
        return [DataRequirementItem(self.label, 1, atomic=True, must=True, high_prec=True)]
