#!/usr/bin/env bash
# Lakeserve on a laptop: build the image, start kind, install KubeRay, apply the dev overlay,
# build the lakehouse, train, index the docs, then smoke-test the API, the chat page and MLflow.
# Needs docker, kind, kubectl, helm, openssl and curl. Usage: scripts/kind-deploy.sh [--skip-build]
set -euo pipefail

CLUSTER=${CLUSTER:-lakeserve}
IMAGE=lakeserve:dev
KUBERAY_VERSION=1.7.0
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SKIP_BUILD=false
for arg in "$@"; do
    case $arg in
        --skip-build) SKIP_BUILD=true ;;
        -h | --help) sed -n '2,4p' "$0"; exit 0 ;;
        *) echo "unknown argument: $arg (try --help)" >&2; exit 2 ;;
    esac
done

step() { printf '\n==> %s\n' "$*"; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }
need() { command -v "$1" >/dev/null || die "$1 is required (not found on PATH)"; }
for tool in docker kind kubectl helm openssl curl; do need "$tool"; done
docker info >/dev/null 2>&1 || die "the Docker daemon is not reachable (is Docker running?)"

if [ "$SKIP_BUILD" = false ]; then
    step "building $IMAGE (the first build compiles llama.cpp: several minutes)"
    docker build -t "$IMAGE" "$ROOT"
else
    docker image inspect "$IMAGE" >/dev/null 2>&1 \
        || die "--skip-build given but image $IMAGE does not exist: run once without it"
fi

step "kind cluster $CLUSTER"
if kind get clusters | grep -qx "$CLUSTER"; then
    echo "cluster $CLUSTER exists: reusing it"
else
    kind create cluster --name "$CLUSTER"
fi
kubectl config use-context "kind-$CLUSTER"
step "loading $IMAGE into the kind node"
kind load docker-image "$IMAGE" --name "$CLUSTER"

step "KubeRay operator $KUBERAY_VERSION"
helm repo add kuberay https://ray-project.github.io/kuberay-helm/ >/dev/null
helm repo update kuberay >/dev/null
helm upgrade --install kuberay-operator kuberay/kuberay-operator \
    --version "$KUBERAY_VERSION" --namespace ray-system --create-namespace --wait

step "namespaces and secrets (random values, kept in the cluster only)"
kubectl apply -f "$ROOT/k8s/base/namespaces.yaml"
secret() {  # namespace name key=value...
    local namespace=$1 name=$2
    shift 2
    local literals=()
    for pair in "$@"; do literals+=("--from-literal=$pair"); done
    kubectl -n "$namespace" create secret generic "$name" "${literals[@]}" \
        --dry-run=client -o yaml | kubectl apply -f -
}
existing() { kubectl -n "$1" get secret "$2" -o "jsonpath={.data.$3}" 2>/dev/null | base64 -d; }
keep() {  # namespace secret key: the existing value, else a new random one
    local value
    value=$(existing "$1" "$2" "$3" || true)
    echo "${value:-$(openssl rand -hex 20)}"
}
# MinIO: the root user for the minio-setup Job only, one user per role with its policy
# (k8s/overlays/dev/s3-policies/), each namespace's lakeserve-s3 holding its role's keys.
MINIO_ROOT_PASSWORD=$(keep lakeserve-platform minio-root MINIO_ROOT_PASSWORD)
S3_SERVING=$(keep lakeserve-platform minio-users SERVING_SECRET)
S3_JOBS=$(keep lakeserve-platform minio-users JOBS_SECRET)
S3_MLFLOW=$(keep lakeserve-platform minio-users MLFLOW_SECRET)
secret lakeserve-platform minio-root "MINIO_ROOT_USER=admin" \
    "MINIO_ROOT_PASSWORD=$MINIO_ROOT_PASSWORD"
secret lakeserve-platform minio-users "SERVING_SECRET=$S3_SERVING" "JOBS_SECRET=$S3_JOBS" \
    "MLFLOW_SECRET=$S3_MLFLOW"
s3_identity() {  # namespace user secret-key
    secret "$1" lakeserve-s3 "LAKESERVE_S3_ACCESS_KEY_ID=$2" "LAKESERVE_S3_SECRET_ACCESS_KEY=$3"
}
s3_identity lakeserve-platform mlflow "$S3_MLFLOW"
s3_identity lakeserve-serving serving "$S3_SERVING"
s3_identity lakeserve-jobs jobs "$S3_JOBS"
PG_PASSWORD=$(existing lakeserve-platform postgres POSTGRES_PASSWORD || true)
PG_PASSWORD=${PG_PASSWORD:-$(openssl rand -hex 20)}
API_KEY=$(existing lakeserve-serving lakeserve-api-keys LAKESERVE_API_KEYS || true)
API_KEY=${API_KEY:-$(openssl rand -hex 20)}
# The chat page has a key of its own, revocable without touching the clients' keys.
CHAT_KEY=$(existing lakeserve-serving lakeserve-chat-key LAKESERVE_API_KEY || true)
CHAT_KEY=${CHAT_KEY:-$(openssl rand -hex 20)}
secret lakeserve-platform postgres "POSTGRES_PASSWORD=$PG_PASSWORD"
secret lakeserve-platform mlflow-db \
    "MLFLOW_BACKEND_STORE_URI=postgresql://mlflow:$PG_PASSWORD@postgres.lakeserve-platform.svc.cluster.local:5432/mlflow"
