"""Build (once per machine and TensorFlow version) and load the ChargeDescriptor op (table_sum.cc).

It is compiled on first use with the C++ compiler and TensorFlow's own flags, for the CPU it runs
on (-march=native: the cache key includes the CPU's instruction-set flags, so a home directory
shared by different nodes keeps one build per CPU kind). Without a working compiler, prediction
falls back to the plain frozen graph: same numbers, slower (docs/large-systems.md).
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from functools import lru_cache
from pathlib import Path

log = logging.getLogger(__name__)

SOURCE = Path(__file__).with_name("table_sum.cc")
FLAGS = ["-shared", "-fPIC", "-O3", "-march=native", "-fopenmp-simd"]


def cache_dir() -> Path:
    """Where built kernels live: $DP_CHARGE_CACHE, else ~/.cache/deepmd-charge."""
    return Path(os.environ.get("DP_CHARGE_CACHE") or Path.home() / ".cache" / "deepmd-charge")


def _cpu_flags() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return line
    except OSError:
        pass
    return os.uname().machine


@lru_cache(maxsize=1)
def load_kernel():
    """The op module with `charge_descriptor`, or None (with the reason logged) if it cannot be built."""
    import tensorflow as tf

    cxx = os.environ.get("CXX") or shutil.which("g++") or shutil.which("c++")
    if not cxx:
        log.info("no C++ compiler found: prediction uses the plain frozen graph")
        return None
    key = hashlib.sha256(
        "\n".join([SOURCE.read_text(), " ".join(FLAGS), tf.__version__, tf.sysconfig.get_lib(), _cpu_flags(), cxx]).encode()
    ).hexdigest()[:16]
    lib = cache_dir() / f"table_sum-{key}.so"
    if not lib.exists():
        try:
            lib.parent.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            log.warning("cannot create %s (%s; set DP_CHARGE_CACHE); using the plain frozen graph", lib.parent, err)
            return None
        print(f"deepmd-charge: building the prediction kernel for this machine, once (about 20 s), in {lib.parent}", file=sys.stderr)
        fd, tmp = tempfile.mkstemp(suffix=".so", dir=lib.parent)
        os.close(fd)
        cmd = [cxx, *FLAGS, str(SOURCE), "-o", tmp,
               *tf.sysconfig.get_compile_flags(), *tf.sysconfig.get_link_flags()]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode:
            os.unlink(tmp)
            log.warning("building the prediction kernel failed (%s); using the plain frozen graph:\n%s", " ".join(cmd[:3]), proc.stderr[-1500:])
            return None
        os.replace(tmp, lib)  # atomic: concurrent builders (MPI ranks) never load a half-written file
    try:
        return tf.load_op_library(str(lib))
    except Exception as err:  # a stale or foreign build: say so and go on without it
        log.warning("cannot load %s (%s); using the plain frozen graph", lib, err)
        return None
