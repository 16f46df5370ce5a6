"""The chat page, a Streamlit script run by `lakeserve chat`.

The page keeps the conversation in the browser session and sends all of it with every question,
so the API stays stateless. Answers stream in; sources come first and open in place; ratings and
comments are sent from server-side widget callbacks, which complete even if the tab is closed.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import streamlit as st
import structlog

from kernel.logs import configure_logging
from rag.chat.client import ApiError, Finish, RagClient, Start, Token, history
from rag.chat.metrics import METRICS, ChatMetrics
from rag.chat.settings import ChatSettings

EXAMPLES = (
    "How do I pretty-print JSON?",
    "How can I compute the greatest common divisor of two integers?",
    "How do I create a temporary directory that is removed afterwards?",
)
RATINGS = {0: "down", 1: "up"}
# A file, not an emoji or a Material icon: Streamlit fetches those favicons from a CDN.
FAVICON = str(Path(__file__).with_name("static") / "favicon.png")

log = structlog.get_logger("lakeserve.chat")


@st.cache_resource
def resources() -> tuple[ChatSettings, RagClient, ChatMetrics]:
    """Settings, API client and metrics: one per process, shared by every session."""
    configure_logging(colors=False)
    settings = ChatSettings()
    return settings, RagClient(settings), METRICS


@st.cache_data(ttl=5, show_spinner=False)
def api_status(url: str) -> tuple[str, str]:
    """Return (state, text) for the sidebar: ready, waiting or down (cached for 5 s)."""
    _, client, _ = resources()
    try:
        health = client.health()
    except ApiError as exc:
        return "down", str(exc)
    if health.get("ready"):
        return "ready", f"{health['chunks']:,} chunks · {health['llm']}"
    return "waiting", str(health.get("detail") or "the RAG service is starting")


def new_chat() -> None:
    st.session_state.messages = []
    st.session_state.conversation_id = uuid.uuid4().hex


def ask_example(question: str) -> None:
    st.session_state.pending = question


def send_feedback(index: int, comment: str | None = None) -> None:
    """Send the rating (and comment) of answer `index`; record the outcome on the message."""
    _, client, metrics = resources()
    message = st.session_state.messages[index]
    if comment is None:
        value = st.session_state.get(f"rating-{message['answer_id']}")
        if value is None:  # rating withdrawn: nothing to store
            return
        message["rating"] = RATINGS[value]
    else:
        message["comment"] = comment
    event = {
        "event_id": uuid.uuid4().hex,
        "answer_id": message["answer_id"],
        "conversation_id": st.session_state.conversation_id,
        "rating": message["rating"],
        "comment": message.get("comment"),
        "question": message["question"],
        "answer": message["content"],
        "citations": [c["doc_id"] for c in message["citations"]],
        "client": "chat",
    }
    try:
        receipt = client.feedback(event)
    except ApiError as exc:
        metrics.feedback.labels(message["rating"], "error").inc()
        message["feedback_status"] = ("error", f"Feedback not saved: {exc.title}: {exc}")
        log.warning("feedback failed", answer_id=message["answer_id"], error=str(exc))
        return
    metrics.feedback.labels(message["rating"], "stored").inc()
    what = "Comment" if comment else "Feedback"
    message["feedback_status"] = ("ok", f"{what} saved, thank you ({receipt['table']})")


def send_comment(index: int) -> None:
    answer_id = st.session_state.messages[index]["answer_id"]
    text = st.session_state.get(f"comment-{answer_id}", "").strip()
    if text:
        send_feedback(index, comment=text)


def show_sources(citations: list[dict[str, Any]]) -> None:
    st.caption(f"Sources ({len(citations)})")
    for citation in citations:
        # Titles of API docs are signatures that start with the doc id: show the signature.
        title, doc_id = citation["title"] or citation["doc_id"], citation["doc_id"]
        label = f"**[{citation['number']}]** `{title if title.startswith(doc_id) else doc_id}`"
        if not title.startswith(doc_id):
            label += f" — {title}"
        with st.expander(label):
            st.markdown(citation["snippet"])
            st.caption(f"{citation['doc_id']} · relevance {citation['score']:.3f}")


def show_feedback(message: dict[str, Any], index: int) -> None:
    answer_id = message["answer_id"]
    st.feedback("thumbs", key=f"rating-{answer_id}", on_change=send_feedback, args=(index,))
    if message.get("rating") and not message.get("comment"):
        with st.form(f"comment-form-{answer_id}", border=False, enter_to_submit=True):
            left, right = st.columns([5, 1], vertical_alignment="bottom")
            left.text_input(
                "Comment (optional)",
                key=f"comment-{answer_id}",
                placeholder="What was helpful, wrong or missing?",
                max_chars=2000,
            )
            right.form_submit_button("Send", on_click=send_comment, args=(index,))
    status = message.get("feedback_status")
    if status and status[0] == "ok":
        st.caption(f":material/check_circle: {status[1]}")
    elif status:
        st.warning(status[1], icon=":material/warning:")


# How the API produced an answer (the `mode` of its last event), told to the reader.
MODES = {
    "quoted": "Quoted from the sources below: their own sentences and examples.",
    "generated": "Written by the language model and checked against the sources below.",
    "quoted_fallback": "The language model's answer named things the sources do not support, "
    "so the sources are quoted instead.",
    "retrieval_only": "The language model is unavailable right now, so the sources are quoted "
    "instead.",
}


def show_outcome(message: dict[str, Any], index: int) -> None:
    """Everything of an answer after its text: error, not-found notice, sources, feedback."""
    if message.get("error"):
        title, detail = message["error"]
        st.error(f"**{title}.** {detail}", icon=":material/error:")
        return
    if not message["found"]:
        st.info(
            "**Not found in the documents.** No passage was relevant enough to answer from; "
            "try other words or a module name.",
            icon=":material/search_off:",
        )
        return
    if message.get("mode") in MODES:
        st.caption(MODES[message["mode"]])
    if message["citations"]:
        show_sources(message["citations"])
    show_feedback(message, index)


def show_message(message: dict[str, Any], index: int) -> None:
    if message["role"] == "user":
        with st.chat_message("user", avatar=":material/person:"):
            st.markdown(message["content"])
        return
    with st.chat_message("assistant", avatar=":material/menu_book:"):
        if message["found"] and message["content"]:
            st.markdown(message["content"])
        show_outcome(message, index)


def answer(question: str, k: int) -> None:
    """Ask the API, stream the answer into the page, keep it in the conversation."""
    _, client, metrics = resources()
    messages: list[dict[str, Any]] = st.session_state.messages
    turns = [*history(messages), {"role": "user", "content": question}]
    messages.append({"role": "user", "content": question})
    show_message(messages[-1], len(messages) - 1)
    record: dict[str, Any] = {
        "role": "assistant",
        "question": question,
        "content": "",
        "found": True,
        "citations": [],
    }
    parts: list[str] = []

    def tokens(events: Any) -> Any:
        for event in events:
            if isinstance(event, Token):
                parts.append(event.text)
                yield event.text
            elif isinstance(event, Finish):
                record["mode"] = event.mode

    with st.chat_message("assistant", avatar=":material/menu_book:"):
        started = time.perf_counter()
        try:
            with st.spinner("Searching the documents…"):
                events = client.ask(turns, k)
                first = next(events)
            assert isinstance(first, Start)
            metrics.first_event.observe(time.perf_counter() - started)
            record.update(answer_id=first.answer_id, found=first.found, citations=first.citations)
            if first.found:
                st.write_stream(tokens(events))
            else:
                for _ in tokens(events):  # the fixed not-found text: shown as a notice instead
                    pass
            outcome = "answered" if first.found else "not_found"
        except ApiError as exc:
            record["error"] = (exc.title, str(exc))
            outcome = "error"
            log.warning("question failed", error=str(exc), status=exc.status)
        record["content"] = "".join(parts).strip()
        metrics.questions.labels(outcome).inc()
        messages.append(record)
        show_outcome(record, len(messages) - 1)


def sidebar(settings: ChatSettings) -> int:
    with st.sidebar:
        st.markdown("## :material/menu_book: Lakeserve")
        st.caption("Answers from the lakehouse documents, with their sources.")
        st.button(
            "New chat", icon=":material/add_comment:", on_click=new_chat, use_container_width=True
        )
        state, text = api_status(settings.api_url)
        if state == "ready":
            st.success(f"API ready · {text}", icon=":material/check_circle:")
        elif state == "waiting":
            st.warning(f"API not ready: {text}", icon=":material/hourglass_top:")
        else:
            st.error(f"API unreachable: {text}", icon=":material/cloud_off:")
        k = st.slider("Sources per answer", min_value=1, max_value=10, value=5)
        st.caption(f"API: {settings.api_url}")
    return k


def main() -> None:
    st.set_page_config(
        page_title="Lakeserve · Ask the docs",
        page_icon=FAVICON,
        layout="centered",
        menu_items={"About": "Lakeserve chat: answers from lakehouse documents."},
    )
    settings, _, _ = resources()
    if "messages" not in st.session_state:
        new_chat()
    k = sidebar(settings)
    messages: list[dict[str, Any]] = st.session_state.messages
    # Read first (the box stays pinned at the bottom): the welcome hides as soon as one is asked.
    question = st.chat_input("Ask a question about the documents") or st.session_state.pop(
        "pending", None
    )
    if not messages and not question:
        st.markdown("## Ask the documentation")
        st.markdown(
            "Questions are answered from the Python standard library documentation in the "
            "lakehouse. Every answer lists the passages it was given, so you can check it."
        )
        for column, example in zip(st.columns(len(EXAMPLES)), EXAMPLES, strict=True):
            column.button(example, on_click=ask_example, args=(example,), use_container_width=True)
    for index, message in enumerate(messages):
        show_message(message, index)
    if question and question.strip():
        answer(question.strip(), k)


main()
