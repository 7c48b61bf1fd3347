"""A lock contender for the end-to-end tests: ``python lock_holder.py URL LOCK FILE ROUNDS TTL``.

Each round it takes the lock, appends ``begin <token> <pid>``, pauses, appends ``end <token>
<pid>``, and releases, every append going through a :class:`FencedFile`. It never checks
``lease.lost`` before writing: the fence alone must stop a holder that was paused past its TTL.
Refused appends are counted in ``FILE.refused``.
"""

from __future__ import annotations

import os
import sys
import time

from agentflow.client import Client, FencedFile
from agentflow.errors import StaleTokenError


def main() -> None:
    url, name, path, rounds, ttl = sys.argv[1:6]
    fenced = FencedFile(path)
    pid = os.getpid()
    with Client(url, retry_for_s=30.0) as client:
        for _ in range(int(rounds)):
            with client.lock(name, ttl_s=float(ttl), session=f"holder-{pid}", wait_s=120) as lease:
                for step in ("begin", "end"):
                    try:
                        fenced.append(lease.token, f"{step} {lease.token} {pid}\n")
                    except StaleTokenError:
                        with open(path + ".refused", "a") as out:
                            out.write(f"{step} {lease.token} {pid}\n")
                    if step == "begin":
                        time.sleep(0.1)


if __name__ == "__main__":
    main()
