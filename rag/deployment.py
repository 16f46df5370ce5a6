"""The Ray Serve deployment answering RAG queries; the platform's ingress calls it by handle.

Replica counts, CPUs and concurrency come from the Serve config (serving/serve-config.yaml),
never from this decorator.
"""

from __future__ import annotations

from ray import serve

from kernel.logs import configure_logging
from rag.metrics import IndexMetrics
from rag.service import RagService
from rag.settings import RagSettings


@serve.deployment(name="RagServer")
class RagServer(RagService):
    """A replica: embedding model, Chroma client, keyword index and LLM in one process.

    Its methods are `RagService`'s, i.e. `rag.api.RagApi`, called through `rag.api.RagHandle`.
    """

    def __init__(self) -> None:
        configure_logging(colors=False)
        super().__init__(RagSettings())
        self.metrics = IndexMetrics(export=True)
        # Opens the index if it exists; otherwise keeps retrying and answers 503 meanwhile.
        self.start()

    def refresh(self) -> None:
        """Follow the index (RagService.refresh), then export what is served now.

        Runs every rag_refresh_s (10 s), within Ray's gauge lifetime (two 10 s reports).
        """
        super().refresh()
        retriever = self.chain.retriever if self.chain is not None else None
        self.metrics.record(self.settings.rag_collection, retriever, self.detail is None)

    def check_health(self) -> None:
        """Serve's health check: unhealthy only if the thread following the index died.

        No index yet or Chroma down is not a reason to restart: the replica says so on
        /rag/health and recovers by itself when the index or Chroma comes back.
        """
        if self._thread is not None and not self._thread.is_alive():
            raise RuntimeError("the index-follow thread stopped")

    def __del__(self) -> None:
        self.stop()
