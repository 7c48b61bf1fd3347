"""The hot-path histograms: Prometheus' cumulative buckets, and bounded label sets."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI

from agentflow.api.request_metrics import RequestTimer, RequestTimings
from agentflow.histograms import OVERFLOW_LABEL, Histogram, HistogramVec


def test_buckets_are_cumulative_and_inf_equals_count():
    hist = Histogram((0.1, 1.0))
    for value in (0.05, 0.1, 0.5, 2.0, 3.0):
        hist.observe(value)
    buckets, count, total = hist.cumulative()
    assert buckets == [("0.1", 2), ("1.0", 3), ("+Inf", 5)]  # le is inclusive
    assert count == 5
    assert total == pytest.approx(5.65)


def test_bounds_must_ascend():
    with pytest.raises(ValueError):
        Histogram((1.0, 0.5))
    with pytest.raises(ValueError):
        Histogram(())


def test_label_sets_beyond_the_bound_share_the_overflow_series():
    vec = HistogramVec(("group", "kind"), (1.0,), max_series=3)
    for i in range(10):
        vec.observe(0.5, f"g{i}", "command")
    vec.observe(0.5, "g0", "command")  # a known set keeps its own series
    series = dict(vec.items())
    assert len(series) == 4  # three sets, then one overflow set
    assert series[("g0", "command")].cumulative()[1] == 2
    assert series[(OVERFLOW_LABEL, OVERFLOW_LABEL)].cumulative()[1] == 7


async def test_http_latency_is_labelled_by_route_template_never_the_raw_path():
    app = FastAPI()

    @app.get("/items/{item_id}")
    async def item(item_id: str) -> dict[str, str]:
        return {"id": item_id}

    timings = RequestTimings()
    app.add_middleware(RequestTimer, timings=timings, routes=app.router.routes)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        for n in range(5):
            assert (await client.get(f"/items/{n}")).status_code == 200
        assert (await client.get("/nowhere/at/all")).status_code == 404
        await client.request("BREW", "/items/1")
    labels = {values: hist.cumulative()[1] for values, hist in timings.http.items()}
    assert labels[("GET", "/items/{item_id}", "200")] == 5
    assert labels[("GET", "unmatched", "404")] == 1
    assert ("other", "/items/{item_id}", "405") in labels
    assert not any("/items/1" in v for values in labels for v in values)
