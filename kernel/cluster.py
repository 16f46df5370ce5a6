"""Starting or joining Ray: a local Ray under the settings' temp dir, or LAKESERVE_RAY_ADDRESS."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from kernel.settings import RaySettings


def init_ray(settings: RaySettings, **options: Any) -> None:
    """Join the configured cluster, or start a local Ray (no dashboard, short temp path)."""
    import ray

    # Local runs need no cluster auth token; Ray's processes read the mode from the
    # environment they inherit from this one, so that is where it must be set.
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    if settings.ray_address:
        ray.init(address=settings.ray_address, log_to_driver=False, **options)
        return
    settings.ray_tmpdir.mkdir(parents=True, exist_ok=True)
    ray.init(
        include_dashboard=False,
        _temp_dir=str(settings.ray_tmpdir),
        log_to_driver=False,
        **options,
    )


@contextmanager
def ray_session(settings: RaySettings) -> Iterator[None]:
    """Use the running Ray, or start (or join) one for the block and shut it down after."""
    import ray

    if ray.is_initialized():
        yield
        return
    init_ray(settings)
    try:
        yield
    finally:
        ray.shutdown()
