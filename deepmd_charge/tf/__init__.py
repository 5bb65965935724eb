"""The TensorFlow side of deepmd-charge: DeePMD-kit plugins (fitting, loss, neighbour statistics,
training checks), the frozen model's session (session.py) and the prediction kernel."""

import logging

#: the one logger of the tf/ modules: a child of DeePMD-kit's "deepmd" logger, so that what they say
#: appears in `dp train`'s output and log file
log = logging.getLogger("deepmd.charge")
