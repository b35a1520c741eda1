"""What the browser tests share: where Chromium is, how it is started, where
screenshots go, and a page's errors collected."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
# Screenshots go to var/screenshots; `HUB_SCREENSHOTS=docs/images ./hubw test tests/e2e`
# refreshes the README's pictures (a plain test run must not rewrite tracked files).
IMAGES = Path(os.environ.get(
    "HUB_SCREENSHOTS", Path(__file__).resolve().parents[2] / "var" / "screenshots"))
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--lang=zh-CN",
        "--autoplay-policy=no-user-gesture-required"]


def chromium() -> str:
    if not Path(CHROMIUM).exists() and shutil.which("apt-get") and os.geteuid() == 0:
        subprocess.run(["apt-get", "install", "-y", "chromium"], capture_output=True,
                       timeout=600, check=False)
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is absent and could not be installed "
                    "(apt-get install -y chromium)")
    return CHROMIUM


def errors(page: object) -> list[str]:
    errs: list[str] = []
    page.on("pageerror", lambda e: errs.append(f"pageerror: {e}"))  # type: ignore[attr-defined]
    page.on("console", lambda m: errs.append(f"console: {m.text}")  # type: ignore[attr-defined]
            if m.type == "error" and "401" not in m.text else None)
    return errs
