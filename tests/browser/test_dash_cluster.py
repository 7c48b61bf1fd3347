"""The dashboard of a follower: the same cluster view as the leader's (members, leader, term),
and a clear notice once it is cut off from the leader."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.browser.conftest import Tab
from tests.e2e.procs import Cluster, Processes


@pytest.fixture
def three(module_procs: Processes) -> Iterator[Cluster]:
    cluster = module_procs.cluster(3)
    yield cluster


def test_a_follower_shows_the_cluster_then_says_it_is_cut_off(three: Cluster, tab: Tab) -> None:
    leader = three.leader()
    follower, other = (name for name in three.masters if name != leader)
    page = tab.page
    page.goto(three.url(follower) + "/#/cluster")
    page.wait_for_selector("section.page h1")
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
