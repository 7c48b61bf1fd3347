"""Give freed heap memory back to the operating system after a large, short-lived allocation.

Taking a snapshot builds and frees tens of megabytes at once (the image, the compacted log),
partly on a worker thread with a malloc arena of its own. glibc keeps such freed memory mapped
until told otherwise, so the master's resident size would keep the high-water mark of every
snapshot. ``malloc_trim(0)`` returns what is free at the top of each arena and whole free pages
inside them. Elsewhere than glibc (macOS, musl) this is a no-op.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging
from collections.abc import Callable

__all__ = ["trim_heap"]

log = logging.getLogger(__name__)


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        trim: Callable[[int], int] = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):  # not glibc
        return None
    return trim


def trim_heap() -> bool:
    """Return free heap memory to the system; False where the C library cannot."""
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True
