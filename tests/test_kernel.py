"""The prediction kernel builds on this machine, falls back through flag sets, and fails quietly once.

CI runs with DP_CHARGE_CACHE set to an empty folder, so test_the_kernel_builds_here compiles it from
scratch on whatever CPU runs the suite: a compiler that cannot build it fails the suite.
"""

import os
import platform
import shutil
import stat
import subprocess
import sys

import pytest

from conftest import EXAMPLE_DFT
from deepmd_charge.tf import kernel


@pytest.fixture
def fresh_kernel(monkeypatch, tmp_path):
    """An empty kernel cache and no remembered load_kernel() result; restored afterwards."""
    monkeypatch.setenv("DP_CHARGE_CACHE", str(tmp_path / "cache"))
    kernel.load_kernel.cache_clear()
    yield tmp_path / "cache"
    kernel.load_kernel.cache_clear()


def _fake_compiler(folder, lines=2000):
    """A 'compiler' that fails with `lines` lines of output and counts its compile calls."""
    script = folder / "fake-g++"
    script.write_text(
        "#!/bin/sh\n"
        'if [ "$1" = "--version" ]; then echo "fake-g++ 1.0"; exit 0; fi\n'
        f'echo call >> "{folder}/calls"\n'
        f'for i in $(seq 1 {lines}); do echo "warning line $i"; done\n'
        'echo "error: the real problem" >&2\n'
        "exit 1\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return script


@pytest.mark.slow  # trains a model or builds the kernel
def test_the_kernel_builds_here(fresh_kernel):
    if not kernel._compiler():
        pytest.fail("no C++ compiler on this machine: install g++ (the fast prediction path needs it)")
    module = kernel.load_kernel()
    logs = list(fresh_kernel.glob("*.log"))
    assert module is not None, f"{kernel.kernel_status()}\n" + "".join(p.read_text()[-4000:] for p in logs)
    assert hasattr(module, "charge_descriptor")
    assert not list(fresh_kernel.glob("*.failed"))


def test_flag_ladder():
    v3 = kernel._X86_V3 | {"avx512f"}
    x86 = kernel.flag_sets("x86_64", v3)
    assert x86[0] == [kernel._X86_NATIVE] and "-mno-avx512fp16" in x86[1]
    assert ["-march=x86-64-v3"] in x86 and x86[-1] == []
    # no x86-64-v3 baseline for a CPU that could not run it
    assert ["-march=x86-64-v3"] not in kernel.flag_sets("x86_64", {"sse4_2", "avx"})
    assert kernel.flag_sets("aarch64", set()) == [["-mcpu=native"], []]


def test_flags_from_the_environment(monkeypatch):
    monkeypatch.setenv(kernel.FLAGS_ENV, "-march=haswell -O2")
    assert kernel.flag_sets("x86_64", set()) == [["-march=haswell", "-O2"]]


@pytest.mark.skipif(platform.machine() != "x86_64" or not shutil.which("g++"), reason="x86-64 with g++ only")
@pytest.mark.slow  # trains a model or builds the kernel
def test_a_cpu_whose_native_flags_break_tensorflows_headers(tmp_path, monkeypatch):
    """A Xeon with AVX512-FP16 (Sapphire Rapids): -march=native fails in Eigen's PacketMathFP16.h.
    Its native flags are simulated by -march=sapphirerapids: the ladder must build with the next set.
    (Only built, not loaded: this CPU may lack some of that target's instructions.)"""
    monkeypatch.setattr(kernel, "_X86_NATIVE", "-march=sapphirerapids")
    probe = subprocess.run(
        ["g++", "-march=sapphirerapids", "-x", "c++", "-E", "-"], input="", capture_output=True, text=True
    )
    if probe.returncode:
        pytest.skip("this g++ does not know -march=sapphirerapids")
    sets = kernel.flag_sets("x86_64", kernel._X86_V3)
    log = tmp_path / "build.log"
    flags = kernel._build("g++", sets, tmp_path / "k.so", log)
    text = log.read_text()
    if "PacketMathFP16.h" in text:  # this TensorFlow's Eigen cannot take AVX512-FP16: the case reported
        assert flags == sets[1], text[-3000:]
    else:  # a TensorFlow whose headers compile there: the first set is kept
        assert flags == sets[0], text[-3000:]
    assert (tmp_path / "k.so").exists() and not list(tmp_path.glob("tmp*.so"))


def test_a_failed_build_is_remembered_logged_and_one_line(fresh_kernel, tmp_path, monkeypatch, capfd):
    monkeypatch.setenv("CXX", str(_fake_compiler(tmp_path)))
    assert kernel.load_kernel() is None
    err = capfd.readouterr().err
    ours = [line for line in err.splitlines() if line.strip()]
    assert len(ours) == 2, err  # "building ..." and "did not build (compiler output: LOG) ..."
    assert "building the prediction kernel" in ours[0] and "plain frozen graph" in ours[1]
    log = next(fresh_kernel.glob("*.log"))
    assert str(log) in ours[1]
    text = log.read_text()
    tried = len(kernel.flag_sets())
    assert text.count("warning line 2000") == tried and text.count("error: the real problem") == tried
    assert len((tmp_path / "calls").read_text().split()) == tried
    # the next call (the next dp-charge run) remembers: no compile, nothing printed
    kernel.load_kernel.cache_clear()
    assert kernel.load_kernel() is None
    assert capfd.readouterr().err == ""
    assert len((tmp_path / "calls").read_text().split()) == tried
    assert "did not build" in kernel.kernel_status() and str(log) in kernel.kernel_status()


def test_user_errors_stay_one_line_and_come_before_any_kernel_work(trained, tmp_path):
    env = dict(os.environ, CXX=str(_fake_compiler(tmp_path)), DP_CHARGE_CACHE=str(tmp_path / "cache"))
    out = tmp_path / "rho"
    for bad in (["--grid", "0", "10", "10"], ["--spacing", "0"], ["--threads", "0"], ["--normalize", "-3"]):
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "deepmd_charge.cli",
                "predict",
                str(trained["model"]),
                str(EXAMPLE_DFT / "perfect" / "POSCAR"),
                "-o",
                str(out),
                *bad,
            ],
            capture_output=True,
            text=True,
            env=env,
        )
        assert proc.returncode == 2, proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1 and "error:" in proc.stderr, proc.stderr
    assert not (tmp_path / "calls").exists() and not (tmp_path / "cache").exists() and not out.exists()


