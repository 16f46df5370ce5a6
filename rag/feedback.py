"""User feedback on answers, kept as raw events in the bronze.feedback Delta table."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pyarrow as pa
from deltalake.exceptions import DeltaError

from kernel.errors import NotReady
from lakehouse.tables import Lakehouse, TableRef
from rag.schemas import FeedbackReceipt, FeedbackRequest

FEEDBACK = TableRef("bronze", "feedback")
SCHEMA = pa.schema(
    [
        pa.field("event_id", pa.string(), nullable=False),
        pa.field("answer_id", pa.string(), nullable=False),
        pa.field("conversation_id", pa.string()),
        pa.field("rating", pa.string(), nullable=False),
        pa.field("comment", pa.string()),
        pa.field("question", pa.string(), nullable=False),
        pa.field("answer", pa.string(), nullable=False),
        pa.field("citations", pa.list_(pa.string()), nullable=False),
        pa.field("client", pa.string(), nullable=False),
        pa.field("received_at", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("request_id", pa.string()),  # joins silver.rag_requests (added later: merged)
    ]
)


class FeedbackStore:
    """Appends one event per call and returns only after the Delta commit.

    A caller that got its receipt can close the page: the event is in the table. Events are
    never updated in place (bronze keeps what arrived); readers take the latest event per
    `answer_id`, and an `event_id` seen twice is one retried call.
    """

    def __init__(self, lake: Lakehouse) -> None:
        self.lake = lake

    def record(self, request: FeedbackRequest) -> FeedbackReceipt:
        """Commit the event to bronze.feedback."""
        event_id = request.event_id or uuid.uuid4().hex
        row = {
            **request.model_dump(exclude={"event_id"}),
            "event_id": event_id,
            "received_at": datetime.now(UTC),
        }
        rows = pa.Table.from_pylist([row], schema=SCHEMA)
        try:
            version = self.lake.append(
                FEEDBACK, rows, metadata={"source": "rag feedback"}, merge_schema=True
            )
        except (OSError, DeltaError) as exc:
            # S3 or the disk is down: the client is told (503, retry with the same event_id),
            # never a 201 for an event that was not committed.
            raise NotReady(
                f"the feedback table is unavailable, nothing was stored: "
                f"{type(exc).__name__}: {exc}"[:300]
            ) from exc
        return FeedbackReceipt(
            event_id=event_id, answer_id=request.answer_id, table=str(FEEDBACK), version=version
        )
