"""The RAG API on the real Serve platform, through the openai client, LangChain and HTTP."""

from __future__ import annotations

import asyncio
import json

import httpx
import openai
import pytest
from langchain_openai import ChatOpenAI

from kernel.errors import Upstream
from rag.chain import NOT_FOUND, RagChain
from rag.llm import chat_model
from rag.settings import RagSettings
from tests.utils.fakes import FixedRetriever, hit
from tests.utils.platform import KEY, MODEL, IndexEnv, Platform

pytestmark = pytest.mark.integration

QUESTION = "How do I compute the greatest common divisor of two integers?"


@pytest.fixture(scope="module")
def client(platform: Platform) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{platform.url}/v1", api_key=KEY, max_retries=0, timeout=120)


def auth() -> dict[str, str]:
    return {"Authorization": f"Bearer {KEY}"}


def test_rag_health_reports_the_loaded_index(platform: Platform, full_index: IndexEnv) -> None:
    health = httpx.get(f"{platform.url}/rag/health").json()
    assert health["ready"] is True
    assert health["collection"] == full_index.env["LAKESERVE_RAG_COLLECTION"]
    assert health["chunks"] > 5000
    assert health["llm"] == "smollm2-135m-instruct"


def test_openai_client_lists_the_rag_model(client: openai.OpenAI) -> None:
    assert [m.id for m in client.models.list()] == ["lakeserve-rag"]


def test_chat_completion_answers_with_citations(client: openai.OpenAI) -> None:
    completion = client.chat.completions.create(
        model="lakeserve-rag", messages=[{"role": "user", "content": QUESTION}], max_tokens=24
    )
    assert completion.object == "chat.completion"
    assert completion.choices[0].message.content
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None
    assert 0 < completion.usage.completion_tokens <= 24
    citations = (completion.model_extra or {})["citations"]
    assert "math.gcd" in [c["doc_id"] for c in citations]
    assert [c["number"] for c in citations] == list(range(1, len(citations) + 1))


def test_streamed_completion_sends_citations_then_tokens(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="lakeserve-rag",
        messages=[{"role": "user", "content": QUESTION}],
        stream=True,
        max_tokens=24,
    )
    chunks = list(stream)
    first, last = chunks[0], chunks[-1]
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert len({c.id for c in chunks}) == 1
    assert "math.gcd" in [c["doc_id"] for c in (first.model_extra or {})["citations"]]
    text = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert len(chunks) > 3 and text.strip()
    assert last.choices[0].finish_reason == "stop"