def test_nothing_but_our_lines_on_stderr(trained, tmp_path):
    kernel.load_kernel()  # built once in this test session's cache; the runs below reuse it
    model = str(trained["model"])
    poscar = str(EXAMPLE_DFT / "perfect" / "POSCAR")
    cli = subprocess.run(
        ["dp-charge", "predict", model, poscar, "-o", str(tmp_path / "rho"), "--grid", "8", "8", "8", "--quiet"],
        capture_output=True,
        text=True,
    )
    assert cli.returncode == 0 and cli.stderr == "", cli.stderr
    assert "(tabulated networks)" in cli.stdout
    api = subprocess.run(
        [
            sys.executable,
            "-c",
            f"from ase.io import read; from deepmd_charge import DeepCharge\n"
            f"print(DeepCharge({model!r}).predict(read({poscar!r}), grid=(4, 4, 4)).shape)",
        ],
        capture_output=True,
        text=True,
    )
    assert api.returncode == 0 and api.stderr == "" and "(4, 4, 4)" in api.stdout, api.stderr
    loud = subprocess.run(
        [sys.executable, "-c", "from deepmd_charge.tf.backend import import_backend; import_backend()"],
        capture_output=True,
        text=True,
        env=dict(os.environ, DP_CHARGE_VERBOSE="1"),
    )
    assert loud.returncode == 0 and loud.stderr.strip(), "DP_CHARGE_VERBOSE=1 should show the native start-up messages"
