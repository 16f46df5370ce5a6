"""A stand-in OpenAI-compatible chat endpoint for bench/faults.py: answers at once, cites [1].

The fault benchmark stops and restarts the LLM endpoint; what it measures is the platform's
handling of that, not an LLM, so the answer is fixed and costs nothing.

    python bench/llm_stub.py PORT
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse

ANSWER = "The first source describes this [1]."
app = FastAPI()


@app.get("/v1/models")
def models() -> dict[str, Any]:
    return {"object": "list", "data": [{"id": "stub", "object": "model", "created": 0}]}


@app.post("/v1/chat/completions")
async def chat(request: Request) -> Any:
    body = await request.json()
    created = int(time.time())
    if not body.get("stream"):
        return JSONResponse(
            {
                "id": "stub",
                "object": "chat.completion",
                "created": created,
                "model": "stub",
                "choices": [
                    {
                        "index": 0,
                        "finish_reason": "stop",
                        "message": {"role": "assistant", "content": ANSWER},
                    }
                ],
                "usage": {"prompt_tokens": 1, "completion_tokens": 8, "total_tokens": 9},
            }
        )

    def events() -> Iterator[str]:
        for piece in [*ANSWER.split(" "), None]:
            delta = {"content": piece + " "} if piece else {}
            chunk = {
                "id": "stub", "object": "chat.completion.chunk", "created": created,
                "model": "stub",
                "choices": [{"index": 0, "delta": delta, "finish_reason": None if piece else "stop"}],
            }  # fmt: skip
            yield f"data: {json.dumps(chunk)}\n\n"
        yield "data: [DONE]\n\n"

    return StreamingResponse(events(), media_type="text/event-stream")


if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
