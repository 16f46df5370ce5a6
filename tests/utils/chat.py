"""`lakeserve chat` as a real process, and Debian's Chromium (Playwright) to use it."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from tests.utils.platform import KEY, clean_env
from tests.utils.processes import BIN, free_port, start_server

CHROMIUM = os.environ.get("LAKESERVE_CHROMIUM", "/usr/bin/chromium")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
]
ANSWER_TIMEOUT_MS = 120_000


@dataclass(frozen=True)
class Chat:
    url: str
    metrics_url: str

    @property
    def metrics_target(self) -> str:
        """Return host:port of the page's metrics (a Prometheus target)."""
        return self.metrics_url.removeprefix("http://").removesuffix("/metrics")


def run_chat(log: Path, api_url: str) -> Iterator[Chat]:
    """`lakeserve chat` as a real process on free ports; stopped by PID."""
    port, metrics_port = free_port(), free_port()
    env = clean_env(
        LAKESERVE_API_URL=api_url,
        LAKESERVE_API_KEY=KEY,
        LAKESERVE_CHAT_PORT=str(port),
        LAKESERVE_CHAT_METRICS_PORT=str(metrics_port),
    )
    url = f"http://127.0.0.1:{port}"
    command = [str(BIN / "lakeserve"), "chat"]
    for _ in start_server(command, f"{url}/_stcore/health", log, env=env, timeout_s=60):
        yield Chat(url, f"http://127.0.0.1:{metrics_port}/metrics")


@contextmanager
def chromium() -> Iterator[Browser]:
    """Debian's Chromium, headless; fails (never skips) when it is not installed."""
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} not found: `make browser` installs Debian's chromium")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            yield launched
        finally:
            launched.close()


def ask(page: Page, question: str) -> None:
    """Type a question into the chat page and send it."""
    box = page.get_by_placeholder("Ask a question about the documents")
    box.fill(question)
    box.press("Enter")


def ask_and_rate(browser: Browser, chat: Chat, question: str, rating: str = "up") -> None:
    """Ask one question on the page and rate its answer (`up` or `down`) once it is saved."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    try:
        page = context.new_page()
        page.goto(chat.url)
        ask(page, question)
        thumbs = page.get_by_role("radio", name=f"Thumbs {rating}")
        expect(thumbs).to_be_visible(timeout=ANSWER_TIMEOUT_MS)
        thumbs.click()
        expect(page.get_by_text("Feedback saved")).to_be_visible()
    finally:
        context.close()