# The registry: MLflow's basic-auth app (permissions in the same Postgres database: its tables
# and alembic_version_auth do not overlap MLflow's), an administrator only the users Job uses,
# a trainer identity for the Jobs and a read-only one for serving.
ADMIN_PASSWORD=$(keep lakeserve-platform mlflow-auth MLFLOW_AUTH_ADMIN_PASSWORD)
CSRF_KEY=$(keep lakeserve-platform mlflow-auth MLFLOW_FLASK_SERVER_SECRET_KEY)
TRAINER_PASSWORD=$(keep lakeserve-platform mlflow-users TRAINER_PASSWORD)
SERVING_PASSWORD=$(keep lakeserve-platform mlflow-users SERVING_PASSWORD)
AUTH_INI=$(printf '[mlflow]\ndefault_permission = READ\ndatabase_uri = %s\n%s\n' \
    "postgresql://mlflow:$PG_PASSWORD@postgres.lakeserve-platform.svc.cluster.local:5432/mlflow" \
    "authorization_function = mlflow.server.auth:authenticate_request_basic_auth")
secret lakeserve-platform mlflow-auth "basic_auth.ini=$AUTH_INI" \
    "MLFLOW_AUTH_ADMIN_USERNAME=admin" "MLFLOW_AUTH_ADMIN_PASSWORD=$ADMIN_PASSWORD" \
    "MLFLOW_FLASK_SERVER_SECRET_KEY=$CSRF_KEY"
secret lakeserve-platform mlflow-users \
    "TRAINER_PASSWORD=$TRAINER_PASSWORD" "SERVING_PASSWORD=$SERVING_PASSWORD"
secret lakeserve-jobs mlflow-trainer \
    "MLFLOW_TRACKING_USERNAME=trainer" "MLFLOW_TRACKING_PASSWORD=$TRAINER_PASSWORD"
secret lakeserve-serving mlflow-serving \
    "MLFLOW_TRACKING_USERNAME=serving" "MLFLOW_TRACKING_PASSWORD=$SERVING_PASSWORD"
secret lakeserve-serving lakeserve-api-keys "LAKESERVE_API_KEYS=$API_KEY"
secret lakeserve-serving lakeserve-chat-key "LAKESERVE_API_KEY=$CHAT_KEY"
# Airflow's loop asks serving which version it serves (`lakeserve models wait`) with a client key.
secret lakeserve-jobs lakeserve-loop-key "LAKESERVE_API_KEY=${API_KEY%%,*}"

step "applying k8s/overlays/dev"
# The set-up Jobs run again on every deploy (they are idempotent; a Job's template is
# immutable): a changed policy or a rotated key in the Secrets above takes effect.
kubectl -n lakeserve-platform delete job minio-setup mlflow-users --ignore-not-found
kubectl apply -k "$ROOT/k8s/overlays/dev"
step "waiting for the platform (postgres, minio, mlflow, chroma)"
kubectl -n lakeserve-platform rollout status statefulset/postgres --timeout=300s
kubectl -n lakeserve-platform rollout status statefulset/minio --timeout=300s
kubectl -n lakeserve-platform wait --for=condition=complete job/minio-setup --timeout=300s
kubectl -n lakeserve-platform wait --for=condition=complete job/mlflow-db-upgrade --timeout=300s
kubectl -n lakeserve-platform rollout status deployment/mlflow --timeout=300s
kubectl -n lakeserve-platform wait --for=condition=complete job/mlflow-users --timeout=300s
kubectl -n lakeserve-platform rollout status statefulset/chroma --timeout=300s

