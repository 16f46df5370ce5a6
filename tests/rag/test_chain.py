"""The RAG chain with a recording fake LLM: prompts, rewriting, not-found, citations, errors."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from langchain_core.messages import AIMessage, HumanMessage

from kernel.errors import ConfigError, InvalidInput, Upstream
from rag.chain import NOT_FOUND, RagChain
from rag.llm import LocalChatModel, chat_model, local_model_path
from rag.settings import RagSettings
from tests.utils.fakes import FixedRetriever, RecordingChatModel, hit
from tests.utils.processes import free_port

HITS = [
    hit("math.gcd", "Greatest Common Divisor."),
    hit("math.lcm", "Least Common Multiple."),
]


def make(responses: list[str], hits: list[Any] = HITS) -> tuple[RagChain, Any, Any]:
    llm = RecordingChatModel(responses=responses, prompts=[])
    retriever = FixedRetriever(hits)
    return RagChain(retriever, llm, k=5), llm, retriever


def test_answer_prompt_numbers_the_sources_and_citations_match() -> None:
    chain, llm, _ = make(["Use math.gcd [1]."])
    answer = asyncio.run(chain.answer("gcd?"))

    assert answer.answer == "Use math.gcd [1]."
    assert answer.found is True
    assert [(c.number, c.doc_id) for c in answer.citations] == [(1, "math.gcd"), (2, "math.lcm")]
    assert answer.citations[0].snippet == "Greatest Common Divisor."
    system = llm.prompts[0][0].content
    assert "[1] math.gcd\nmath.gcd\nGreatest Common Divisor." in system
    assert "[2] math.lcm" in system
    assert llm.prompts[0][-1].content == "gcd?"


def test_nothing_relevant_answers_not_found_without_calling_the_llm() -> None:
    chain, llm, _ = make(["never used"], hits=[])
    answer = asyncio.run(chain.answer("What is the capital of France?"))

    assert (answer.answer, answer.found, answer.citations) == (NOT_FOUND, False, [])
    assert llm.prompts == []


def test_follow_up_is_rewritten_with_the_history_before_retrieval() -> None:
    chain, llm, retriever = make(["What does math.lcm do?", "It computes the lcm [2]."])
    history = [HumanMessage("What does math.gcd do?"), AIMessage("Greatest common divisor.")]
    answer = asyncio.run(chain.answer("And the other one?", history))

    assert retriever.queries == ["What does math.lcm do?"]
    assert answer.query == "What does math.lcm do?"
    rewrite_prompt = [m.content for m in llm.prompts[0]]
    assert "What does math.gcd do?" in rewrite_prompt
    assert rewrite_prompt[-1].startswith("Last question: And the other one?")
    # the answer prompt carries the history too, and the user's own words
    assert [m.content for m in llm.prompts[1][1:]] == [
        "What does math.gcd do?",
        "Greatest common divisor.",
        "And the other one?",
    ]


def test_a_rewrite_that_rambles_keeps_the_original_question() -> None:
    chain, _, retriever = make(["x" * 1000, "answer"])
    asyncio.run(chain.answer("And lcm?", [HumanMessage("gcd?"), AIMessage("math.gcd")]))
    assert retriever.queries == ["And lcm?"]


def test_first_question_is_not_rewritten() -> None:
    chain, llm, retriever = make(["answer"])
    asyncio.run(chain.answer("gcd?"))
    assert retriever.queries == ["gcd?"] and len(llm.prompts) == 1


def test_llm_failure_is_an_upstream_error_when_the_request_allows_no_fallback() -> None:
    chain, llm, _ = make(["x"])
    llm.fail = True
    with pytest.raises(Upstream, match="LLM failed: ConnectionError: endpoint down"):
        asyncio.run(chain.answer("gcd?", fallback="none"))
    history = [HumanMessage("What does math.gcd do?"), AIMessage("Greatest common divisor.")]
    with pytest.raises(Upstream, match="LLM failed to rewrite the question"):
        asyncio.run(chain.answer("And the other one?", history, fallback="none"))


def test_llm_down_degrades_to_an_answer_quoted_from_the_sources() -> None:
    chain, llm, _ = make(["x"])
    llm.fail = True
    answer = asyncio.run(chain.answer("What is the greatest common divisor?"))

    assert answer.mode == "retrieval_only"
    assert "Greatest Common Divisor." in answer.answer and "[1]" in answer.answer
    assert [c.doc_id for c in answer.citations] == ["math.gcd", "math.lcm"]


def test_a_failed_rewrite_retrieves_with_the_earlier_question_and_skips_generation() -> None:
    chain, llm, retriever = make(["never used"])
    llm.fail = True
    history = [HumanMessage("What does math.gcd do?"), AIMessage("Greatest common divisor.")]
    answer = asyncio.run(chain.answer("And the other one?", history))

    assert retriever.queries == ["What does math.gcd do? And the other one?"]
    assert answer.mode == "retrieval_only"
    assert llm.calls == 1  # the rewrite; generation was not attempted


def test_streamed_tokens_join_to_the_answer() -> None:
    chain, _, _ = make(["one two three"])

    async def collect() -> list[str]:
        prepared = await chain.prepare("gcd?")
        return [str(c.content) async for c in chain.stream(prepared)]

    assert "".join(asyncio.run(collect())).strip() == "one two three"


def test_a_remote_model_name_without_an_endpoint_is_a_config_error() -> None:
    with pytest.raises(
        ConfigError, match="LAKESERVE_LLM_MODEL=gpt-4o needs LAKESERVE_LLM_BASE_URL"
    ):
        chat_model(RagSettings(llm_model="gpt-4o"))


def test_the_default_llm_is_the_packaged_smollm2() -> None:
    model = chat_model(RagSettings())
    assert isinstance(model, LocalChatModel)
    assert model.model_path.endswith("SmolLM2-135M-Instruct.Q4_1.gguf")


def test_long_conversations_are_cut_to_fit_small_context_windows() -> None:
    chain, llm, _ = make(["standalone?", "answer"])
    history = [HumanMessage(f"question {i} " + "x" * 5000) for i in range(10)]
    asyncio.run(chain.answer("And then?", history))

    answer_prompt = llm.prompts[1]
    earlier = answer_prompt[1:-1]
    assert [str(m.content).split(" ")[1] for m in earlier] == ["4", "5", "6", "7", "8", "9"]
    assert all(len(str(m.content)) <= 1004 for m in earlier)
    assert answer_prompt[-1].content == "And then?"


def test_a_prompt_longer_than_the_local_context_window_is_invalid_input() -> None:
    llm = LocalChatModel(model_path=local_model_path(), context=128)
    hits = [hit(f"math.f{i}", "Greatest common divisor. " * 80) for i in range(5)]
    chain = RagChain(FixedRetriever(hits), llm)
    with pytest.raises(InvalidInput, match="exceed the local model's 128-token context window"):
        asyncio.run(chain.answer("gcd?"))


def test_an_unreachable_openai_endpoint_degrades_or_fails_with_its_error() -> None:
    # The real OpenAI client against a port nobody listens on: what a stopped LLM looks like.
    settings = RagSettings(
        llm_base_url=f"http://127.0.0.1:{free_port()}/v1", llm_model="m", llm_timeout_s=2
    )
    chain = RagChain(FixedRetriever(HITS), chat_model(settings), k=5)

    answer = asyncio.run(chain.answer("What is the greatest common divisor?"))
    assert answer.mode == "retrieval_only" and "Greatest Common Divisor." in answer.answer
    with pytest.raises(Upstream, match=r"LLM failed: \w*Connection"):
        asyncio.run(chain.answer("What is the greatest common divisor?", fallback="none"))
