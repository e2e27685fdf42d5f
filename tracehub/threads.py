"""Names the OS shows for the server's threads and worker processes (`name_os_thread`).

Shared by the store's threads and the collector's decode workers; it imports nothing of tracehub.
"""

from __future__ import annotations

import contextlib
import ctypes

_PR_SET_NAME = 15  # prctl(2)


def name_os_thread(name: str) -> None:
    """Give the calling thread a name the OS shows (`top -H`, /proc/<pid>/task/*/comm, 15 bytes at
    most), so the CPU of the writer, its helpers and the decode workers can be told apart."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).prctl(_PR_SET_NAME, name.encode()[:15])
