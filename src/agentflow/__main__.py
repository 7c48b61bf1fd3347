"""``python -m agentflow``: the ``agentflow`` command, for when it is not on the PATH."""

from agentflow.cli import main

if __name__ == "__main__":
    main(prog_name="python -m agentflow")
