"""Question answering over the lakehouse documents: /rag/health, /rag/query, /rag/feedback."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse

from lakeserve.api.deps import Authorized, FeedbackDep, HostDep, RagDep, json_body
from lakeserve.api.errors import ERROR_RESPONSES
from lakeserve.api.observe import rag_call
from lakeserve.api.openapi import raw_body
from rag.schemas import FeedbackReceipt, FeedbackRequest, QueryRequest, QueryResponse, RagHealth

HEALTH_TIMEOUT_S = 3.0

health = APIRouter(tags=["rag"])
router = APIRouter(tags=["rag"], dependencies=[Authorized], responses=ERROR_RESPONSES)
feedback = APIRouter(tags=["rag"], dependencies=[Authorized], responses=ERROR_RESPONSES)


@health.get("/rag/health", response_model=RagHealth, responses={503: {"model": RagHealth}})
async def rag_health(rag: RagDep) -> Any:
    """Return 200 when the index is loaded and questions can be answered, 503 before."""
    try:
        state = await asyncio.wait_for(rag.health(), HEALTH_TIMEOUT_S)
    except TimeoutError:
        # A replica still loading its models, or every replica's slots taken by generations:
        # say so quickly instead of leaving a probe hanging.
        state = RagHealth(
            ready=False,
            collection="",
            chunks=0,
            llm="",
            detail=f"no RAG replica answered within {HEALTH_TIMEOUT_S:.0f}s (starting or busy)",
        )
    return JSONResponse(state.model_dump(mode="json"), status_code=200 if state.ready else 503)


QUERY_BODY = raw_body(QueryRequest, {"question": "How do I pretty-print JSON?"}, "A question.")
FEEDBACK_BODY = raw_body(
    FeedbackRequest,
    {"rating": "up", "answer_id": "chatcmpl-1", "question": "q", "answer": "a"},
    "A rating of an answer.",
)
Query = Annotated[QueryRequest, Depends(json_body(QueryRequest))]
Feedback = Annotated[FeedbackRequest, Depends(json_body(FeedbackRequest))]


@router.post("/rag/query", response_model=QueryResponse, openapi_extra=QUERY_BODY)
async def rag_query(request: Query, rag: RagDep, host: HostDep) -> QueryResponse:
    """Answer a question from the documents, with numbered citations and stage timings."""
    return await rag_call(host.metrics, "rag_query", rag.query(request))


@feedback.post(
    "/rag/feedback", response_model=FeedbackReceipt, status_code=201, openapi_extra=FEEDBACK_BODY
)
async def rag_feedback(request: Feedback, store: FeedbackDep, host: HostDep) -> FeedbackReceipt:
    """Record a rating (and comment) of an answer in bronze.feedback.

    Answers after the Delta commit: a 201 means the feedback is stored.
    """
    receipt = await rag_call(host.metrics, "feedback", asyncio.to_thread(store.record, request))
    host.metrics.rag_feedback.labels(request.rating).inc()
    return receipt
