"""Calls sent by value: what the SDK, the masters and the workers agree on about them.

A function that a worker cannot import by name (defined in the script being run, in a notebook,
a lambda, a closure), or arguments that are not JSON, travel as one call ``(fn, args, kwargs)``
pickled with cloudpickle, as base64 text in the task's ``pickled`` field. Its return value comes
back pickled the same way (the task's ``result_format`` is ``pickle``), and the SDK unpickles it.

The masters store that text and never decode it: no module of theirs imports a pickle module
(a test checks it); they check only its length and alphabet. Only a worker started with
:data:`WORKER_FLAG` unpickles a call or a parent's pickled result, in a Python runner process;
a task sent by value is placed on such workers only.
"""

from __future__ import annotations

__all__ = [
    "BASE64_PATTERN",
    "MAX_PICKLED_CHARS",
    "NEEDS_WORKER_REASON",
    "NOT_ALLOWED_REASON",
    "WORKER_FLAG",
]

MAX_PICKLED_CHARS = 1 << 20  # base64 characters of one call by value (768 KiB pickled)
BASE64_PATTERN = r"^[A-Za-z0-9+/]*={0,2}$"
WORKER_FLAG = "--allow-pickled-functions"
NEEDS_WORKER_REASON = f"needs a worker with {WORKER_FLAG}"
NOT_ALLOWED_REASON = (
    f"this worker does not run functions sent by value: start it with {WORKER_FLAG}"
)
