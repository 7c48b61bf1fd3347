"""Finding 9, the rules alone: when a template's prompt is one argument; which modules run."""

from __future__ import annotations

import pytest

from agentflow.worker.executor import build_argv, check_template
from agentflow.worker.pyexec import check_module_patterns, module_allowed

PROMPT = "--version; rm -rf ~ $(id)"


@pytest.mark.parametrize(
    "template",
    [
        "claude -p {prompt}",
        "claude -p -- {prompt}",
        "printf %s {prompt}",
        "sh -c 'claude -p \"$AGENTFLOW_PROMPT\"'",
        "sh -c 'claude -p \"$1\"' sh {prompt}",  # a positional parameter, not the script
        "python3 -m agent {prompt}",
        "python3 agent.py {prompt}",
    ],
)
def test_templates_where_the_prompt_is_one_argument_are_accepted(template: str) -> None:
    argv = build_argv({"agent": "a", "prompt": PROMPT}, {"a": template})
    assert argv.count(PROMPT) == (1 if "{prompt}" in template else 0)
    assert all(PROMPT not in word or word == PROMPT for word in argv)


@pytest.mark.parametrize(
    "template",
    [
        "claude --prompt={prompt}",
        "claude -p{prompt}",
        "sh -c 'claude -p {prompt}'",
        "sh -c {prompt}",
        "bash -o pipefail -c {prompt}",
        "/usr/bin/env FOO=1 bash -ec {prompt}",
        "python3.12 -c {prompt}",
        "node -e {prompt}",
        "perl -ne {prompt}",
        "claude 'unbalanced",
        "",
    ],
)
def test_templates_where_the_prompt_is_text_or_code_are_refused(template: str) -> None:
    with pytest.raises(ValueError):
        check_template(template)
    with pytest.raises(ValueError):  # and at run time too, should one get past the start
        build_argv({"agent": "a", "prompt": PROMPT}, {"a": template})


def test_a_prompt_with_a_nul_character_is_refused() -> None:
    with pytest.raises(ValueError, match="NUL"):
        build_argv({"agent": "a", "prompt": "a\0b"}, {"a": "claude -p {prompt}"})


def test_module_allowlist() -> None:
    patterns = ("jobs", "tools.*")
    assert module_allowed("jobs:run", patterns)
    assert not module_allowed("jobs.sub:run", patterns)
    assert module_allowed("tools:run", patterns)
    assert module_allowed("tools.deep.mod:run", patterns)
    assert not module_allowed("toolsx:run", patterns)
    assert not module_allowed("os:system", patterns)
    assert module_allowed("os:system", ())  # no allowlist: any module, as before


@pytest.mark.parametrize("pattern", ["", "a..b", ".rel", "a.*.b", "a b", "*"])
def test_malformed_module_patterns_are_refused(pattern: str) -> None:
    with pytest.raises(ValueError):
        check_module_patterns((pattern,))
