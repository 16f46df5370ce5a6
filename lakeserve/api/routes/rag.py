"""Question answering over the lakehouse documents: /rag/health, /rag/query, /rag/feedback."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from lakeserve.api.deps import Authorized, BudgetDep, FeedbackDep, HostDep, RagDep, json_body
from lakeserve.api.errors import ERROR_RESPONSES
from lakeserve.api.observe import Done, rag_call
from lakeserve.api.openapi import raw_body
from lakeserve.api.requestlog import RequestLog, request_id
from rag.api import RagApi
from rag.ratings import FeedbackTraces
from rag.schemas import FeedbackReceipt, FeedbackRequest, QueryRequest, QueryResponse, RagHealth

HEALTH_TIMEOUT_S = 3.0
HEALTH_EVERY_S = 2.0

health = APIRouter(tags=["rag"])
router = APIRouter(tags=["rag"], dependencies=[Authorized], responses=ERROR_RESPONSES)
feedback = APIRouter(tags=["rag"], dependencies=[Authorized], responses=ERROR_RESPONSES)


class HealthWatch:
    """The RAG health this ingress last heard, refreshed in the background.

    Probes read it at once: a health flood takes no slot of the ingress or the RAG replicas,
    and a replica busy with generations cannot make a probe hang.
    """

    def __init__(self, rag: RagApi, every_s: float = HEALTH_EVERY_S) -> None:
        self.rag = rag
        self.every_s = every_s
        self.state = unready("waiting for the first answer of a RAG replica")

    async def poll(self) -> RagHealth:
        """Ask a RAG replica once (bounded) and keep its answer."""
        try:
            self.state = await asyncio.wait_for(self.rag.health(), HEALTH_TIMEOUT_S)
        except TimeoutError:
            # A replica still loading its models, or every replica's slots taken by generations.
            self.state = unready(
                f"no RAG replica answered within {HEALTH_TIMEOUT_S:.0f}s (starting or busy)"
            )
        except Exception as exc:
            self.state = unready(f"RAG health failed: {type(exc).__name__}: {exc}"[:300])
        return self.state

    async def run(self) -> None:
        """Poll until cancelled."""
        while True:
            await self.poll()
            await asyncio.sleep(self.every_s)


def unready(detail: str) -> RagHealth:
    return RagHealth(ready=False, collection="", chunks=0, llm="", detail=detail)


@health.get("/rag/health", response_model=RagHealth, responses={503: {"model": RagHealth}})
async def rag_health(request: Request) -> Any:
    """Return 200 when the index is loaded and questions can be answered, 503 before.

    The state is at most a few seconds old (see HealthWatch); this never waits for RAG.
    """
    state: RagHealth = request.app.state.rag_health.state
    return JSONResponse(state.model_dump(mode="json"), status_code=200 if state.ready else 503)


QUERY_BODY = raw_body(QueryRequest, {"question": "How do I pretty-print JSON?"}, "A question.")
FEEDBACK_BODY = raw_body(
    FeedbackRequest,
    {"rating": "up", "answer_id": f"chatcmpl-{'a' * 32}", "question": "q", "answer": "a"},
    "A rating of an answer.",
)
Query = Annotated[QueryRequest, Depends(json_body(QueryRequest))]
Feedback = Annotated[FeedbackRequest, Depends(json_body(FeedbackRequest))]


@router.post("/rag/query", response_model=QueryResponse, openapi_extra=QUERY_BODY)
async def rag_query(
    request: Query, rag: RagDep, host: HostDep, budget: BudgetDep, http: Request
) -> QueryResponse:
    """Answer a question from the documents, with numbered citations and stage timings."""
    done = recorder(http, "rag_query", request.question)
    answer = rag.query(request, request_id(http))
    return await rag_call(host.metrics, "rag_query", answer, budget, done)


def recorder(http: Request, endpoint: str, question: str | None) -> Done | None:
    """The request log's callback for this RAG request (None: not logged)."""
    requests: RequestLog | None = http.app.state.request_log
    return requests.rag_recorder(http, endpoint, question) if requests is not None else None


@feedback.post(
    "/rag/feedback", response_model=FeedbackReceipt, status_code=201, openapi_extra=FEEDBACK_BODY
)
async def rag_feedback(
    request: Feedback, store: FeedbackDep, host: HostDep, http: Request
) -> FeedbackReceipt:
    """Record a rating (and comment) of an answer in bronze.feedback.

    Answers after the Delta commit: a 201 means the feedback is stored. The rating is then
    queued to be attached to the answer's MLflow trace by a worker of its own (best effort,
    never a failure, never waited for: see rag/ratings.py).
    """
    receipt = await rag_call(host.metrics, "feedback", asyncio.to_thread(store.record, request))
    host.metrics.rag_feedback.labels(request.rating).inc()
    traces: FeedbackTraces | None = http.app.state.feedback_traces
    if traces is not None:
        traces.submit(request, receipt.event_id)
    return receipt
