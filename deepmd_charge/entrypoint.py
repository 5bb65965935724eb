"""Loaded by DeePMD-kit through the `deepmd` entry-point group: registers the charge plugin."""

from deepmd_charge import argcheck  # noqa: F401  (fitting and loss arguments)
from deepmd_charge.errors import install_dp_excepthook
from deepmd_charge.tf import fitting, loss, neighbor_stat, train_checks  # noqa: F401  (Fitting "charge", ChargeLoss)

neighbor_stat.install()
train_checks.install()
install_dp_excepthook()
