"""The live trip feed: new trips sent to serving, and their actual fares recorded later.

Trips of day `day` come from the same seeded generator and cleaning rules as the training feed,
on days past any seeded range (`LIVE_DAY_OFFSET + day`), so the same `(seed, day)` is always the
same trips and none of them was trained on. Each trip is one request with `X-Request-Id:
trip-<trip_id>`: the request log keys its row by that id, and `bronze.trip_outcomes` (written
when the fares are known) joins it. A `shift` changes the trips the way the world might (for
drift checks): `borough` sends every pickup from the Bronx and Staten Island, `distance` makes
trips three times longer.
"""

from __future__ import annotations

from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pyarrow as pa

from kernel.errors import ConfigError
from lakehouse.tables import Lakehouse, TableRef
from lakehouse.trips import clean, features
from lakehouse.trips.generate import DirtRates, generate_batch

LIVE_DAY_OFFSET = 10_000
OUTCOMES = TableRef("bronze", "trip_outcomes")
OUTCOME_SCHEMA = pa.schema(
    [
        pa.field("trip_id", pa.string(), nullable=False),
        pa.field("request_id", pa.string(), nullable=False),
        pa.field("fare_amount", pa.float64(), nullable=False),
        pa.field("observed_at", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("date", pa.date32(), nullable=False),
    ]
)
SHIFTS = ("none", "borough", "distance")


def request_id(trip_id: str) -> str:
    """The X-Request-Id a trip is sent with."""
    return f"trip-{trip_id}"


def live_trips(count: int, seed: int = 7, day: int = 0, shift: str = "none") -> pd.DataFrame:
    """`count` clean trips of live day `day`: trip_id, the model's features and the fare."""
    if shift not in SHIFTS:
        raise ConfigError(f"unknown shift {shift!r}: one of {', '.join(SHIFTS)}")
    if count < 1:
        raise ConfigError(f"--trips must be positive, got {count}")
    # The cleaning rules reject a few percent: generate a margin, keep the first `count`.
    raw = generate_batch(LIVE_DAY_OFFSET + day, int(count * 1.2) + 50, seed, DirtRates())
    kept, _, _ = clean.apply_rules(raw.to_pandas())
    gold = features.to_gold(clean.to_silver(kept)).to_pandas().head(count)
    if shift == "borough":
        rng = np.random.default_rng([seed, day, 1])
        gold["pickup_borough"] = rng.choice(["Bronx", "Staten Island"], size=len(gold))
    elif shift == "distance":
        gold["trip_distance"] = gold["trip_distance"] * 3.0
    if shift != "none":  # a shifted trip is another trip: its own request id and outcome
        gold["trip_id"] = gold["trip_id"].astype(str) + f"-{shift}"
    return gold.reset_index(drop=True)


def send(
    url: str, model: str, trips: pd.DataFrame, api_key: str | None = None, clients: int = 4
) -> Counter[int]:
    """Predict every trip, one request each; return how many got each HTTP status (0: none)."""
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    records = trips[features.FEATURES].astype(object).to_dict("records")
    ids = trips["trip_id"].tolist()

    with httpx.Client(base_url=url.rstrip("/"), headers=headers, timeout=60) as client:

        def one(position: int) -> int:
            body: dict[str, Any] = {"dataframe_records": [records[position]]}
            try:
                answer = client.post(
                    f"/predict/{model}",
                    json=body,
                    headers={"X-Request-Id": request_id(ids[position])},
                )
            except httpx.HTTPError:
                return 0
            return answer.status_code

        with ThreadPoolExecutor(clients) as pool:
            return Counter(pool.map(one, range(len(records))))


def record_outcomes(lake: Lakehouse, trips: pd.DataFrame) -> int:
    """Append the trips' actual fares to bronze.trip_outcomes; return the table version."""
    now = datetime.now(UTC)
    rows = pa.table(
        {
            "trip_id": trips["trip_id"].tolist(),
            "request_id": [request_id(t) for t in trips["trip_id"]],
            "fare_amount": trips[features.TARGET].astype(float).tolist(),
            "observed_at": [now] * len(trips),
            "date": [now.date()] * len(trips),
        },
        schema=OUTCOME_SCHEMA,
    )
    return lake.append(OUTCOMES, rows, metadata={"source": "lakeserve lake feed"},
                       partition_by=["date"])  # fmt: skip
