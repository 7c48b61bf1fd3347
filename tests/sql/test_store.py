"""LogStore's contract on both databases: the lease on the database's clock, fenced appends,
reads, the snapshot and compaction, the members' rows."""

from collections.abc import Callable

import pytest

from agentflow.cluster.sql import Lease, LogStore
from agentflow.errors import ConfigError, NotLeaderError, StoreFenced
from tests.sql.conftest import wait_for

SHORT_TTL_S = 0.3
LONG_TTL_S = 60.0


@pytest.fixture
def store(make_store: Callable[..., LogStore]) -> LogStore:
    s = make_store()
    s.migrate("c1")
    return s


def _expire(store: LogStore) -> None:
    """Until the database itself says the lease has expired."""
    wait_for(lambda: store.lease().remaining_s <= 0, "the lease expired by the db's clock")


def test_acquire_renew_and_the_others_wait(
    store: LogStore, make_store: Callable[..., LogStore]
) -> None:
    other = make_store()
    lease = store.acquire("a", "http://a:8080", LONG_TTL_S)
    assert lease is not None
    assert (lease.holder, lease.api_url, lease.epoch) == ("a", "http://a:8080", 1)
    assert 0 < lease.remaining_s <= LONG_TTL_S
    assert other.acquire("b", "http://b:8080", LONG_TTL_S) is None
    seen = other.lease()
    assert seen == Lease("a", "http://a:8080", 1, seen.remaining_s)
    renewed = store.renew(lease, LONG_TTL_S)
    assert (renewed.holder, renewed.epoch) == ("a", 1)
    again = store.acquire("a", "http://a:8080", LONG_TTL_S)  # ours and live: same epoch
    assert again is not None
    assert again.epoch == 1


def test_expiry_then_takeover_raises_the_epoch(
    store: LogStore, make_store: Callable[..., LogStore]
) -> None:
    other = make_store()
    lease = store.acquire("a", "http://a", SHORT_TTL_S)
    assert lease is not None
    _expire(store)
    with pytest.raises(StoreFenced, match="expired"):
        store.renew(lease, LONG_TTL_S)  # an expired lease is never revived
    taken = other.acquire("b", "http://b", LONG_TTL_S)
    assert taken is not None
    assert (taken.holder, taken.epoch) == ("b", 2)
    assert store.acquire("a", "http://a", LONG_TTL_S) is None
    with pytest.raises(StoreFenced) as fenced:
        store.renew(lease, LONG_TTL_S)
    assert isinstance(fenced.value, NotLeaderError)
    assert fenced.value.extra["leader_id"] == "b"
    assert fenced.value.extra["leader_url"] == "http://b"


def test_our_own_expired_lease_is_a_takeover_too(store: LogStore) -> None:
    lease = store.acquire("a", "http://a", SHORT_TTL_S)
    assert lease is not None
    _expire(store)
    back = store.acquire("a", "http://a", LONG_TTL_S)
    assert back is not None
    assert back.epoch == lease.epoch + 1
    with pytest.raises(StoreFenced):  # the old epoch's writes are refused: another process
        store.append(lease, 1, [b"stale"])  # of ours may have written in between


def test_release_lets_another_take_over_at_once(
    store: LogStore, make_store: Callable[..., LogStore]
) -> None:
    lease = store.acquire("a", "http://a", LONG_TTL_S)
    assert lease is not None
    store.release(lease)
    taken = make_store().acquire("b", "http://b", LONG_TTL_S)
    assert taken is not None
    assert taken.epoch == 2
    store.release(lease)  # no longer ours: nothing happens
    assert store.lease().holder == "b"
    assert store.lease().remaining_s > 0


def test_a_deposed_writer_cannot_append(
    store: LogStore, make_store: Callable[..., LogStore]
) -> None:
    other = make_store()
    old = store.acquire("a", "http://a", SHORT_TTL_S)
    assert old is not None
    store.append(old, 1, [b"one", b"two"])
    _expire(store)
    with pytest.raises(StoreFenced, match="expired"):  # expired, nobody else yet
        store.append(old, 3, [b"late"])
    new = other.acquire("b", "http://b", LONG_TTL_S)
    assert new is not None
    with pytest.raises(StoreFenced, match="b's at epoch 2") as fenced:
        store.append(old, 3, [b"late"])
    assert fenced.value.extra["leader_id"] == "b"
    assert other.last_index() == 2
    other.append(new, 3, [b"three"])
    assert other.read(0, 10) == [(1, b"one"), (2, b"two"), (3, b"three")]
    with pytest.raises(StoreFenced):
        store.save_snapshot(old, 3, b"image")
    with pytest.raises(StoreFenced):
        store.compact(old, 3)
    assert other.snapshot() is None
    assert len(other.read(0, 10)) == 3


