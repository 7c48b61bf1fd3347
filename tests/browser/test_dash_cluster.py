"""The dashboard of a follower with ``--api-token``: the login holds there, a drain clicked on
its page is forwarded to the leader and drains, the cluster view is the same as the leader's,
and the page says so clearly once the follower is cut off from the leader."""

from __future__ import annotations

import httpx

from tests.browser.conftest import Tab
from tests.e2e.procs import Cluster, Processes, wait_until

ADMIN = "dash-cluster-admin-token"
AUTH = {"Authorization": f"Bearer {ADMIN}"}


def _leader(cluster: Cluster) -> str:
    """The leader every master names (from /health, which needs no token)."""
    found: list[str] = []

    def agreed() -> bool:
        try:
            views = [
                httpx.get(m.url + "/health", timeout=2).json() for m in cluster.masters.values()
            ]
        except httpx.HTTPError:
            return False
        found[:] = list({v["leader_id"] for v in views})
        return len(found) == 1 and found[0] is not None

    wait_until(agreed, 30, "one leader")
    return found[0]


def _worker_state(url: str) -> str | None:
    answer = httpx.get(f"{url}/api/v1/workers/cw1", headers=AUTH, timeout=5)
    return str(answer.json()["state"]) if answer.status_code == 200 else None


def test_a_follower_page_drains_through_the_leader_then_says_it_is_cut_off(
    module_procs: Processes, tab: Tab
) -> None:
    three = module_procs.cluster(3, "--api-token", ADMIN)
    leader = _leader(three)
    follower, other = (name for name in three.masters if name != leader)
    made = httpx.post(
        three.url(leader) + "/api/v1/tokens", json={"role": "worker"}, headers=AUTH, timeout=10
    )
    module_procs.worker("cw1", three.urls, env={"AGENTFLOW_API_TOKEN": made.json()["token"]})
    wait_until(lambda: _worker_state(three.url(leader)) == "active", 20, "worker cw1")

    page = tab.page
    page.goto(three.url(follower) + "/")
    page.fill("#token", ADMIN)
    page.click("form#login button[type=submit]")
    page.locator("#live", has_text="live").wait_for()
    page.goto(three.url(follower) + "/#/queue")
    page.click('button[data-action="drain"][data-worker="cw1"]')
    wait_until(lambda: _worker_state(three.url(leader)) == "draining", 15, "cw1 draining")

    page.goto(three.url(follower) + "/#/cluster")
    for name in three.masters:
        page.locator("td strong", has_text=name).wait_for()
    page.locator(".card", has_text="Leader").locator(f"text={leader}").wait_for()
    assert page.locator("#banner").is_hidden()
    tab.shot("cluster-follower")
    three.kill9(leader)
    three.kill9(other)
    page.locator("#banner", has_text="cut off").wait_for()
    page.locator(".cutoff", has_text=follower).wait_for()
    tab.shot("cluster-cut-off")