def test_stream_ends_with_done_on_the_wire(platform: Platform) -> None:
    body = {
        "model": "lakeserve-rag",
        "messages": [{"role": "user", "content": QUESTION}],
        "stream": True,
        "max_tokens": 8,
    }
    with httpx.stream(
        "POST", f"{platform.url}/v1/chat/completions", json=body, headers=auth(), timeout=120
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events = [line for line in response.iter_lines() if line]
    assert all(e.startswith("data: ") for e in events)
    assert events[-1] == "data: [DONE]"
    assert json.loads(events[-2][6:])["choices"][0]["finish_reason"] == "stop"


def test_langchain_chat_openai_talks_to_the_endpoint(platform: Platform) -> None:
    llm = ChatOpenAI(
        base_url=f"{platform.url}/v1", api_key=KEY, model="lakeserve-rag", max_tokens=16
    )
    assert llm.invoke(QUESTION).content
    assert "".join(str(chunk.content) for chunk in llm.stream(QUESTION)).strip()


def test_rag_query_returns_answer_citations_and_timings(platform: Platform) -> None:
    response = httpx.post(
        f"{platform.url}/rag/query",
        json={"question": "How do I make a temporary directory?", "k": 3},
        headers=auth(),
        timeout=120,
    )
    assert response.status_code == 200
    body = response.json()
    assert body["found"] is True and body["answer"]
    assert len(body["citations"]) == 3
    assert any(c["doc_id"].startswith("tempfile.") for c in body["citations"])
    assert {"rewrite_ms", "retrieve_ms", "generate_ms"} <= set(body["timings"])


def test_off_topic_question_is_not_found(platform: Platform) -> None:
    response = httpx.post(
        f"{platform.url}/rag/query",
        json={"question": "How long should I boil an egg for a soft yolk?"},
        headers=auth(),
        timeout=60,
    )
    assert response.status_code == 200
    assert response.json()["answer"] == NOT_FOUND
    assert response.json()["found"] is False
    assert response.json()["citations"] == []


def test_filters_limit_the_sources(platform: Platform) -> None:
    response = httpx.post(
        f"{platform.url}/rag/query",
        json={
            "question": "How do I serialize a Python object to a JSON formatted string?",
            "filters": {"module": ["json", "pickle"]},
        },
        headers=auth(),
        timeout=120,
    )
    assert response.status_code == 200
    doc_ids = [c["doc_id"] for c in response.json()["citations"]]
    assert doc_ids and all(d.split(".")[0] in {"json", "pickle"} for d in doc_ids)


def test_follow_up_uses_the_history(platform: Platform) -> None:
    history = [
        {"role": "user", "content": "What does math.gcd do?"},
        {"role": "assistant", "content": "It returns the greatest common divisor."},
    ]
    response = httpx.post(
        f"{platform.url}/rag/query",
        json={"question": "And the least common multiple?", "history": history},
        headers=auth(),
        timeout=120,
    )
    assert response.status_code == 200
    body = response.json()
    assert body["query"]  # the standalone question the LLM wrote (or the original)
    assert body["timings"]["rewrite_ms"] > 0


def test_unknown_model_is_404_in_openai_shape(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        client.chat.completions.create(model="gpt-9", messages=[{"role": "user", "content": "x"}])
    assert caught.value.body == {
        "message": "model 'gpt-9' does not exist; this server has 'lakeserve-rag'",
        "type": "invalid_request_error",
        "param": None,
        "code": "not_found",
    }


def test_last_message_not_from_user_is_422(client: openai.OpenAI) -> None:
    with pytest.raises(openai.UnprocessableEntityError) as caught:
        client.chat.completions.create(
            model="lakeserve-rag", messages=[{"role": "assistant", "content": "hello"}]
        )
    assert caught.value.body["message"] == (  # type: ignore[index]
        "body.messages: Value error, the last message must have role 'user'"
    )
    assert caught.value.body["param"] == "messages"  # type: ignore[index]


def test_missing_api_key_is_401_in_openai_shape(platform: Platform) -> None:
    bad = openai.OpenAI(base_url=f"{platform.url}/v1", api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as caught:
        bad.models.list()
    assert caught.value.body["type"] == "authentication_error"  # type: ignore[index]


@pytest.mark.parametrize(
    ("path", "body", "status", "expected"),
    [
        ("/v1/chat/completions", b"{not json", 400, "body is not valid JSON"),
        ("/rag/query", b'{"question": "x", "k": 0}', 422, "body.k: Input should be greater"),
        ("/rag/query", b'{"question": ""}', 422, "body.question: String should have at least"),
        ("/rag/query", b'{"question": "x", "filters": {"a b": 1}}', 422, "invalid field name"),
    ],
)
def test_bad_requests_get_a_clear_4xx(
    platform: Platform, path: str, body: bytes, status: int, expected: str
) -> None:
    headers = {**auth(), "Content-Type": "application/json"}
    response = httpx.post(f"{platform.url}{path}", content=body, headers=headers, timeout=30)
    assert response.status_code == status
    error = response.json()["error"]
    message = error["message"] if isinstance(error, dict) else error
    assert message.startswith(expected) or expected in message


def test_metrics_count_rag_requests(platform: Platform, client: openai.OpenAI) -> None:
    client.chat.completions.create(
        model="lakeserve-rag", messages=[{"role": "user", "content": QUESTION}], max_tokens=4
    )
    metrics = httpx.get(f"{platform.url}/metrics", headers=auth()).text
    assert 'lakeserve_rag_requests_total{code="200",route="chat",status_class="2xx"}' in metrics
    assert "lakeserve_rag_request_duration_seconds_bucket" in metrics


def test_models_still_served_beside_rag(platform: Platform) -> None:
    models = httpx.get(f"{platform.url}/models", headers=auth()).json()
    assert [m["name"] for m in models] == [MODEL]


def test_chain_uses_any_openai_compatible_endpoint(platform: Platform) -> None:
    # Our own /v1 is a real OpenAI-compatible server: point the pluggable LLM at it.
    settings = RagSettings(
        llm_base_url=f"{platform.url}/v1", llm_model="lakeserve-rag", llm_api_key=KEY
    )
    chain = RagChain(
        FixedRetriever([hit("math.gcd", "Greatest Common Divisor.")]), chat_model(settings)
    )
    answer = asyncio.run(chain.answer(QUESTION, max_tokens=8))
    assert answer.answer and answer.answer != NOT_FOUND
    assert answer.usage["output_tokens"] > 0


def test_endpoint_errors_are_upstream_errors_or_a_quoted_answer(platform: Platform) -> None:
    # langchain-openai caches one async HTTP client per (base URL, timeout), bound to the
    # event loop that first used it: a timeout of its own keeps this test off the client the
    # test above left on its closed loop, and both calls share one loop.
    for settings in (
        RagSettings(
            llm_base_url=f"{platform.url}/v1", llm_model="lakeserve-rag", llm_api_key="bad",
            llm_timeout_s=17,
        ),
        RagSettings(llm_base_url="http://127.0.0.1:9/v1", llm_model="m", llm_timeout_s=5),
    ):  # fmt: skip
        assert asyncio.run(fail_then_degrade(gcd_chain(settings))) == "retrieval_only"


async def fail_then_degrade(chain: RagChain) -> str:
    """Upstream when the request allows no fallback; else the mode of the degraded answer."""
    with pytest.raises(Upstream, match=r"LLM failed: \w*(Authentication|Connection)"):
        await chain.answer(QUESTION, fallback="none")
    # By default a failed LLM degrades the answer to the sources' own text.
    return (await chain.answer(QUESTION)).mode


def gcd_chain(settings: RagSettings) -> RagChain:
    return RagChain(FixedRetriever([hit("math.gcd", "gcd")]), chat_model(settings))