def test_a_taken_index_is_refused_and_the_batch_lands_whole_or_not_at_all(
    store: LogStore,
) -> None:
    lease = store.acquire("a", "http://a", LONG_TTL_S)
    assert lease is not None
    store.append(lease, 1, [b"1", b"2", b"3"])
    with pytest.raises(StoreFenced, match="already in the log"):
        store.append(lease, 3, [b"3 again", b"4"])
    assert store.read(0, 10) == [(1, b"1"), (2, b"2"), (3, b"3")]
    store.append(lease, 4, [b"4"])  # the connection is fine after the refusal
    assert store.last_index() == 4


def test_read_order_and_limits(store: LogStore) -> None:
    lease = store.acquire("a", "http://a", LONG_TTL_S)
    assert lease is not None
    blobs = [bytes([i]) * (i + 1) + b"\x00\xff" for i in range(10)]
    store.append(lease, 1, blobs[:4])
    store.append(lease, 5, blobs[4:])
    assert store.read(0, 3) == [(1, blobs[0]), (2, blobs[1]), (3, blobs[2])]
    assert [i for i, _ in store.read(7, 100)] == [8, 9, 10]
    assert store.read(10, 5) == []
    assert store.read(0, 100) == list(enumerate(blobs, start=1))
    assert store.last_index() == 10
    store.append(lease, 11, [])  # nothing to do
    assert store.last_index() == 10


def test_snapshot_then_compaction_never_past_it(store: LogStore) -> None:
    lease = store.acquire("a", "http://a", LONG_TTL_S)
    assert lease is not None
    store.append(lease, 1, [str(i).encode() for i in range(1, 11)])
    assert store.compact(lease, 5) == 0  # no snapshot yet: nothing may go
    store.save_snapshot(lease, 5, b"image at 5")
    assert store.snapshot() == (5, b"image at 5")
    assert store.compact(lease, 3) == 3
    assert [i for i, _ in store.read(0, 100)] == [4, 5, 6, 7, 8, 9, 10]
    assert store.compact(lease, 100) == 2  # clamped to the snapshot's index
    assert [i for i, _ in store.read(0, 100)] == [6, 7, 8, 9, 10]
    store.save_snapshot(lease, 10, b"image at 10")
    assert store.compact(lease, 10) == 5
    assert store.read(0, 100) == []
    assert store.last_index() == 10  # the log is empty: the snapshot's index
    store.append(lease, 11, [b"11"])
    assert store.last_index() == 11


def test_members_heartbeat(store: LogStore, make_store: Callable[..., LogStore]) -> None:
    store.heartbeat("b", "http://b", 7, 3, "0.4.0")
    make_store().heartbeat("a", "http://a", 5, 2, "0.4.0")
    store.heartbeat("b", "http://b2", 9, 3, "0.4.1")
    rows = store.members()
    assert [(m.node_id, m.api_url, m.applied, m.reads_format, m.version) for m in rows] == [
        ("a", "http://a", 5, 2, "0.4.0"),
        ("b", "http://b2", 9, 3, "0.4.1"),
    ]
    assert all(m.seen_s_ago >= 0 for m in rows)


def test_a_large_snapshot_round_trips(store: LogStore) -> None:
    lease = store.acquire("a", "http://a", LONG_TTL_S)
    assert lease is not None
    image = bytes(range(256)) * (8 * 4096)  # 8 MiB, every byte value (escaping's worst case)
    store.save_snapshot(lease, 1, image)
    assert store.snapshot() == (1, image)


def test_a_row_over_max_allowed_packet_is_refused_by_name(store: LogStore) -> None:
    if store.url.dialect != "mysql":
        pytest.skip("PostgreSQL has no packet limit below bytea's 1 GiB")
    lease = store.acquire("a", "http://a", LONG_TTL_S)
    assert lease is not None
    huge = b"\x00" * (40 << 20)  # escaped, twice as large: over the test server's 64 MiB
    with pytest.raises(ConfigError, match="max_allowed_packet"):
        store.save_snapshot(lease, 1, huge)
    with pytest.raises(ConfigError, match="max_allowed_packet"):
        store.append(lease, 1, [huge])
    assert store.snapshot() is None
    assert store.last_index() == 0


def test_the_writer_forgets_members_unseen_for_long(
    store: LogStore, make_store: Callable[..., LogStore]
) -> None:
    lease = store.acquire("a", "http://a", LONG_TTL_S)
    assert lease is not None
    store.heartbeat("gone", "http://gone", 1, 1, "0.4.0")
    wait_for(lambda: store.members()[0].seen_s_ago > 0.2, "the row aged by the db's clock")
    store.heartbeat("a", "http://a", 1, 1, "0.4.0")
    assert store.forget_members(lease, 0.2) == 1
    assert [m.node_id for m in store.members()] == ["a"]
    other = make_store()
    with pytest.raises(StoreFenced):  # only the writer prunes
        other.forget_members(Lease("b", "http://b", lease.epoch, 1.0), 0.2)
