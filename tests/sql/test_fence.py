"""The fence under a race: a takeover and a deposed writer's append in flight at the same time.

Whichever transaction holds the lease row's lock first decides: an append already past its
check commits before the takeover can (the takeover waits for it, and the new writer then sees
the entry); an append that arrives while a takeover holds the row waits, then sees the new
epoch and is refused. Both orders are forced here by pausing one transaction while it holds the
row, and the other's wait is observed in the database's own lock tables.
"""

import threading
from collections.abc import Callable
from typing import Any

import pytest

from agentflow.cluster.sql import Lease, LogStore, StoreUrl
from agentflow.cluster.sql.dialect import dialect_for
from agentflow.errors import StoreFenced, StoreUnavailable
from tests.sql.conftest import WAIT_S, wait_for

SHORT_TTL_S = 0.5
LONG_TTL_S = 60.0
TIMEOUT_S = 60.0  # lock waits in these tests last as long as the test holds them


class PausingStore(LogStore):
    """A LogStore that, once armed, stops inside its next transaction just after reading the
    lease row (its lock already held) until ``go`` is set."""

    def __init__(self, url: StoreUrl, **kwargs: Any) -> None:
        super().__init__(url, **kwargs)
        self.armed = False
        self.paused = threading.Event()
        self.go = threading.Event()

    def _lease_row(self, cur: Any) -> Lease:
        row = super()._lease_row(cur)
        if self.armed:
            self.armed = False
            self.paused.set()
            assert self.go.wait(WAIT_S)
        return row


def _lock_waiters(url: StoreUrl) -> int:
    sql = {
        "postgresql": "SELECT COUNT(*) FROM pg_stat_activity"
        " WHERE datname = current_database() AND wait_event_type = 'Lock'",
        "mysql": "SELECT COUNT(*) FROM information_schema.INNODB_TRX WHERE trx_state = 'LOCK WAIT'",
    }[url.dialect]
    conn = dialect_for(url).connect(url, 10.0)
    try:
        cur = conn.cursor()
        cur.execute(sql)
        count = int(cur.fetchone()[0])
        conn.commit()
        return count
    finally:
        conn.close()


class Background:
    """``fn()`` on a thread; its result or exception, once done."""

    def __init__(self, fn: Callable[[], Any]) -> None:
        self.result: Any = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(fn,), daemon=True)
        self.thread.start()

    def _run(self, fn: Callable[[], Any]) -> None:
        try:
            self.result = fn()
        except BaseException as exc:
            self.error = exc

    def join(self) -> Any:
        self.thread.join(WAIT_S)
        assert not self.thread.is_alive(), "still running"
        if self.error is not None:
            raise self.error
        return self.result


def test_an_append_past_its_check_commits_before_the_takeover(
    make_store: Callable[..., LogStore], url: StoreUrl
) -> None:
    old_writer: PausingStore = make_store(PausingStore, timeout_s=TIMEOUT_S)
    new_writer = make_store(timeout_s=TIMEOUT_S)
    old_writer.migrate("c1")
    old = old_writer.acquire("a", "http://a", SHORT_TTL_S)
    assert old is not None
    old_writer.append(old, 1, [b"first"])

    old_writer.armed = True
    append = Background(lambda: old_writer.append(old, 2, [b"in flight"]))
    assert old_writer.paused.wait(WAIT_S)  # checked (live), share lock held, not committed
    wait_for(lambda: new_writer.lease().remaining_s <= 0, "the lease expired by the db's clock")
    takeover = Background(lambda: new_writer.acquire("b", "http://b", LONG_TTL_S))
    wait_for(lambda: _lock_waiters(url) >= 1, "the takeover waits on the lease row")
    assert takeover.thread.is_alive()

    old_writer.go.set()
    assert append.join() is None  # committed: the takeover had to wait for it
    new = takeover.join()
    assert isinstance(new, Lease)
    assert (new.holder, new.epoch) == ("b", old.epoch + 1)
    assert new_writer.last_index() == 2  # the new writer sees every entry of the old one
    assert new_writer.read(0, 10) == [(1, b"first"), (2, b"in flight")]
    with pytest.raises(StoreFenced):
        old_writer.append(old, 3, [b"too late"])
    new_writer.append(new, 3, [b"new writer"])
    assert [i for i, _ in new_writer.read(0, 10)] == [1, 2, 3]


def test_an_append_behind_a_takeover_waits_and_is_refused(
    make_store: Callable[..., LogStore], url: StoreUrl
) -> None:
    old_writer = make_store(timeout_s=TIMEOUT_S)
    new_writer: PausingStore = make_store(PausingStore, timeout_s=TIMEOUT_S)
    old_writer.migrate("c1")
    old = old_writer.acquire("a", "http://a", SHORT_TTL_S)
    assert old is not None
    old_writer.append(old, 1, [b"first"])
    wait_for(lambda: new_writer.lease().remaining_s <= 0, "the lease expired by the db's clock")

    new_writer.armed = True
    takeover = Background(lambda: new_writer.acquire("b", "http://b", LONG_TTL_S))
    assert new_writer.paused.wait(WAIT_S)  # the row locked for update, not yet written
    append = Background(lambda: old_writer.append(old, 2, [b"deposed"]))
    wait_for(lambda: _lock_waiters(url) >= 1, "the deposed append waits on the lease row")
    assert append.thread.is_alive()

    new_writer.go.set()
    new = takeover.join()
    assert (new.holder, new.epoch) == ("b", old.epoch + 1)
    with pytest.raises(StoreFenced, match="b's at epoch 2"):
        append.join()
    assert new_writer.read(0, 10) == [(1, b"first")]


def test_a_lock_wait_past_the_timeout_is_unavailable_and_the_store_goes_on(
    make_store: Callable[..., LogStore], url: StoreUrl
) -> None:
    writer: PausingStore = make_store(PausingStore, timeout_s=TIMEOUT_S)
    impatient = make_store(timeout_s=1.0)
    writer.migrate("c1")
    lease = writer.acquire("a", "http://a", SHORT_TTL_S)
    assert lease is not None
    writer.armed = True
    append = Background(lambda: writer.append(lease, 1, [b"slow"]))
    assert writer.paused.wait(WAIT_S)
    wait_for(lambda: impatient.lease().remaining_s <= 0, "the lease expired by the db's clock")
    with pytest.raises(StoreUnavailable):  # bounded: the lock wait ends after timeout_s
        impatient.acquire("b", "http://b", LONG_TTL_S)
    writer.go.set()
    append.join()
    taken = impatient.acquire("b", "http://b", LONG_TTL_S)  # a new connection, same store
    assert taken is not None
    assert taken.epoch == lease.epoch + 1
    assert impatient.read(0, 10) == [(1, b"slow")]
