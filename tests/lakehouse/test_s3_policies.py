"""One S3 identity per role: the policies the dev overlay gives MinIO, enforced by a real S3.

moto_server with IAM enforcement (INITIAL_NO_AUTH_ACTION_COUNT: the setup calls go through,
every later call is authorized against the user's policy) holds one user per committed policy
(k8s/overlays/dev/s3-policies/). Each role does what it must through the real code path
(Delta on S3) and is refused what it must not: serving cannot read, write or delete a gold
table or the MLflow artifacts. (moto evaluates actions and resources, not Condition keys: the
ListBucket prefixes are MinIO's to enforce and are not checked here.)
"""

from __future__ import annotations

import datetime
import json
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pyarrow as pa
import pytest
from botocore.exceptions import ClientError

from lakehouse.requests import PREDICTIONS, RAG_REQUESTS
from lakehouse.seed import GOLD
from lakehouse.settings import LakehouseSettings
from lakehouse.tables import Lakehouse, TableRef
from tests.utils.processes import BIN, free_port, start_server

pytestmark = pytest.mark.integration
POLICIES = Path(__file__).parents[2] / "k8s" / "overlays" / "dev" / "s3-policies"
ROLES = ("serving", "jobs", "mlflow")
BUCKET = "lakeserve"  # the bucket of k8s/base/settings.env
FEEDBACK = TableRef("bronze", "feedback")
ROOT_KEYS = {"aws_access_key_id": "root", "aws_secret_access_key": "root"}
# The calls made before enforcement starts: bucket, then user + policy + key per role, then
# a gold table's file and an MLflow artifact written as the administrator would.
SETUP_CALLS = 1 + 3 * len(ROLES) + 2


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, dict[str, str]]]]:
    root = tmp_path_factory.mktemp("s3-iam")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": str(SETUP_CALLS)}
    command = [str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)]
    for _ in start_server(command, f"{url}/moto-api/", root / "s3.log", env=env):
        client = dict(endpoint_url=url, region_name="us-east-1", **ROOT_KEYS)
        s3, iam = boto3.client("s3", **client), boto3.client("iam", **client)
        s3.create_bucket(Bucket=BUCKET)
        keys = {}
        for role in ROLES:
            iam.create_user(UserName=role)
            iam.put_user_policy(
                UserName=role,
                PolicyName=role,
                PolicyDocument=(POLICIES / f"{role}.json").read_text(),
            )
            key = iam.create_access_key(UserName=role)["AccessKey"]
            keys[role] = {"id": key["AccessKeyId"], "secret": key["SecretAccessKey"]}
        s3.put_object(Bucket=BUCKET, Key="lake/gold/trips/part-0.parquet", Body=b"rows")
        s3.put_object(Bucket=BUCKET, Key="mlflow/1/model.pkl", Body=b"model")
        yield url, keys


def lake(url: str, key: dict[str, str]) -> Lakehouse:
    return Lakehouse(
        LakehouseSettings(
            lake_root=f"s3://{BUCKET}/lake",
            s3_endpoint_url=url,
            s3_access_key_id=key["id"],
            s3_secret_access_key=key["secret"],
            s3_allow_http=True,
        )
    )


def client(url: str, key: dict[str, str]) -> Any:
    return boto3.client(
        "s3", endpoint_url=url, region_name="us-east-1",
        aws_access_key_id=key["id"], aws_secret_access_key=key["secret"],
    )  # fmt: skip


def denied(call: Callable[..., object], *args: object, **kwargs: object) -> bool:
    try:
        call(*args, **kwargs)
    except ClientError as exc:
        return exc.response["Error"]["Code"] == "AccessDenied"
    return False


def test_policies_are_valid_iam_documents() -> None:
    for role in ROLES:
        document = json.loads((POLICIES / f"{role}.json").read_text())
        assert document["Version"] == "2012-10-17"
        assert all(s["Effect"] == "Allow" for s in document["Statement"])  # deny by default


def test_serving_writes_feedback_and_the_request_log_and_nothing_else(
    s3: tuple[str, dict[str, dict[str, str]]],
) -> None:
    url, keys = s3
    serving = lake(url, keys["serving"])
    event = pa.table({"event_id": [uuid.uuid4().hex]})
    first = serving.append(FEEDBACK, event, metadata={"source": "test"})
    assert serving.append(FEEDBACK, event, metadata={"source": "test"}) == first + 1
    # The request log as replicas write it: partitioned by date, schema merged per model.
    day = pa.array([datetime.date(2026, 12, 1)], pa.date32())
    for table in (PREDICTIONS, RAG_REQUESTS):
        rows = pa.table({"request_id": ["r1"], "date": day})
        serving.append(table, rows, metadata={"source": "test"}, partition_by=["date"])
        more = rows.append_column("status", pa.array([200], pa.int32()))
        serving.append(table, more, metadata={"source": "test"}, merge_schema=True)
        assert serving.read(table).num_rows == 2
    s3c = client(url, keys["serving"])
    gold = "lake/gold/trips/part-0.parquet"
    assert denied(s3c.delete_object, Bucket=BUCKET, Key=gold)
    assert denied(s3c.get_object, Bucket=BUCKET, Key=gold)
    assert denied(s3c.put_object, Bucket=BUCKET, Key=gold, Body=b"x")
    assert denied(s3c.get_object, Bucket=BUCKET, Key="mlflow/1/model.pkl")
    with pytest.raises(OSError):
        serving.append(GOLD, event, metadata={"source": "test"})


def test_jobs_own_the_lake_and_mlflow_its_artifacts(
    s3: tuple[str, dict[str, dict[str, str]]],
) -> None:
    url, keys = s3
    jobs = lake(url, keys["jobs"])
    table = TableRef("gold", "policy_check")
    jobs.append(table, pa.table({"x": [1, 2]}), metadata={"source": "test"})
    assert jobs.dataset(table).to_table().num_rows == 2
    jobs_s3, mlflow_s3 = client(url, keys["jobs"]), client(url, keys["mlflow"])
    jobs_s3.delete_object(Bucket=BUCKET, Key="lake/gold/trips/part-0.parquet")
    assert denied(jobs_s3.get_object, Bucket=BUCKET, Key="mlflow/1/model.pkl")
    mlflow_s3.put_object(Bucket=BUCKET, Key="mlflow/2/model.pkl", Body=b"m")
    assert denied(
        mlflow_s3.get_object,
        Bucket=BUCKET,
        Key="lake/gold/policy_check/_delta_log/00000000000000000000.json",
    )
