"""Property tests of the request decoders: any JSON either decodes or is a client error.

Hypothesis generates arbitrary JSON values, hostile numbers (inf, NaN, integers of any size)
included, shaped like the MLflow formats and v2 tensors; the decoders and the signature check
must answer with a RequestError (4xx) or typed columns, never another exception (5xx).
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from kernel.errors import RequestError
from serving.invocations import columns_from_invocation
from serving.v2 import parse_request
from tests.utils.fakes import ROW, SCHEMA

NAMES = [*ROW, "extra"]
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),  # unbounded: 400-digit integers too
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8),
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(NAMES), inner),
    max_leaves=12,
)
column_values = st.lists(scalars, min_size=0, max_size=4)
records = st.lists(st.dictionaries(st.sampled_from(NAMES), scalars, max_size=5), max_size=4)
DATATYPES = ["FP64", "FP32", "INT64", "INT32", "INT8", "UINT8", "BOOL", "BYTES", "FP16", "x"]
tensor = st.fixed_dictionaries(
    {
        "name": st.sampled_from(NAMES),
        "shape": st.lists(st.integers(min_value=-2, max_value=5), max_size=3),
        "datatype": st.sampled_from(DATATYPES),
        "data": st.one_of(column_values, values),
    }
)


@st.composite
def full_tensors(draw: st.DrawFn) -> dict[str, Any]:
    """A tensor for every signature column, of one length: the checks past decoding run."""
    n = draw(st.integers(1, 3))
    inputs = [
        {
            "name": name,
            "shape": [n],
            "datatype": draw(st.sampled_from(DATATYPES[:8])),
            "data": draw(st.lists(scalars, min_size=n, max_size=n)),
        }
        for name in ROW
    ]
    return {"inputs": inputs}


@st.composite
def full_columns(draw: st.DrawFn) -> dict[str, Any]:
    """MLflow `inputs` with every column, of one length, hostile numbers mixed in."""
    n = draw(st.integers(1, 3))
    good = {"trip_distance": 1.5, "passenger_count": 2, "is_airport": True, "rate_code": "x"}
    return {
        "inputs": {
            name: draw(st.lists(st.one_of(st.just(good[name]), scalars), min_size=n, max_size=n))
            for name in ROW
        }
    }


invocations = st.one_of(
    full_columns(),
    full_columns(),
    st.fixed_dictionaries({"dataframe_records": records}),
    st.fixed_dictionaries({"instances": st.one_of(records, values)}),
    st.fixed_dictionaries(
        {
            "dataframe_split": st.fixed_dictionaries(
                {
                    "columns": st.lists(st.sampled_from(NAMES), max_size=5),
                    "data": st.lists(st.lists(scalars, max_size=5), max_size=4),
                }
            )
        }
    ),
    st.fixed_dictionaries({"inputs": st.dictionaries(st.sampled_from(NAMES), column_values)}),
    st.dictionaries(st.text(max_size=10), values, max_size=3),
    values,
)
v2_bodies = st.one_of(
    full_tensors(),
    full_tensors(),
    st.fixed_dictionaries({"inputs": st.lists(tensor, max_size=5)}),
    st.dictionaries(st.text(max_size=10), values, max_size=3),
    values,
)


def checked(columns: dict[str, Any]) -> None:
    """The signature check: typed columns, or a client error."""
    try:
        typed = SCHEMA.check(columns, 8)
    except RequestError:
        return
    for column in SCHEMA.columns:
        array = typed[column.name]
        assert isinstance(array, np.ndarray) and array.ndim == 1
        if array.dtype.kind == "f":
            assert np.isfinite(array).all()  # no inf or NaN ever reaches a model


@settings(max_examples=400, deadline=None)
@given(body=invocations)
def test_any_mlflow_payload_decodes_or_is_a_client_error(body: Any) -> None:
    try:
        columns = columns_from_invocation(json.loads(json.dumps(body)))
    except RequestError:
        return
    checked(columns)


@settings(max_examples=400, deadline=None)
@given(body=v2_bodies)
def test_any_v2_request_decodes_or_is_a_client_error(body: Any) -> None:
    try:
        _, columns = parse_request(json.dumps(body).encode(), None)
    except RequestError:
        return
    checked(columns)


@settings(max_examples=200, deadline=None)
@given(header=st.binary(max_size=64), tail=st.binary(max_size=64), length=st.integers(-5, 200))
def test_any_binary_v2_body_decodes_or_is_a_client_error(
    header: bytes, tail: bytes, length: int
) -> None:
    try:
        _, columns = parse_request(header + tail, str(length))
    except RequestError:
        return
    checked(columns)


finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False)
rows = st.lists(
    st.fixed_dictionaries(
        {
            "trip_distance": finite,
            "passenger_count": st.integers(0, 9),
            "is_airport": st.booleans(),
            "rate_code": st.text(max_size=6),
        }
    ),
    min_size=1,
    max_size=5,
)


@settings(max_examples=200, deadline=None)
@given(batch=rows)
def test_every_mlflow_format_decodes_valid_rows_to_the_same_columns(
    batch: list[dict[str, Any]],
) -> None:
    names = list(ROW)
    bodies = [
        {"dataframe_records": batch},
        {"instances": batch},
        {"dataframe_split": {"columns": names, "data": [[r[n] for n in names] for r in batch]}},
        {"inputs": {n: [r[n] for r in batch] for n in names}},
    ]
    decoded = [SCHEMA.check(columns_from_invocation(json.loads(json.dumps(b))), 8) for b in bodies]
    for other in decoded[1:]:
        for name in names:
            assert other[name].tolist() == decoded[0][name].tolist()
    assert decoded[0]["passenger_count"].tolist() == [r["passenger_count"] for r in batch]
