"""One mutant over one range of seeds, in a fresh process: `python -m
agentflow.testing.mutants._child NAME BASE COUNT STEPS MODEL [--no-buggify]`.

The hook goes in before anything imports the simulator (and so the code under test); the
seeds run in order and stop at the first failure. One JSON line on stdout says what
happened: found (with the seed and its failure), survived, pending (the simulation model
the mutant needs does not exist yet) or refused (the mutant does not apply).
"""

from __future__ import annotations

import enum
import json
import sys
from typing import Any

from agentflow.testing.mutants._catalogue import NO_MUTANT, by_name
from agentflow.testing.mutants._hook import MutantRefusedError, install

__all__ = ["main"]


def _model_option(model: str) -> tuple[dict[str, Any], str | None]:
    """The SimConfig keyword that selects ``model``, or why the simulator cannot run it."""
    from agentflow.testing.sim._config import SimConfig

    if model == "raft":
        return {}, None
    field = SimConfig.__dataclass_fields__.get("model")
    if field is None:
        return {}, f'the simulator has no model="{model}" yet'
    default: object = field.default
    if not isinstance(default, enum.Enum):
        return {"model": model}, None
    try:
        return {"model": type(default)(model)}, None  # an enum of models
    except ValueError:
        return {}, f'the simulator has no model="{model}"'


def run(
    name: str, base: int, count: int, steps: int, *, model: str, buggify: bool
) -> dict[str, Any]:
    mutant = by_name(name)
    try:
        finder = None if mutant is NO_MUTANT else install(mutant)
    except MutantRefusedError as exc:
        return {"status": "refused", "reason": str(exc)}
    option, missing = _model_option(model)
    if missing is not None:
        return {"status": "pending", "reason": missing}
    from agentflow.testing.sim import SimConfig, run_seed

    extra: dict[str, Any] = {**option}
    if not buggify:
        extra["buggify"] = False
    for seed in range(base, base + count):
        result = run_seed(SimConfig(seed=seed, steps=steps, **extra))
        if finder is not None and not finder.loaded:
            return {"status": "refused", "reason": f"{mutant.module} was never imported"}
        if not result.ok:
            return {"status": "found", "seed": seed, "failure": _headline(result.failure)}
    return {"status": "survived", "seeds": count}


def _headline(failure: str | None) -> str:
    """One line for the table: the violation, or the exception's last line."""
    lines = [line.strip() for line in (failure or "").splitlines() if line.strip()]
    if not lines:
        return ""
    return lines[-1] if lines[0].startswith("exception at") else lines[0]


def main(argv: list[str]) -> int:
    name, base, count, steps, model = argv[:5]
    buggify = "--no-buggify" not in argv[5:]
    outcome = run(name, int(base), int(count), int(steps), model=model, buggify=buggify)
    print(json.dumps(outcome), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
