"""Run ``hub`` with this script's arguments, and say its peak RSS on stderr as it exits.

    python core/tests/peak_rss.py accounts --json

The last thing on stderr is the ``VmHWM:`` line of ``/proc/self/status`` (``VmHWM:  35512
kB``): the process's own peak since exec. The rusage of a child spawned with vfork (as
subprocess and posix_spawn do) also counts the parent it was started from (pytest, or the
benchmark holding a populated store), so a child says its own. Used by the tests
(test_store_keyset.py) and the benchmarks (bench/storage.py); Linux only.
"""

from __future__ import annotations

import atexit
import sys
from pathlib import Path


def _say_peak() -> None:
    status = Path("/proc/self/status").read_text()
    sys.stderr.write(status[status.index("VmHWM:") :].split("\n")[0])


if __name__ == "__main__":
    atexit.register(_say_peak)
    from hub_core.cli import main

    sys.argv[0] = "hub"
    main()
