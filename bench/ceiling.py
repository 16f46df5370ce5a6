"""The ceiling for bench/serving.py: a bare ASGI app under uvicorn, no framework, no checks.

`BENCH_CEILING=model` (default) decodes the MLflow `dataframe_split` body, batches requests
for up to `BENCH_BATCH_WAIT_S` (2 ms) or `BENCH_MAX_BATCH` (64) rows into one call of the
scikit-learn pipeline at `BENCH_MODEL_PATH` (an MLflow model directory), and answers
`{"predictions": [...]}`. `BENCH_CEILING=noop` answers a constant: the HTTP ceiling.

    BENCH_MODEL_PATH=... uvicorn bench.ceiling:app --workers 2 --port 8000
"""

from __future__ import annotations

import asyncio
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import orjson

MODE = os.environ.get("BENCH_CEILING", "model")
MAX_BATCH = int(os.environ.get("BENCH_MAX_BATCH", "64"))
WAIT_S = float(os.environ.get("BENCH_BATCH_WAIT_S", "0.002"))
NOOP = orjson.dumps({"predictions": [0.0]})


class Batcher:
    """Collects single requests into one predict call (what a serving framework's batching
    does, with nothing else around it)."""

    def __init__(self, path: str) -> None:
        import mlflow.sklearn

        self.model = mlflow.sklearn.load_model(path)
        self.queue: asyncio.Queue[tuple[list[str], list[list[Any]], asyncio.Future[Any]]] | None
        self.queue = None
        self.pool = ThreadPoolExecutor(1)

    async def predict(self, columns: list[str], rows: list[list[Any]]) -> list[float]:
        if self.queue is None:
            self.queue = asyncio.Queue()
            asyncio.get_running_loop().create_task(self._loop())
        done: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        await self.queue.put((columns, rows, done))
        return await done

    async def _loop(self) -> None:
        import pandas as pd

        assert self.queue is not None
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self.queue.get()]
            # Wait once, then take what arrived (wait_for around Queue.get can drop an item
            # when it times out on Python 3.11).
            await asyncio.sleep(WAIT_S)
            while len(batch) < MAX_BATCH and not self.queue.empty():
                batch.append(self.queue.get_nowait())
            frame = pd.DataFrame([row for _, rows, _ in batch for row in rows], columns=batch[0][0])
            try:
                predictions = await loop.run_in_executor(self.pool, self.model.predict, frame)
            except Exception as exc:
                for *_, done in batch:
                    done.set_exception(exc)
                continue
            start = 0
            for _, rows, done in batch:
                done.set_result(predictions[start : start + len(rows)].tolist())
                start += len(rows)


batcher = Batcher(os.environ["BENCH_MODEL_PATH"]) if MODE == "model" else None


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    if batcher is None or scope["path"] in {"/health", "/ping"}:
        payload = NOOP
    else:
        split = orjson.loads(body)["dataframe_split"]
        payload = orjson.dumps(
            {"predictions": await batcher.predict(split["columns"], split["data"])}
        )
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(payload))]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": payload})
