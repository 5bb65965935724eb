"""Import TensorFlow and DeePMD-kit's op library without their start-up chatter.

A CPU-only install prints, from C code and on every run: absl's "All log messages before
absl::InitializeLog()", oneDNN and cpu_feature_guard notices, DeePMD-kit's "Cannot find
libcudart.so.12" and a dozen "implib-gen" lines (some of them again when the process exits). None
of it is actionable for a user of dp-charge or DeepCharge, so it is held back; it is shown when the
import fails, or always with DP_CHARGE_VERBOSE=1.
"""

from __future__ import annotations

import atexit
import os
import sys
import tempfile
from contextlib import contextmanager

VERBOSE_ENV = "DP_CHARGE_VERBOSE"


def verbose() -> bool:
    """True when DP_CHARGE_VERBOSE asks for the native libraries' own messages."""
    return os.environ.get(VERBOSE_ENV, "") not in ("", "0")


@contextmanager
def held_stderr():
    """Hold back what C code writes to file descriptor 2; replay it if the block raises."""
    if verbose():
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            yield
        except BaseException:
            os.dup2(saved, 2)
            held.seek(0)
            sys.stderr.write(held.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def _silence_exit() -> None:
    # runs at interpreter exit, after any traceback was printed: the CUDA stubs' unload messages
    # come later, from C destructors
    sys.stderr.flush()
    os.dup2(os.open(os.devnull, os.O_WRONLY), 2)


_imported = False


def import_backend():
    """DeePMD-kit's TensorFlow (deepmd.tf.env.tf), imported quietly once; returns the module."""
    global _imported
    if not _imported:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        with held_stderr():
            import deepmd.tf.env  # noqa: F401  (TensorFlow and DeePMD-kit's op library)
        if not verbose():
            atexit.register(_silence_exit)
        _imported = True
    from deepmd.tf.env import tf

    return tf
