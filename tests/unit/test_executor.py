"""Building argv and running attempts (real subprocesses, no master)."""

import asyncio

import pytest

from agentflow.worker.executor import Attempt, build_argv
from agentflow.worker.resources import parse_nvidia_smi


def test_agent_prompt_is_one_argument_never_shell_text() -> None:
    prompt = "fix the bug; rm -rf / $(whoami) 'quoted'"
    argv = build_argv({"agent": "claude", "prompt": prompt}, {"claude": "claude -p {prompt}"})
    assert argv == ["claude", "-p", prompt]


def test_unknown_agent_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match=r"no agent 'codex'.*claude"):
        build_argv({"agent": "codex", "prompt": "x"}, {"claude": "claude -p {prompt}"})


def test_command_runs_through_sh_and_args_do_not() -> None:
    assert build_argv({"command": "echo $HOME"}, {}) == ["/bin/sh", "-c", "echo $HOME"]
    assert build_argv({"args": ["echo", "$HOME"]}, {}) == ["echo", "$HOME"]


def _run(argv: list[str], timeout_s: float | None = None) -> tuple[str, bytes]:
    chunks: list[bytes] = []

    async def go() -> str:
        attempt = Attempt(
            task_id="t",
            token=1,
            argv=argv,
            env={"PATH": "/usr/bin:/bin"},
            cwd=None,
            timeout_s=timeout_s,
            on_output=lambda _s, data: chunks.append(data),
        )
        return (await attempt.run()).status

    return asyncio.run(go()), b"".join(chunks)


def test_attempt_output_and_status() -> None:
    assert _run(["/bin/sh", "-c", "echo hi; echo err >&2"]) == ("completed", b"hi\nerr\n")
    assert _run(["/bin/sh", "-c", "exit 3"])[0] == "failed"
    assert _run(["/nonexistent/program"])[0] == "failed"


def test_background_child_holding_the_pipe_does_not_hang_the_attempt() -> None:
    status, out = _run(["/bin/sh", "-c", "sleep 30 & echo started"], timeout_s=20)
    assert (status, out) == ("completed", b"started\n")


def test_nvidia_smi_parsing() -> None:
    text = "0, NVIDIA H100 80GB HBM3, 81559\n1, NVIDIA H100 80GB HBM3, 81559\n"
    gpus = parse_nvidia_smi(text)
    assert [(g.index, g.name, g.memory_mb) for g in gpus] == [
        (0, "NVIDIA H100 80GB HBM3", 81559),
        (1, "NVIDIA H100 80GB HBM3", 81559),
    ]
    assert parse_nvidia_smi("NVIDIA-SMI has failed because it couldn't communicate\n") == []
