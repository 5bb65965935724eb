"""The code is formatted and lint-clean under the project's ruff.toml (`ruff format`, `ruff check`)."""

import shutil
import subprocess

import pytest

from conftest import ROOT

RUFF = shutil.which("ruff")


@pytest.mark.skipif(RUFF is None, reason="ruff is not installed (pip install -e '.[test]' installs it)")
@pytest.mark.parametrize("command", [["check", "."], ["format", "--check", "."]], ids=["check", "format"])
def test_ruff_is_clean(command):
    proc = subprocess.run([RUFF, *command], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
