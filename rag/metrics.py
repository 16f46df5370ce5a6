"""Prometheus metrics of a RAG server replica: the index it serves (exported through Ray)."""

from __future__ import annotations

from prometheus_client import Gauge

from kernel.metrics import MetricSet
from rag.retrieval import Retriever


class IndexMetrics(MetricSet):
    """Whether the replica answers, how many chunks it serves, and from when."""

    def __init__(self, export: bool = False) -> None:
        super().__init__(export)
        self.ready = self.make(
            Gauge,
            "lakeserve_rag_index_ready",
            "1 when the replica has a non-empty index loaded and Chroma answered its last check.",
            ["collection"],
        )
        self.chunks = self.make(
            Gauge,
            "lakeserve_rag_index_chunks",
            "Chunks in the keyword index the replica serves.",
            ["collection"],
        )
        self.changed = self.make(
            Gauge,
            "lakeserve_rag_index_changed_timestamp_seconds",
            "When the chunks the replica serves last changed (by an ingest), epoch s.",
            ["collection"],
        )

    def record(self, collection: str, retriever: Retriever | None, healthy: bool) -> None:
        """Set the gauges from the retriever as it is now (None: no index opened yet)."""
        chunks = retriever.size if retriever is not None else 0
        self.ready.labels(collection).set(1 if healthy and chunks > 0 else 0)
        self.chunks.labels(collection).set(chunks)
        # HybridRetriever knows when its chunks changed; other retrievers may not.
        changed = getattr(retriever, "changed_at", None)
        if changed is not None:
            self.changed.labels(collection).set(changed)
