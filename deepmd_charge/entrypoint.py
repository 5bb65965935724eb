"""Loaded by DeePMD-kit through the `deepmd` entry-point group: registers the charge plugin."""

from deepmd_charge import argcheck  # noqa: F401  (fitting and loss arguments)
from deepmd_charge.tf import fitting, loss  # noqa: F401  (Fitting "charge", ChargeLoss)
from deepmd_charge.tf import neighbor_stat

neighbor_stat.install()
