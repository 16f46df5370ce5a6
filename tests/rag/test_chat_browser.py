"""The chat page in a real browser (Debian's Chromium via Playwright) against the real platform.

Screenshots go to test-artifacts/ (LAKESERVE_TEST_ARTIFACTS to change it).
"""

from __future__ import annotations

import datetime as dt
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from lakehouse.settings import LakehouseSettings
from lakehouse.tables import Lakehouse
from rag.feedback import FEEDBACK
from tests.utils.chat import ANSWER_TIMEOUT_MS, Chat, ask, chromium, run_chat
from tests.utils.platform import Platform
from tests.utils.processes import free_port

pytestmark = pytest.mark.integration

ARTIFACTS = Path(os.environ.get("LAKESERVE_TEST_ARTIFACTS", "test-artifacts"))
QUESTION = "How can I compute the greatest common divisor of two integers?"


@pytest.fixture(scope="module")
def chat(platform: Platform, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chat]:
    yield from run_chat(tmp_path_factory.mktemp("chat") / "chat.log", platform.url)


@pytest.fixture(scope="module")
def chat_without_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chat]:
    # Nothing listens on this port: the API is down.
    log = tmp_path_factory.mktemp("chat-down") / "chat.log"
    yield from run_chat(log, f"http://127.0.0.1:{free_port()}")


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as launched:
        yield launched


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A fresh tab; fails the test if the page asked anything of a host other than ours."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    tab = context.new_page()
    elsewhere: list[str] = []
    tab.on(
        "request",
        lambda r: (
            None if r.url.startswith(("http://127.0.0.1", "data:")) else elsewhere.append(r.url)
        ),
    )
    yield tab
    context.close()
    assert elsewhere == [], "the page must work offline (no CDN, no telemetry)"


def screenshot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / name), full_page=True)


def answers(page: Page) -> Any:
    return page.get_by_test_id("stChatMessage").filter(
        has=page.get_by_test_id("stChatMessageAvatarCustom")
    )


def feedback_rows(
    platform: Platform,
    since: dt.datetime,
    answer_id: str | None = None,
    question: str | None = None,
) -> list[dict[str, Any]]:
    """The events the chat page stored since `since`.

    Other tests share the platform and may have asked the same question on another chat page.
    """
    lake = Lakehouse(LakehouseSettings(home=Path(platform.env["LAKESERVE_HOME"])))
    if not lake.exists(FEEDBACK):
        return []
    rows = [
        r
        for r in lake.read(FEEDBACK).to_pylist()
        if r["client"] == "chat" and r["received_at"] >= since
    ]
    return sorted(
        (
            r
            for r in rows
            if answer_id in (None, r["answer_id"]) and question in (None, r["question"])
        ),
        key=lambda r: r["received_at"],
    )


def test_question_streams_an_answer_with_sources_to_open(page: Page, chat: Chat) -> None:
    page.goto(chat.url)
    expect(page.get_by_text("API ready")).to_be_visible(timeout=30_000)
    screenshot(page, "chat-welcome.png")
    ask(page, QUESTION)
    answer = page.get_by_test_id("stChatMessage").nth(1)
    # Streamed: the answer's text is seen growing before the sources appear under it.
    lengths: list[int] = []
    sources = page.get_by_text("Sources (")
    deadline = time.monotonic() + ANSWER_TIMEOUT_MS / 1000
    while not sources.is_visible() and time.monotonic() < deadline:
        text = answer.inner_text() if answer.count() else ""
        if text and (not lengths or len(text) != lengths[-1]):
            lengths.append(len(text))
        time.sleep(0.05)
    expect(sources).to_be_visible()
    assert len(lengths) >= 3, f"no streaming seen, only text lengths {lengths}"
    source = page.get_by_test_id("stExpander").filter(has_text="math.gcd")
    expect(source).to_be_visible()
    source.get_by_text("math.gcd").first.click()
    expect(source.get_by_text("greatest common divisor").first).to_be_visible()
    screenshot(page, "chat-answer.png")


