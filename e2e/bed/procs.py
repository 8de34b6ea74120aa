"""Process bookkeeping for cluster.py (the bed's control plane and node processes).

A pid alone is not an identity: after a crash the number may belong to someone
else. Every process the bed starts is recorded as (pid, start time), leads its own
process group, and is only signalled after /proc shows the same start time.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path


def proc_start_time(pid: int) -> int | None:
    """Start time of pid in clock ticks since boot (field 22 of /proc/pid/stat); None if gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name may hold spaces and parentheses: split after the last ')'.
    fields = stat[stat.rindex(")") + 2 :].split()
    if fields[0] == "Z":  # a zombie is as good as gone
        return None
    return int(fields[19])


def is_same_process(pid: int, start_time: int | None) -> bool:
    return start_time is not None and proc_start_time(pid) == start_time


def signal_group(pid: int, sig: int) -> None:
    """Signal the process group pid leads (all it spawned), or pid alone if it leads none."""
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        pass
    except PermissionError:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def stop_process(name: str, pid: int, start_time: int | None, grace: float = 10.0) -> None:
    """SIGTERM the process group pid leads, wait up to grace seconds, then SIGKILL it."""
    if not is_same_process(pid, start_time):
        return
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        signal_group(pid, sig)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if not is_same_process(pid, start_time):
                return
            time.sleep(0.1)
    if is_same_process(pid, start_time):
        print(f"{name} (pid {pid}) survived SIGKILL", file=sys.stderr)
