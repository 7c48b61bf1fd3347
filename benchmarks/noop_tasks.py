"""The no-op functions of the fast-path benchmarks (``fast_path.py``), by name.

Workers import them as ``noop_tasks:noop``: the benchmark puts this folder on the workers'
``PYTHONPATH`` (their Python runners inherit it), and imports this module itself from the
same folder, so the SDK names the function instead of sending it by value.
"""

from __future__ import annotations

from typing import Any


def noop(x: Any = None) -> Any:
    """Return the argument: no work, a JSON result, the cost of a call is all there is."""
    return x
