"""Wall time of the README's example, `bash examples/silicon/run.sh`, step by step.

    python benchmarks/time_example.py

Runs the script from a clean examples/silicon/work/, timestamps each "== n." step line as it is
printed, and reports the total, the time per step and the load average before and after (the
machine is shared: a loaded machine is slower). The README and examples quote its output.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "silicon"


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def main() -> int:
    shutil.rmtree(EXAMPLE / "work", ignore_errors=True)
    load_before = os.getloadavg()
    start = time.perf_counter()
    marks = []
    proc = subprocess.Popen(
        ["bash", str(EXAMPLE / "run.sh")], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    for line in proc.stdout:
        sys.stdout.write(line)
        if line.startswith("== "):
            marks.append((time.perf_counter() - start, line[3:].strip()))
    code = proc.wait()
    total = time.perf_counter() - start
    load_after = os.getloadavg()
    print(f"\nexit status {code}; {os.cpu_count()} cores of {cpu_name()}")
    print(f"load average (1 min) before {load_before[0]:.2f}, after {load_after[0]:.2f}")
    ends = [t for t, _ in marks[1:]] + [total]
    for (t0, name), t1 in zip(marks, ends):
        print(f"{t1 - t0:7.1f} s  {name}")
    print(f"{total:7.1f} s  total ({total / 60:.1f} min)")
    return code


if __name__ == "__main__":
    sys.exit(main())
