"""The one-pass strict decoder gives the verdicts of parse-then-walk, on any input.

``jsonbound.loads`` checks numbers while parsing and the depth and surrogates on the text; the
reference here is the plain way (parse everything, then walk the value with ``check_value``).
Both must accept the same inputs with the same values and refuse the same ones with the same
class of error (400 for text that is not JSON, 422 for a value out of bounds).
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agentflow import jsonbound
from agentflow.errors import ClientError, ValidationError

SETTINGS = settings(max_examples=400, deadline=None)

# Strings that try to fool a scan of the text: brackets, quotes, backslashes, escapes.
tricky_text = st.text(alphabet='[]{}"\\/,:u0dD8a \t\n\ud800\udfffé', max_size=12)
values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), tricky_text),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(tricky_text, inner, max_size=3)
    ),
    max_leaves=80,
)


def _reference(data: str | bytes) -> Any:
    """Parse, then walk: what ``loads`` did before it became one pass."""

    def refuse(name: str) -> Any:
        raise ValidationError(f"{name} is not a JSON number")

    try:
        value = json.loads(data, parse_constant=refuse)
    except ValidationError:
        raise
    except RecursionError:
        raise ValidationError("too deep") from None
    except (ValueError, TypeError) as exc:
        raise ClientError(str(exc)) from None
    jsonbound.check_value(value)
    return value


def _verdict(fn: Any, data: str | bytes) -> tuple[str, Any]:
    try:
        return "ok", fn(data)
    except ValidationError:
        return "422", None
    except ClientError:
        return "400", None


def _same_verdict(data: str | bytes) -> None:
    expected = _verdict(_reference, data)
    got = _verdict(jsonbound.loads, data)
    if expected[0] == "ok" and got[0] == "ok":
        assert json.dumps(got[1]) == json.dumps(expected[1])
    else:
        assert got[0] == expected[0], (data, got, expected)


def _nest(value: Any, depth: int) -> Any:
    for _ in range(depth):
        value = [value]
    return value


@SETTINGS
@given(values, st.integers(min_value=0, max_value=70))
def test_values_get_the_verdict_of_parse_then_walk(value: Any, extra: int) -> None:
    text = json.dumps(_nest(value, extra), allow_nan=True, ensure_ascii=False)
    _same_verdict(text)
    _same_verdict(text.encode("utf-8", "surrogatepass"))
    _same_verdict(json.dumps(_nest(value, extra), allow_nan=True))  # \\u escapes


@SETTINGS
@given(
    st.lists(st.sampled_from(['"[["', '"\\\\"', '"\\""', "[", "]", "{}", ",", "0"]), max_size=80)
)
def test_bracket_soup_gets_the_same_verdict(parts: list[str]) -> None:
    _same_verdict("".join(parts))


@pytest.mark.parametrize("depth", [63, 64, 65])
def test_depth_counts_containers_not_brackets_inside_strings(depth: int) -> None:
    """Strings full of brackets neither deepen nor flatten a value."""
    inner: Any = {"k": '"]]]]}}}}\\', "o": "[[[[{{{{"}
    _same_verdict(json.dumps(_nest(inner, depth - 1)))
    wide = [_nest(0, depth - 1)] * 100  # many containers, each within the bound or not
    _same_verdict(json.dumps(wide))
