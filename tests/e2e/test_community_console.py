"""The console's community filter in a real headless Chromium: the select lists the
communities of the operator's scope, and choosing one lists that community's
incidents (and the statistics of it)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from hub.services import Broker
from tests.e2e import seed
from tests.e2e.browser import errors
from tests.e2e.live import PASSWORD, LiveHub, running_hub

COMMUNITY = "110105001002"  # 阳光社区, the demo compound's


@pytest.fixture
def hub(db_url: str, broker: Broker, site_id: str, tmp_path: Path) -> Iterator[LiveHub]:
    with running_hub(db_url, broker, site_id, tmp_path) as h:
        seed.incidents(h)
        yield h


def test_the_community_select_filters_wall_and_statistics(browser: object, hub: LiveHub) -> None:
    page = browser.new_context(viewport={"width": 1280, "height": 800}).new_page()  # type: ignore[attr-defined]
    seen = errors(page)
    asked: list[str] = []
    page.on("request", lambda r: asked.append(r.url))
    page.goto(hub.url + "/")
    page.fill("#login-user", "operator")
    page.fill("#login-pass", PASSWORD)
    page.click("#login-btn")
    page.wait_for_selector("#wall .card")
    options = page.locator("#f-community option").all_inner_texts()
    assert options[1:] == ["阳光社区"], options
    cards = page.locator("#wall .card").count()
    page.select_option("#f-community", COMMUNITY)
    page.wait_for_function(
        "() => performance.getEntriesByType('resource').some("
        f"e => e.name.includes('/api/incidents?') && e.name.includes('community={COMMUNITY}'))")
    page.wait_for_selector("#wall .card")
    assert page.locator("#wall .card").count() == cards  # every incident is in it
    page.click('#tabs button[data-tab="stats"]')
    page.select_option("#s-community", COMMUNITY)
    page.wait_for_function(
        "() => performance.getEntriesByType('resource').some("
        f"e => e.name.includes('/api/stats?') && e.name.includes('community={COMMUNITY}'))")
    assert any(f"community={COMMUNITY}" in u and "/api/stats" in u for u in asked)
    assert not seen, seen
