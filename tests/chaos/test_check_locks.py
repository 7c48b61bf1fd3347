"""check_locks: tokens rise along real time, a grant is one holder's, holders never overlap
in the fenced file, and what the storage host answered is what it stored."""

from __future__ import annotations

from agentflow.testing.chaos.checkers import check_locks
from tests.chaos.check_builders import Hist

LOCK = "chaos-lock-0"
STREAM = f"lock:{LOCK}"


def hold(h: Hist, holder: str, token: int, at: int, *, process: str = "c1") -> None:
    """Acquire at `at`, append once (accepted), release."""
    h.op("lock-acquire", at, process=process, lock=LOCK, holder=holder, result={"token": token})
    data = f"{holder}-{token}"
    h.op(
        "fenced-append",
        at + 10,
        process=process,
        lock=LOCK,
        holder=holder,
        token=token,
        data=data,
        result={"accepted": True},
    )
    h.write(STREAM, holder, token, data, at=at + 12)
    h.op("lock-release", at + 20, process=process, lock=LOCK, holder=holder, token=token)


def good() -> Hist:
    h = Hist()
    hold(h, "h1", 10, at=0)
    hold(h, "h2", 20, at=100, process="c2")
    # h3 is granted while h1-bis still believes it holds (its lease expired): fenced off.
    h.op("lock-acquire", 200, lock=LOCK, holder="h1", result={"token": 30})
    h.op("lock-acquire", 210, 300, process="c3", lock=LOCK, holder="h3", result={"token": 40})
    h.write(STREAM, "h3", 40, "h3-40", at=310)
    h.op(
        "fenced-append",
        305,
        330,
        lock=LOCK,
        holder="h1",
        token=30,
        data="h1-30",
        result={"accepted": False},
    )
    h.write(STREAM, "h1", 30, "h1-30", at=320, accepted=False)
    # Concurrent acquires may get tokens in either order.
    h.op("lock-acquire", 400, 450, lock="other", holder="a", result={"token": 60})
    h.op("lock-acquire", 410, 420, process="c2", lock="other", holder="b", result={"token": 50})
    return h


def test_a_good_history_passes() -> None:
    h = good()
    result = check_locks(h.ops, h.storage)
    assert result.ok, result.anomalies
    assert result.stats == {
        "locks": 2,
        "ok_acquires": 6,
        "ok_appends": 3,
        "records": 4,
        "refused": 1,
    }


def test_a_token_that_goes_back_in_real_time_is_an_anomaly() -> None:
    h = good()
    h.op("lock-acquire", 500, process="c4", lock=LOCK, holder="h4", result={"token": 35})
    (line,) = check_locks(h.ops, h.storage).anomalies
    assert "lock chaos-lock-0: token went back, h4 got 35" in line and "h3 got 40" in line


def test_a_token_granted_twice_is_an_anomaly() -> None:
    h = good()
    h.op("lock-acquire", 500, process="c4", lock=LOCK, holder="h4", result={"token": 40})
    (line,) = check_locks(h.ops, h.storage).anomalies
    assert "token 40 granted twice, to h3" in line and "to h4" in line


def test_holders_that_overlap_in_the_fenced_file_are_an_anomaly() -> None:
    h = good()
    h.write(STREAM, "h2", 20, "h2-late", at=315)  # h2 writes after h3 (40) took over
    lines = check_locks(h.ops, h.storage).anomalies
    assert any("lock:chaos-lock-0: token went back" in a and "h2" in a for a in lines), lines
    h = good()
    h.write(STREAM, "h9", 40, "h9-40", at=315)  # two holders with one token
    lines = check_locks(h.ops, h.storage).anomalies
    assert any("token 40 used by two writers" in a for a in lines), lines


def test_an_acknowledged_append_that_is_not_stored_is_an_anomaly() -> None:
    h = good()
    h.storage = [r for r in h.storage if r.event != "h2-20"]
    (line,) = check_locks(h.ops, h.storage).anomalies
    assert "data 'h2-20' token 20 was acknowledged but is not stored" in line


def test_a_refusal_without_a_higher_token_is_an_anomaly() -> None:
    h = good()
    h.op(
        "fenced-append",
        600,
        lock=LOCK,
        holder="h5",
        token=99,
        data="h5-99",
        result={"accepted": False},
    )
    (line,) = check_locks(h.ops, h.storage).anomalies
    assert "'h5-99' token 99 was refused though no higher token had been accepted" in line


def test_an_append_answered_refused_but_stored_is_an_anomaly() -> None:
    h = good()
    h.storage = [
        r if r.event != "h1-30" else r.__class__(**{**r.to_json(), "accepted": True})
        for r in h.storage
    ]
    lines = check_locks(h.ops, h.storage).anomalies
    assert any("'h1-30' token 30 was answered refused but is stored" in a for a in lines), lines
