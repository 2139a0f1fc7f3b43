"""Headless Debian Chromium for the browser tests, driven by Playwright, never downloaded.

The flags keep Chromium off the network it would otherwise reach for (component updates,
sync, QUIC probes) so it runs on a closed loopback-only machine; each launch gets a fresh
profile directory so no cookie or cache leaks between tests.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import BrowserContext, sync_playwright

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"

requires_chromium = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason=f"{CHROMIUM} is missing: `make browser` installs Debian's chromium (make test does)",
)


@contextmanager
def chromium(profile_dir: Path, **context_options: Any) -> Iterator[BrowserContext]:
    """A headless Chromium context on a fresh profile in ``profile_dir``; closed on exit."""
    profile_dir.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(profile_dir),
            executable_path=str(CHROMIUM),
            headless=True,
            args=list(FLAGS),
            timeout=30_000,
            **context_options,
        )
        try:
            context.set_default_timeout(15_000)
            yield context
        finally:
            context.close()


def artifact(name: str) -> Path:
    """Where a test keeps something for a person to look at (``test-artifacts/``, ignored)."""
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS / name
