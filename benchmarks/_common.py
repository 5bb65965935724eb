"""What the benchmark scripts share: running a command (dp, dp-charge, pw.x) and stopping on failure."""

from __future__ import annotations

import json
import subprocess
import sys


def sh(cmd, cwd=None, env=None, both: bool = False, label: str = "", tail: int = 2000) -> str:
    """Run `cmd` in `cwd`; its stdout (stdout + stderr with `both`). On failure, exit with the
    command line (prefixed by `label`) and the last `tail` characters of both streams."""
    cmd = [str(c) for c in cmd]
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=env)
    if proc.returncode:
        sys.exit(
            f"{label + ': ' if label else ''}{' '.join(cmd)} failed:\n{proc.stdout[-tail:]}\n{proc.stderr[-tail:]}"
        )
    return proc.stdout + proc.stderr if both else proc.stdout


def override(inp: dict, settings) -> dict:
    """inp with KEY=VALUE settings applied (KEY a dotted path into the input, VALUE JSON)."""
    for item in settings or []:
        key, value = item.split("=", 1)
        *path, last = key.split(".")
        node = inp
        for part in path:
            node = node.setdefault(part, {})
        node[last] = json.loads(value)
    return inp