# The Job files as kind needs them: the loaded image, never pulled, sized like the dev overlay.
KIND_JOB="s|ghcr.io/lakeserve/lakeserve:0.1.0|$IMAGE|; s|imagePullPolicy: Always|imagePullPolicy: IfNotPresent|"
KIND_JOB+="; s|cpu: '2'|cpu: '1'|; s|memory: 4Gi|memory: 3Gi|"
run_job() {  # name file-or-cronjob: create the Job (again) and wait for it
    local name=$1 source=$2
    kubectl -n lakeserve-jobs delete job "$name" --ignore-not-found
    if [ -f "$source" ]; then
        sed "$KIND_JOB" "$source" | kubectl create -f -
    else
        kubectl -n lakeserve-jobs create job "$name" --from="cronjob/$source"
    fi
    if ! kubectl -n lakeserve-jobs wait --for=condition=complete "job/$name" --timeout=1800s; then
        kubectl -n lakeserve-jobs logs "job/$name" --tail=50 >&2 || true
        die "job $name did not complete"
    fi
    kubectl -n lakeserve-jobs logs "job/$name" --tail=5
}
step "lakehouse, model and index (Jobs)"
kubectl -n lakeserve-jobs delete configmap train-fare-hgb-config --ignore-not-found
run_job lake-seed "$ROOT/k8s/jobs/seed-job.yaml"
run_job train-fare-hgb "$ROOT/k8s/jobs/train-job.yaml"
run_job rag-ingest-now rag-ingest

step "waiting for serving (RayService lakeserve, Deployment chat)"
kubectl -n lakeserve-serving wait --for=condition=Ready rayservice/lakeserve --timeout=1200s
kubectl -n lakeserve-serving rollout status deployment/chat --timeout=300s

step "smoke test"
FORWARDS=()
cleanup() { if [ ${#FORWARDS[@]} -gt 0 ]; then kill "${FORWARDS[@]}" 2>/dev/null || true; fi; }
trap cleanup EXIT
forward() {  # namespace service local-port:remote-port
    kubectl -n "$1" port-forward "svc/$2" "$3" >/dev/null 2>&1 &
    FORWARDS+=("$!")
}
check() {  # url [curl args...]: retried while the port-forward comes up; MAX_TIME per try
    local url=$1 attempt
    shift
    for attempt in $(seq 1 30); do
        if curl -fsS --max-time "${MAX_TIME:-10}" "$@" "$url"; then
            echo
            echo "ok: $url"
            return 0
        fi
        [ "$attempt" -lt 30 ] && sleep 2
    done
    die "smoke test failed: $url"
}
forward lakeserve-serving lakeserve-serve-svc 18000:8000
forward lakeserve-serving chat 18501:8501
forward lakeserve-platform mlflow 15000:5000
check http://127.0.0.1:18000/v2/health/ready
check http://127.0.0.1:18000/rag/health
# An answer is generated by the small LLM on CPU: give it up to three minutes.
MAX_TIME=180 check http://127.0.0.1:18000/rag/query -H "Authorization: Bearer $API_KEY" \
    -H 'Content-Type: application/json' -d '{"question": "How do I pretty-print JSON?"}'
check http://127.0.0.1:18501/_stcore/health
# MLflow checks the Host header against --allowed-hosts (k8s/base/platform/mlflow.yaml).
check http://127.0.0.1:15000/health -H 'Host: localhost:5000'
# The registry answers serving's read-only identity, and nobody without one.
check "http://127.0.0.1:15000/api/2.0/mlflow/registered-models/alias?name=fare-regressor&alias=champion" \
    -H 'Host: localhost:5000' -u "serving:$SERVING_PASSWORD"
anonymous=$(curl -s -o /dev/null -w '%{http_code}' -H 'Host: localhost:5000' \
    http://127.0.0.1:15000/api/2.0/mlflow/registered-models/search)
[ "$anonymous" = 401 ] || die "MLflow answered $anonymous without credentials (expected 401)"
# Serving's S3 identity appends feedback and cannot delete a gold table (a Ray pod's keys).
HEAD=$(kubectl -n lakeserve-serving get pods -l ray.io/node-type=head -o name | head -1)
kubectl -n lakeserve-serving exec "$HEAD" -c ray-head -- python -c '
import os, boto3
from botocore.exceptions import ClientError
s3 = boto3.client("s3", endpoint_url=os.environ["LAKESERVE_S3_ENDPOINT_URL"],
                  aws_access_key_id=os.environ["LAKESERVE_S3_ACCESS_KEY_ID"],
                  aws_secret_access_key=os.environ["LAKESERVE_S3_SECRET_ACCESS_KEY"])
try:
    s3.delete_object(Bucket="lakeserve", Key="lake/gold/trips/_delta_log/00000000000000000000.json")
except ClientError as exc:
    assert exc.response["Error"]["Code"] == "AccessDenied", exc
    print("ok: serving cannot delete a gold table")
else:
    raise SystemExit("serving deleted a gold table file: its S3 policy is missing")
' || die "serving's S3 identity is not least-privilege"

step "done. The API key is in Secret lakeserve-serving/lakeserve-api-keys. Open the chat with:"
echo "  kubectl -n lakeserve-serving port-forward svc/chat 8501:8501   # then http://127.0.0.1:8501"
