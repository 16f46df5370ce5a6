"""Answers that never invent: quoted answers, the grounding check, and the chain's modes."""

from __future__ import annotations

import asyncio
import re

from rag.answer import quote, ungrounded
from rag.chain import RagChain, sentences
from rag.evaluate import calibrate, citations_valid, invented_names
from tests.utils.fakes import FixedRetriever, RecordingChatModel, hit

MKDTEMP = (
    "tempfile.mkdtemp(suffix=None, prefix=None, dir=None)",
    "tempfile.mkdtemp(suffix=None, prefix=None, dir=None)\n\nUser-callable function to create "
    "and return a unique temporary\ndirectory.  The return value is the pathname of the "
    "directory.\n\nThe directory is readable, writable, and searchable only by the\ncreating "
    "user.\n\nCaller is responsible for deleting the directory when done with it.",
)
GCD = (
    "math.gcd(*integers)",
    "math.gcd(*integers)\n\nGreatest Common Divisor.\n\nExample:\n\n>>> gcd(12, 18)\n6",
)
HITS = [
    hit("tempfile.mkdtemp", MKDTEMP[1].split("\n\n", 1)[1]),
    hit("tempfile.mkstemp", "Create and return a unique temporary file."),
]


def test_a_quoted_answer_holds_only_sentences_of_its_sources() -> None:
    answer = quote("How do I create a temporary directory?", [MKDTEMP, GCD])
    assert answer.startswith("`tempfile.mkdtemp(suffix=None, prefix=None, dir=None)` [1]: ")
    assert "[2]" in answer and ">>> gcd(12, 18)\n6" in answer
    sources = " ".join(" ".join(text.split()) for _, text in (MKDTEMP, GCD))
    for line in answer.splitlines():
        bare = " ".join(re.sub(r"```(python)?|`|\[\d\]:?", "", line).split())
        if bare:
            assert bare in sources, bare
    assert ungrounded(answer, [MKDTEMP[1], GCD[1]]) == []


def test_invented_names_and_markers_beyond_the_sources_are_ungrounded() -> None:
    sources = [MKDTEMP[1]]
    answer = "Use `tempcreate()` or tempfile.mkdtrf [1]; gzip.BZ2File too [3]. Not x[5]."
    assert ungrounded(answer, sources) == ["[3]", "gzip.BZ2File", "tempcreate", "tempfile.mkdtrf"]
    assert ungrounded("from io import BufferWriter", sources) == ["io.BufferWriter"]
    grounded = "Call `tempfile.mkdtemp()` [1], e.g. `mkdtemp(dir=path)`; print(len(x)) works."
    assert ungrounded(grounded, sources) == []


def test_streamed_text_splits_into_sentences_and_whole_code_blocks() -> None:
    units, rest = sentences("One. Two! ```python\nx = 1\n```\nThree and")
    assert units == ["One. ", "Two! ", "```python\nx = 1\n```\n"]
    assert rest == "Three and"
    # A code block is never cut: its lines wait until it closes.
    assert sentences("Run:\n```\na = 1\nb") == (["Run:\n"], "```\na = 1\nb")


def answer_with(response: str) -> tuple[str, str, list[str]]:
    llm = RecordingChatModel(responses=[response], prompts=[])
    chain = RagChain(FixedRetriever(HITS), llm)
    prepared = asyncio.run(chain.prepare("How do I create a temporary directory?"))

    async def collect() -> str:
        return "".join([str(c.content) async for c in chain.stream(prepared)])

    text = asyncio.run(collect())
    return text.strip(), prepared.mode, prepared.problems


def test_generated_sentences_the_sources_do_not_support_are_dropped() -> None:
    text, mode, problems = answer_with(
        "Use tempfile.mkdtemp [1]. Or call tempfile.mkdtrf to make one. It returns a path [1]."
    )
    assert (text, mode) == ("Use tempfile.mkdtemp [1]. It returns a path [1].", "generated")
    assert problems == ["tempfile.mkdtrf"]


def test_a_generated_answer_with_nothing_grounded_falls_back_to_quotes() -> None:
    text, mode, problems = answer_with("Use `tempcreate()` [4].")
    assert mode == "quoted_fallback" and problems == ["[4]", "tempcreate"]
    assert text.startswith("`tempfile.mkdtemp` [1]: User-callable function to create")


def test_without_an_llm_the_answer_is_quoted() -> None:
    chain = RagChain(FixedRetriever(HITS))
    answer = asyncio.run(chain.answer("temporary directory?"))
    assert answer.mode == "quoted" and answer.usage == {}
    assert "`tempfile.mkstemp` [2]: Create and return a unique temporary file." in answer.answer


def test_the_floor_separates_on_topic_from_off_topic_scores() -> None:
    assert calibrate([0.62, 0.55, 0.48], [0.12, 0.3, 0.33]) == {
        "floor": 0.405,  # the middle of the gap between 0.33 and 0.48
        "answered": 1.0,
        "refused": 1.0,
    }
    # Overlapping scores: 0.37 and 0.465 both get 1.75; the wider gap (0.33 .. 0.41) wins.
    result = calibrate([0.62, 0.55, 0.48, 0.41], [0.12, 0.3, 0.33, 0.45])
    assert result == {"floor": 0.37, "answered": 1.0, "refused": 0.75}


def test_invented_names_are_stdlib_names_that_do_not_exist() -> None:
    text = "Use tempfile.mkdtrf or tempfile.mkdtemp, os.path.join, gzip.BZ2File; numpy.array."
    assert invented_names(text) == ["gzip.BZ2File", "tempfile.mkdtrf"]
    assert citations_valid("a [1] b [2], `x[7]`", 2) and not citations_valid("a [3]", 2)
    assert invented_names("see http://json.org, plistlib.py and builtins._") == []
