#!/usr/bin/env bash
# Lakeserve on a laptop: build the image, start kind, install KubeRay, apply the dev overlay,
# build the lakehouse, train, index the docs, then smoke-test the API and the chat page.
# Needs docker, kind, kubectl and helm. Usage: scripts/kind-deploy.sh [--skip-build]
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
        *) echo "unknown argument: $arg" >&2; exit 2 ;;
    esac
done

step() { printf '\n==> %s\n' "$*"; }
need() { command -v "$1" >/dev/null || { echo "$1 is required" >&2; exit 2; }; }
for tool in docker kind kubectl helm openssl curl; do need "$tool"; done

if [ "$SKIP_BUILD" = false ]; then
    step "building $IMAGE"
    docker build -t "$IMAGE" "$ROOT"
fi

step "kind cluster $CLUSTER"
kind get clusters | grep -qx "$CLUSTER" || kind create cluster --name "$CLUSTER"
kubectl config use-context "kind-$CLUSTER"
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
S3_KEY=lakeserve
S3_SECRET=$(existing lakeserve-platform lakeserve-s3 LAKESERVE_S3_SECRET_ACCESS_KEY || true)
S3_SECRET=${S3_SECRET:-$(openssl rand -hex 20)}
PG_PASSWORD=$(existing lakeserve-platform postgres POSTGRES_PASSWORD || true)
PG_PASSWORD=${PG_PASSWORD:-$(openssl rand -hex 20)}
API_KEY=$(existing lakeserve-serving lakeserve-api-keys LAKESERVE_API_KEY || true)
API_KEY=${API_KEY:-$(openssl rand -hex 20)}
for namespace in lakeserve-platform lakeserve-serving lakeserve-jobs; do
    secret "$namespace" lakeserve-s3 \
        "LAKESERVE_S3_ACCESS_KEY_ID=$S3_KEY" "LAKESERVE_S3_SECRET_ACCESS_KEY=$S3_SECRET"
done
secret lakeserve-platform postgres "POSTGRES_PASSWORD=$PG_PASSWORD"
secret lakeserve-platform mlflow-db \
    "MLFLOW_BACKEND_STORE_URI=postgresql://mlflow:$PG_PASSWORD@postgres.lakeserve-platform.svc.cluster.local:5432/mlflow"
secret lakeserve-serving lakeserve-api-keys "LAKESERVE_API_KEYS=$API_KEY" "LAKESERVE_API_KEY=$API_KEY"

step "applying k8s/overlays/dev"
kubectl apply -k "$ROOT/k8s/overlays/dev"
kubectl -n lakeserve-platform rollout status statefulset/postgres --timeout=300s
kubectl -n lakeserve-platform rollout status statefulset/minio --timeout=300s
kubectl -n lakeserve-platform wait --for=condition=complete job/minio-bucket --timeout=300s
kubectl -n lakeserve-platform wait --for=condition=complete job/mlflow-db-upgrade --timeout=300s
kubectl -n lakeserve-platform rollout status deployment/mlflow --timeout=300s
kubectl -n lakeserve-platform rollout status statefulset/chroma --timeout=300s

run_job() {  # file-or-cronjob name: create it (again) and wait for it
    local name=$1 source=$2
    kubectl -n lakeserve-jobs delete job "$name" --ignore-not-found
    if [ -f "$source" ]; then
        sed "s|ghcr.io/lakeserve/lakeserve:0.1.0|$IMAGE|; s|imagePullPolicy: Always|imagePullPolicy: IfNotPresent|" \
            "$source" | kubectl create -f -
    else
        kubectl -n lakeserve-jobs create job "$name" --from="cronjob/$source"
    fi
    kubectl -n lakeserve-jobs wait --for=condition=complete "job/$name" --timeout=1800s
    kubectl -n lakeserve-jobs logs "job/$name" --tail=5
}
step "lakehouse, model and index (Jobs)"
kubectl -n lakeserve-jobs delete configmap train-fare-hgb-config --ignore-not-found
run_job lake-seed "$ROOT/k8s/jobs/seed-job.yaml"
run_job train-fare-hgb "$ROOT/k8s/jobs/train-job.yaml"
run_job rag-ingest-now rag-ingest

step "serving (RayService) and chat"
kubectl -n lakeserve-serving wait --for=condition=Ready rayservice/lakeserve --timeout=1200s
kubectl -n lakeserve-serving rollout status deployment/chat --timeout=300s

step "smoke test"
kubectl -n lakeserve-serving port-forward svc/lakeserve-serve-svc 18000:8000 >/dev/null &
API_FORWARD=$!
kubectl -n lakeserve-serving port-forward svc/chat 18501:8501 >/dev/null &
CHAT_FORWARD=$!
trap 'kill $API_FORWARD $CHAT_FORWARD 2>/dev/null || true' EXIT
sleep 3
curl -fsS http://127.0.0.1:18000/v2/health/ready && echo
curl -fsS http://127.0.0.1:18000/rag/health && echo
curl -fsS http://127.0.0.1:18000/rag/query -H "Authorization: Bearer $API_KEY" \
    -H 'Content-Type: application/json' -d '{"question": "How do I pretty-print JSON?"}' | head -c 400
echo
curl -fsS http://127.0.0.1:18501/_stcore/health && echo
step "done: kubectl -n lakeserve-serving port-forward svc/chat 8501:8501, then open http://127.0.0.1:8501"
