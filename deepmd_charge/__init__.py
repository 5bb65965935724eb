"""deepmd-charge: learn DFT electron densities with DeePMD-kit and predict them on any grid."""

__version__ = "0.1.0"

__all__ = ["Committee", "DeepCharge", "__version__"]


def __getattr__(name):
    # importing TensorFlow takes seconds: only when DeepCharge is asked for
    if name == "DeepCharge":
        from deepmd_charge.predict import DeepCharge

        return DeepCharge
    if name == "Committee":
        from deepmd_charge.committee import Committee

        return Committee
    raise AttributeError(name)
