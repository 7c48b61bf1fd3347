"""Commands a leader may apply as it proposed them, because decoding their bytes gives them back.

Every replica applies what it decodes from an entry's bytes. The leader encoded those bytes
from a command object a moment earlier; decoding them again was a sixth of its apply time. It
may apply the object instead only when the object is exactly what decoding gives: the same
values *and the same types* (a tuple where decoding gives a list, a ``str`` subclass, an
``Any`` value msgpack would turn into something else: any of these could make a handler act
differently on the leader than on its followers). :func:`decodes_to_itself` says so, by exact
types, for the kinds whose ``from_wire`` rebuilds exactly their annotations (a test checks
each of them round trip); for anything else the answer is no and the entry is decoded, as on
every other replica.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from agentflow.state._field_predicates import compile_predicate
from agentflow.state.commands import AssignTasks, Command, ReportAttempts, SubmitTasks

__all__ = ["VERBATIM_KINDS", "decodes_to_itself"]

# The hot kinds (one or more per task). Their from_wire gives lists where they annotate list
# and tuples where they annotate tuple; a kind is added here only with that checked.
VERBATIM_KINDS: tuple[type[Command], ...] = (SubmitTasks, AssignTasks, ReportAttempts)
_STRICT: dict[type, Callable[[Any], bool]] = {
    kind: compile_predicate(kind, strict=True) for kind in VERBATIM_KINDS
}


def decodes_to_itself(command: Command) -> bool:
    """Would ``decode_command(encode_command(command))`` equal ``command``, type for type?"""
    strict = _STRICT.get(type(command))
    return strict is not None and strict(command)
