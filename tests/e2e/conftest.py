"""Browser-test fixtures: one headless Chromium per test module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.e2e.browser import ARGS, chromium


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    exe = chromium()
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=exe, args=ARGS)
        yield b
        b.close()
