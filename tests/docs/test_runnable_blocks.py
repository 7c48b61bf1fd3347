"""The docs' marked code blocks run against a real master and worker (see tests/docs/blocks.py).

One master and one worker serve every doc file; a console block that starts masters of its own
gets its own ports. A snippet that drifts from the code fails here, naming its file and line.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.docs.blocks import ROOT, blocks, doc_files
from tests.docs.session import Session
from tests.e2e.procs import Processes

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Session]:
    root = tmp_path_factory.mktemp("docs")
    workdir = root / "work"
    workdir.mkdir()
    (workdir / ".venv").symlink_to(Path(sys.executable).parent.parent)
    shutil.copytree(ROOT / "examples", workdir / "examples")  # `agentflow run examples/...`
    processes = Processes(root)
    try:
        _, url = processes.master("docs-master")
        processes.worker(  # functions by value run here too (docs/guide/python.md)
            "docs-worker",
            url,
            "--slots",
            "4",
            "--allow-pickled-functions",
            env={"PYTHONPATH": str(workdir)},
        )
        yield Session(workdir=workdir, master_url=url)
    finally:
        processes.close()


@pytest.mark.parametrize("doc", doc_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_marked_blocks_run(doc: Path, session: Session) -> None:
    for block in blocks(doc):
        if block.action is not None:
            session.run(block)


def test_most_blocks_are_checked() -> None:
    """Unmarked blocks are allowed (illustrations, a real agent CLI), but they stay a minority."""
    every = [b for doc in doc_files() for b in blocks(doc)]
    marked = [b for b in every if b.action is not None]
    unmarked = [b.where for b in every if b.action is None]
    assert len(marked) > len(unmarked), f"only {len(marked)} of {len(every)} blocks run: {unmarked}"
