"""Answers that never invent: quoted from the sources, and a grounding check for generated ones.

`quote` builds the offline default answer from the cited documents alone: for each source its
title line (name and signature), the summary sentences of its docstring, the sentence that
matches the question best and its first code example, each marked [n]. Nothing is added but
backticks, markers and line breaks.

`ungrounded` checks a generated answer against the same sources: every [n] must point at a
given source, and every API name or call in it must appear in the sources (or be a builtin).
An answer that fails is replaced by the quoted one.
"""

from __future__ import annotations

import builtins
import keyword
import re
import sys
from collections.abc import Sequence

from rag.retrieval import tokenize

SUMMARY_CHARS = 320
EXAMPLE_LINES = 8
QUOTED_SOURCES = 3

_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z`*(\"'])")
# A citation marker, not an index into something (`a[0]` in example code).
_MARKER = re.compile(r"(?<![\w\])])\[(\d+)\]")
_DOTTED = re.compile(r"(?<![\w.])([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+)")
_CALL = re.compile(r"(?<![\w.])([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*)\s*\(")
_CODE = re.compile(r"```[^\n]*\n(.*?)```|`([^`\n]+)`", re.S)
_IMPORT = re.compile(r"\bfrom\s+([A-Za-z_][\w.]*)\s+import\s+([A-Za-z_]\w*)")
_KNOWN = frozenset(dir(builtins)) | frozenset(keyword.kwlist)


def _body(text: str, title: str) -> str:
    """Return a document's text without its title line."""
    return text[len(title) :].strip() if text.startswith(title) else text.strip()


def _sentences(paragraph: str) -> list[str]:
    flat = " ".join(paragraph.split())
    return [s.strip() for s in _SENTENCE.split(flat) if s.strip()]


def _example(body: str) -> str | None:
    """Return the first interactive example (>>> lines and their output) of a docstring."""
    lines = body.splitlines()
    for start, line in enumerate(lines):
        if line.lstrip().startswith(">>> "):
            block: list[str] = []
            for follow in lines[start:]:
                if not follow.strip() or len(block) == EXAMPLE_LINES:
                    break
                block.append(follow.strip())
            return "\n".join(block)
    return None


def quote_source(number: int, title: str, text: str, question: str) -> str:
    """Quote one source: title, summary, the sentence closest to the question, an example."""
    body = _body(text, title)
    paragraphs = [p for p in re.split(r"\n\s*\n", body) if p.strip()]
    summary: list[str] = []
    for sentence in _sentences(paragraphs[0]) if paragraphs else []:
        if summary and len(" ".join(summary)) + len(sentence) > SUMMARY_CHARS:
            break
        summary.append(sentence)
    wanted = set(tokenize(question))
    rest = [s for p in paragraphs[1:] for s in _sentences(p) if not s.lstrip().startswith(">>>")]
    scored = [(len(wanted & set(tokenize(s))), -i, s) for i, s in enumerate(rest)]
    best = max(scored, default=(0, 0, ""))
    parts = [f"`{title}` [{number}]: " + " ".join(summary)]
    if best[0] >= 2 and len(best[2]) <= 2 * SUMMARY_CHARS:
        parts.append(best[2])
    example = _example(body)
    if example:
        parts.append(f"```python\n{example}\n```")
    return "\n\n".join(parts).strip()


def quote(question: str, sources: Sequence[tuple[str, str]]) -> str:
    """Answer from the first sources (title, text) alone, each quote marked with its number."""
    quoted = [
        quote_source(number, title, text, question)
        for number, (title, text) in enumerate(sources[:QUOTED_SOURCES], start=1)
    ]
    return "\n\n".join(quoted)


def markers(answer: str) -> list[int]:
    """Return the citation numbers an answer uses ([n], never an index like `a[0]`)."""
    return [int(m) for m in _MARKER.findall(answer)]


def _names(answer: str) -> set[str]:
    """Return the API names an answer states: dotted names anywhere, calls inside code."""
    names = set(_DOTTED.findall(answer))
    names.update(f"{module}.{name}" for module, name in _IMPORT.findall(answer))
    for block, inline in _CODE.findall(answer):
        code = block or inline
        names.update(_DOTTED.findall(code))
        names.update(_CALL.findall(code))
    return names


def _supported(name: str, sources: str) -> bool:
    parts = name.split(".")
    if parts[0] in _KNOWN or parts[0] in {"self", "cls"}:
        return True
    if name in sources:
        return True
    # `mkdtemp(` in code stands for a name the sources give as tempfile.mkdtemp.
    return len(parts) == 1 and re.search(rf"\b{re.escape(name)}\b", sources) is not None


def ungrounded(answer: str, sources: Sequence[str]) -> list[str]:
    """Return what a generated answer states that its sources do not support (empty: grounded).

    Flags [n] markers beyond the sources, and API names (dotted names, calls in code) that
    appear in no source; names of other libraries count too, since the sources are the stdlib.
    """
    problems = [f"[{m}]" for m in markers(answer) if not 1 <= m <= len(sources)]
    text = "\n".join(sources)
    for name in sorted(_names(answer)):
        top = name.split(".")[0]
        foreign = "." in name and top not in sys.stdlib_module_names and top not in _KNOWN
        # `e.g.`, `i.e.` and file names are not API names; library-looking ones are.
        if foreign and (not re.fullmatch(r"[a-z_]+\.[a-z_]+\w*", name) or len(top) < 3):
            continue
        if not _supported(name, text):
            problems.append(name)
    return problems
