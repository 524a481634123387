"""Time and extra peak memory of one call, measured in a child process.

A benchmark script runs itself again as a child (``--child CASE ...``); the
child builds its input, resets the kernel's peak-RSS counter, records the
resident size as the baseline, runs the case once and prints one JSON line:
seconds, and peak RSS minus baseline. Linux only (``/proc/self``).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def measure_here(run: Callable[[], Any]) -> tuple[dict[str, float], Any]:
    """Run ``run()`` once; return seconds and extra peak RSS (MB), and its result.

    The peak counter is reset first (``/proc/self/clear_refs``), so memory
    used while building the input does not count.
    """
    with open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")
    baseline = _status_kib("VmRSS")
    start = time.perf_counter()
    result = run()
    seconds = time.perf_counter() - start
    extra_mb = (_status_kib("VmHWM") - baseline) * 1024 / 1e6
    return {"seconds": seconds, "extra_mb": extra_mb}, result


def run_child(script: str, arguments: list[str]) -> dict[str, Any]:
    """Run ``script`` with ``arguments`` in a fresh interpreter; return its
    last stdout line, parsed as JSON. A failing child raises with its stderr."""
    done = subprocess.run(
        [sys.executable, script, *arguments], capture_output=True, text=True
    )
    if done.returncode != 0:
        raise RuntimeError(f"{script} {arguments} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])
