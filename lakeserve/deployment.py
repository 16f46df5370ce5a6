"""The platform's ingress deployment, and the app builder the Serve config imports.

Replica counts, CPUs and concurrency come from the Serve config (serving/serve-config.yaml),
never from the decorators here.
"""

from __future__ import annotations

import time
from typing import Any

from fastapi import FastAPI
from ray import serve
from ray.serve import Application
from ray.serve.handle import DeploymentHandle
from threadpoolctl import threadpool_limits

from kernel.logs import configure_logging
from kernel.settings import TrackingSettings
from lakehouse.settings import LakehouseSettings
from lakehouse.tables import Lakehouse
from lakeserve.api.app import create_app
from lakeserve.api.requestlog import RequestLog
from rag.api import RagHandle
from rag.deployment import RagServer
from rag.feedback import FeedbackStore
from rag.ratings import FeedbackTraces
from rag.settings import RagSettings
from serving.host import ModelHost
from serving.metrics import ServingMetrics
from serving.model import MlflowRegistry
from serving.options import ServingOptions
from serving.settings import ServingSettings


@serve.deployment(name="ModelServer")
@serve.ingress()
class ModelServer:
    """A replica: every configured model in process, behind the FastAPI app (one hop)."""

    def __init__(self, options: dict[str, Any], rag: DeploymentHandle | None = None) -> None:
        configure_logging(colors=False)
        self.options = ServingOptions.model_validate(options)
        self.started = time.monotonic()
        # A replica owns a fraction of a core: native thread pools (OpenMP in tree models)
        # sized for the whole machine oversubscribe it and make every predict call slower.
        threadpool_limits(self.options.model_threads)
        self.keys = ServingSettings().keys()
        registry = MlflowRegistry(TrackingSettings().uri, verify=self.options.verify_artifacts)
        self.host = ModelHost(self.options, registry, ServingMetrics(export=True), batching=True)
        self.rag = RagHandle(rag) if rag is not None else None
        # Feedback is written here, not by a RagServer replica: it must not queue behind
        # generations, and a 201 must mean the Delta commit happened.
        lake = Lakehouse(LakehouseSettings())
        self.feedback = FeedbackStore(lake) if rag is not None else None
        settings = RagSettings()
        trace_feedback = rag is not None and settings.rag_trace
        self.feedback_traces = FeedbackTraces(settings) if trace_feedback else None
        log = self.options.request_log
        self.requests = RequestLog(lake, log, self.host.metrics) if log.enabled else None

    def check_health(self) -> None:
        """Serve's health check: a replica still without a model after the start-up grace is
        unhealthy, so Serve (and KubeRay) replace it instead of routing traffic to its 503s.

        A replica that loaded its models stays healthy when the registry goes down later: it
        keeps answering with what it has.
        """
        if self.host.ready or time.monotonic() - self.started < self.options.load_grace_s:
            return
        missing = {s.spec.name: s.last_error for s in self.host.slots.values() if not s.ready}
        raise RuntimeError(f"models not loaded after {self.options.load_grace_s:g}s: {missing}")

    def __serve_build_asgi_app__(self) -> FastAPI:
        # The app starts the host (first load, alias following) in its lifespan.
        # Ray Serve's proxy gives every request its X-Request-Id (the client's, or a new one).
        return create_app(
            self.host,
            api_keys=self.keys,
            rag=self.rag,
            feedback=self.feedback,
            request_log=self.requests,
            request_ids=False,
            feedback_traces=self.feedback_traces,
        )


def build_app(args: dict[str, Any]) -> Application:
    """Build the platform application from the `args` block of the Serve config.

    The args are validated here, so a bad config fails the deployment with a clear message.
    """
    options = ServingOptions.model_validate(args)
    rag = RagServer.bind() if options.rag else None  # type: ignore[attr-defined]
    return ModelServer.bind(options.model_dump(), rag)  # type: ignore[attr-defined]