def sends_rating(payload: str | bytes) -> bool:
    """A websocket frame from the page carrying a rating widget's new value (a rerun request)."""
    return b"rating-" in (payload.encode() if isinstance(payload, str) else payload)


def test_feedback_reaches_the_table_even_if_the_page_closes_at_once(
    page: Page, chat: Chat, platform: Platform
) -> None:
    question = "How do I pretty-print JSON?"
    since = dt.datetime.now(dt.UTC)
    with page.expect_websocket(lambda ws: ws.url.endswith("/_stcore/stream")) as stream:
        page.goto(chat.url)
    ask(page, question)
    thumbs_down = page.get_by_role("radio", name="Thumbs down")
    expect(thumbs_down).to_be_visible(timeout=ANSWER_TIMEOUT_MS)
    thumbs_down.click()
    expect(page.get_by_text("Feedback saved")).to_be_visible()
    [rated] = feedback_rows(platform, since, question=question)
    assert (rated["rating"], rated["comment"], rated["client"]) == ("down", None, "chat")
    assert rated["question"] == question and rated["answer"]
    assert rated["citations"] and rated["answer_id"].startswith("chatcmpl-")

    page.get_by_placeholder("What was helpful, wrong or missing?").fill("Show indent=2")
    page.get_by_role("button", name="Send", exact=True).click()
    expect(page.get_by_text("Comment saved")).to_be_visible()
    screenshot(page, "chat-feedback.png")
    rows = feedback_rows(platform, since, rated["answer_id"])
    assert [(r["rating"], r["comment"]) for r in rows] == [
        ("down", None),
        ("down", "Show indent=2"),
    ]

    # Change the rating and close the tab as soon as the browser has sent the change (not
    # before: a tab closed before the frame leaves loses it in any web app): the server-side
    # callback still stores it although nobody is left to see the receipt.
    with stream.value.expect_event("framesent", predicate=sends_rating):
        page.get_by_role("radio", name="Thumbs up").click()
    page.close()
    deadline = time.monotonic() + 30
    while len(rows) < 3 and time.monotonic() < deadline:
        time.sleep(0.5)
        rows = feedback_rows(platform, since, rated["answer_id"])
    assert [r["rating"] for r in rows] == ["down", "down", "up"]
    assert len({r["event_id"] for r in rows}) == 3


def test_not_found_is_shown_as_such_and_new_chat_starts_over(page: Page, chat: Chat) -> None:
    page.goto(chat.url)
    ask(page, "What is the capital of France?")
    notice = page.get_by_text("Not found in the documents.")
    expect(notice).to_be_visible(timeout=ANSWER_TIMEOUT_MS)
    expect(page.get_by_text("Sources (")).to_have_count(0)
    screenshot(page, "chat-not-found.png")
    page.get_by_role("button", name="New chat").click()
    expect(page.get_by_text("Ask the documentation")).to_be_visible()
    expect(page.get_by_test_id("stChatMessage")).to_have_count(0)


def test_chat_page_exports_metrics(chat: Chat) -> None:
    # After the questions above: answered and not-found outcomes, feedback stored.
    text = httpx.get(chat.metrics_url).text
    assert 'lakeserve_chat_questions_total{outcome="answered"}' in text
    assert 'lakeserve_chat_questions_total{outcome="not_found"} 1.0' in text
    assert 'lakeserve_chat_feedback_total{outcome="stored",rating="down"} 2.0' in text


def test_api_down_is_explained(page: Page, chat_without_api: Chat) -> None:
    page.goto(chat_without_api.url)
    expect(page.get_by_text("API unreachable")).to_be_visible(timeout=30_000)
    ask(page, QUESTION)
    error = page.get_by_test_id("stChatMessage").get_by_test_id("stAlert")
    expect(error).to_contain_text("The API is not reachable.", timeout=30_000)
    expect(error).to_contain_text("Is lakeserve serve running there?")
    screenshot(page, "chat-api-down.png")
    # The question stays on the page; asking again once the API is back needs no reload.
    expect(page.get_by_text(QUESTION)).to_be_visible()
