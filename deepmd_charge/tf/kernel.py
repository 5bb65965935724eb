"""Build (once per machine kind) and load the ChargeDescriptor op (table_sum.cc).

The op is compiled on first use with the C++ compiler and TensorFlow's own flags. Compiler flags
are tried in order and the first set that builds is kept (`flag_sets`): the CPU's own instruction
set first, then the same without extensions TensorFlow's bundled headers cannot compile, then a
portable baseline. Why not just -march=native: on a Xeon with AVX512-FP16 (g++ 12.2, TensorFlow
2.21) Eigen's PacketMathFP16.h fails to compile under it, and the whole fast path was lost.

Everything lives in the cache folder ($DP_CHARGE_CACHE, else ~/.cache/deepmd-charge) under one key
(source, TensorFlow, compiler, CPU flags and the flag ladder): the built library, the full
compiler output (a .log), and, when no flag set built, a .failed marker so that the failure costs
one line per call instead of a 15 s rebuild. Delete the marker (or change any of the key's parts)
to try again. Without a working kernel, prediction falls back to the plain frozen graph: same
numbers, slower (docs/large-systems.md).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

from deepmd_charge.tf import log
from deepmd_charge.tf.backend import held_stderr, import_backend

SOURCE = Path(__file__).with_name("table_sum.cc")
# -fno-trapping-math: TensorFlow runs with floating-point traps off, and only then may g++ evaluate
# both sides of a clamp (tanh_v's); without it the tanh loops stayed scalar whenever AVX-512's
# masks were missing (x86-64-v3: 4.43 against 1.07 ns per float64 value, benchmarks/first_layer_tile.py).
# Results are the same bits: it permits no reassociation or contraction that -O3 does not.
COMMON_FLAGS = ["-shared", "-fPIC", "-O3", "-fopenmp-simd", "-fno-trapping-math"]
# x86 extensions whose intrinsics TensorFlow's bundled Eigen does not compile (PacketMathFP16.h
# with AVX512-FP16 under g++ 12); none of them speeds up our float32/float64 loops
_X86_UNCOMPILABLE = ["-mno-avx512fp16"]
# what x86-64-v3 needs (AVX2, FMA, BMI1/2, F16C, MOVBE, LZCNT as "abm"): only then is it a safe baseline
_X86_V3 = {"avx2", "fma", "bmi1", "bmi2", "f16c", "movbe", "abm"}
_X86_NATIVE = "-march=native"
#: set this to a space-separated flag set to build with exactly those flags (no ladder)
FLAGS_ENV = "DP_CHARGE_CXXFLAGS"


def cache_dir() -> Path:
    """Where built kernels live: $DP_CHARGE_CACHE, else ~/.cache/deepmd-charge."""
    return Path(os.environ.get("DP_CHARGE_CACHE") or Path.home() / ".cache" / "deepmd-charge")


def _cpu_flags() -> set:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):  # x86, aarch64
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def flag_sets(machine: str | None = None, cpu_flags: set | None = None) -> list[list[str]]:
    """Compiler flag sets to try, best first; the last one runs on any CPU of this architecture."""
    if FLAGS_ENV in os.environ:
        return [os.environ[FLAGS_ENV].split()]
    machine = machine or platform.machine()
    cpu_flags = _cpu_flags() if cpu_flags is None else cpu_flags
    if machine in ("x86_64", "AMD64", "i686"):
        sets = [[_X86_NATIVE], [_X86_NATIVE, *_X86_UNCOMPILABLE]]
        if _X86_V3 <= cpu_flags:
            sets.append(["-march=x86-64-v3"])
    elif machine in ("aarch64", "arm64"):
        sets = [["-mcpu=native"]]
    else:
        sets = [["-march=native"]]
    return sets + [[]]  # the compiler's default target: always runnable here


def _compiler() -> str | None:
    return os.environ.get("CXX") or shutil.which("g++") or shutil.which("c++")


def _compiler_version(cxx: str) -> str:
    try:
        return subprocess.run([cxx, "--version"], capture_output=True, text=True, timeout=30).stdout.split("\n", 1)[0]
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def kernel_key(cxx: str, sets: list[list[str]]) -> str:
    """Cache key: what decides whether a build works and what it produces."""
    tf = import_backend()

    parts = [
        SOURCE.read_text(),
        json.dumps(sets),
        tf.__version__,
        tf.sysconfig.get_lib(),
        cxx,
        _compiler_version(cxx),
        platform.machine(),
        " ".join(sorted(_cpu_flags())),
    ]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


@contextmanager
def _build_lock(path: Path):
    """One builder at a time per key (MPI ranks, parallel jobs on a shared home): the others wait
    here and then find the library (or the failure marker) the first one left."""
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _say(message: str) -> None:
    print(f"deepmd-charge: {message}", file=sys.stderr, flush=True)


def _build(cxx: str, sets, lib: Path, logfile: Path) -> list[str] | None:
    """Try each flag set; return the one that built `lib`, or None. Every attempt's full compiler
    output goes to `logfile`."""
    tf = import_backend()

    tf_flags = [*tf.sysconfig.get_compile_flags(), *tf.sysconfig.get_link_flags()]
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=lib.parent)
    os.close(fd)
    try:
        with open(logfile, "w") as out:
            for flags in sets:
                cmd = [cxx, *COMMON_FLAGS, *flags, str(SOURCE), "-o", tmp, *tf_flags]
                out.write(f"$ {' '.join(cmd)}\n")
                out.flush()
                start = time.perf_counter()
                try:
                    proc = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, timeout=600)
                    code = proc.returncode
                except (OSError, subprocess.SubprocessError) as err:
                    out.write(f"{err}\n")
                    code = -1
                out.write(f"# exit {code} after {time.perf_counter() - start:.1f} s\n\n")
                out.flush()
                if code == 0:
                    os.replace(tmp, lib)  # atomic: nobody loads a half-written file
                    return flags
        return None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


@lru_cache(maxsize=1)
def load_kernel():
    """The op module with `charge_descriptor`, or None (the reason in `kernel_status()`)."""
    tf = import_backend()

    global _status
    cxx = _compiler()
    if not cxx:
        _status = "no C++ compiler found (install g++ or set CXX)"
        return None
    sets = flag_sets()
    key = kernel_key(cxx, sets)
    folder = cache_dir()
    lib, failed, logfile = (folder / f"table_sum-{key}{ext}" for ext in (".so", ".failed", ".log"))
    if not lib.exists() and not failed.exists():
        try:
            folder.mkdir(parents=True, exist_ok=True)
            with _build_lock(folder / f"table_sum-{key}.lock"):
                if not lib.exists() and not failed.exists():  # another process may have finished meanwhile
                    _say(f"building the prediction kernel for this machine, once (about 20 s), in {folder}")
                    flags = _build(cxx, sets, lib, logfile)
                    if flags is None:
                        failed.write_text(json.dumps({"compiler": cxx, "tried": sets}) + "\n")
                        _say(
                            f"the prediction kernel did not build (compiler output: {logfile}); "
                            "predictions use the plain frozen graph: same numbers, slower"
                        )
                    else:
                        log.info("prediction kernel built with %s", " ".join(flags) or "the compiler's default target")
        except OSError as err:
            _status = f"cannot write the kernel cache {folder} ({err.strerror or err}; set DP_CHARGE_CACHE)"
            _say(f"{_status}; predictions use the plain frozen graph")
            return None
    if not lib.exists():
        _status = f"the prediction kernel did not build on this machine (see {logfile}; delete {failed.name} to retry)"
        return None
    global _first_module
    if _first_module is not None:
        # TensorFlow registers an op and its kernels once per process: loading a second library
        # with the same op (a rebuilt cache, as in the tests) would register its kernels twice
        # and break every later run ("Multiple OpKernel registrations match")
        _status = f"kernel {lib.name}"
        return _first_module
    try:
        with held_stderr():
            module = tf.load_op_library(str(lib))
    except Exception as err:  # noqa: BLE001  a stale or foreign build: say so and go on without it
        _status = f"cannot load {lib} ({err})"
        _say(f"{_status}; predictions use the plain frozen graph")
        return None
    if not hasattr(module, "charge_descriptor"):
        _status = f"{lib} holds no ChargeDescriptor op"
        return None
    _first_module = module
    _status = f"kernel {lib.name}"
    return module


_status = "not loaded yet"
_first_module = None


def kernel_status() -> str:
    """Why the kernel is (not) in use, for the one-line summaries of `dp-charge predict/test`."""
    return _status
