"""Every Kubernetes artifact and the Dockerfile, verified offline as strictly as the tools allow."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.k8s import validate
from tests.k8s.validate import K8S, ROOT, checkov, errors, render, write_objects
from tests.utils.cli import spawn
from tests.utils.processes import BIN

pytestmark = pytest.mark.integration

DOCKERFILE = ROOT / "Dockerfile"
KUSTOMIZATIONS = validate.kustomizations()
OVERLAYS = sorted(name for name in KUSTOMIZATIONS if name != "base")
JOB_FILES = {
    "train-job": K8S / "jobs" / "train-job.yaml",
    "train-sweep": K8S / "jobs" / "train-sweep.yaml",
    "seed-job": K8S / "jobs" / "seed-job.yaml",
}
GITOPS = {f"argocd-{p.stem}": p for p in sorted((K8S / "argocd").glob("*.yaml"))}
TARGETS = {**KUSTOMIZATIONS, **JOB_FILES, **GITOPS}
WORKLOADS = ("Deployment", "StatefulSet", "Job", "CronJob")


def test_every_overlay_is_found() -> None:
    assert {"dev", "prod"} <= set(OVERLAYS)


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_renders_and_validates_strictly(target: str) -> None:
    objects = render(TARGETS[target])
    assert objects
    problems = errors(objects)
    assert problems == [], "\n".join(problems)


def test_submit_dry_run_validates() -> None:
    result = spawn(
        "train", "submit", "--dry-run", "--config", str(ROOT / "training/configs/fare-ridge.yaml"),
        "--set", "model.params.alpha=0.5", "--cpu", "500m", "--memory", "1Gi",
    )  # fmt: skip
    assert result.code == 0, result.err
    objects = [o for o in yaml.safe_load_all(result.out) if o]
    assert [o["kind"] for o in objects] == ["ConfigMap", "Job"]
    assert errors(objects) == []


def test_validators_report_every_error_of_every_object() -> None:
    container = {"name": "c", "image": "i", "resources": {"limits": {"cpu": {}}}}
    broken: list[dict[str, Any]] = [
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "typo"},
         "spec": {"replicaz": 1, "selector": {}, "template": {}}},
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "types"},
         "spec": {"containers": [container]}},
        {"apiVersion": "v1", "kind": "Foo", "metadata": {"name": "foo"}},
        {"apiVersion": "v1", "kind": "Container", "metadata": {"name": "nested-type"}},
        {"apiVersion": "ray.io/v1", "kind": "RayService", "metadata": {"name": "r"},
         "spec": {"serveConfigV3": "", "rayClusterConfig": {"headGroupSpec": {}}}},
        {"apiVersion": "ray.io/v1", "kind": "RayJob", "metadata": {"name": "j"},
         "spec": {"entrypointz": "python x.py"}},
        {"apiVersion": "ray.io/v1", "kind": "RayCluster"},
        {"apiVersion": "ray.io/v2", "kind": "RayService", "metadata": {"name": "v2"}},
        {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
         "metadata": {"name": "h"}, "spec": {"rules": [{"backendRefz": []}]}},
        {"apiVersion": "monitoring.coreos.com/v1", "kind": "PodMonitor",
         "metadata": {"name": "p"},
         "spec": {"selector": {}, "podMetricsEndpoints": [{"portz": "x"}]}},
        {"apiVersion": "argoproj.io/v1alpha1", "kind": "Application", "metadata": {"name": "a"},
         "spec": {"project": "default", "destination": {}, "sourcez": {}}},
        {"apiVersion": "gateway.networking.k8s.io/v9", "kind": "HTTPRoute",
         "metadata": {"name": "v9"}},
    ]  # fmt: skip
    found = "\n".join(errors(broken))
    assert "Deployment/typo: spec: Additional properties are not allowed ('replicaz'" in found
    assert "Pod/types: spec/containers/0/resources/limits/cpu: {} is not valid" in found
    assert "Foo/foo: unknown kind v1 Foo (no schema" in found
    assert "Container/nested-type: unknown kind v1 Container" in found
    assert "RayService/r: spec: Additional properties are not allowed ('serveConfigV3'" in found
    assert "RayService/r: spec/rayClusterConfig/headGroupSpec: 'template' is a required" in found
    assert "RayJob/j: spec: Additional properties are not allowed ('entrypointz'" in found
    assert "RayCluster/None: (root): 'metadata' is a required property" in found
    assert "RayService/v2: unknown kind ray.io/v2 RayService" in found
    assert (
        "HTTPRoute/h: spec/rules/0: Additional properties are not allowed ('backendRefz'" in found
    )
    assert (
        "PodMonitor/p: spec/podMetricsEndpoints/0: Additional properties are not allowed" in found
    )
    assert "Application/a: spec: Additional properties are not allowed ('sourcez'" in found
    assert "HTTPRoute/v9: unknown kind gateway.networking.k8s.io/v9 HTTPRoute" in found


def test_missing_kuberay_crds_fail_saying_how_to_get_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LAKESERVE_KUBERAY_CRDS", str(tmp_path))
    service = {"apiVersion": "ray.io/v1", "kind": "RayService", "metadata": {"name": "r"}}
    with pytest.raises(validate.CheckError, match=r"run `make crds` to download them"):
        errors([service])


def test_render_failure_reports_kubectl_stderr(tmp_path: Path) -> None:
    (tmp_path / "kustomization.yaml").write_text("resources: [missing.yaml]\n")
    with pytest.raises(validate.CheckError, match=r"(?s)kubectl kustomize .* failed:.*missing"):
        render(tmp_path)


def containers(obj: dict[str, Any]) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """Yield (pod spec, container) of a workload, RayService pods included."""
    spec = obj.get("spec") or {}
    pods = []
    if obj["kind"] == "CronJob":
        pods = [spec["jobTemplate"]["spec"]["template"]["spec"]]
    elif obj["kind"] in WORKLOADS:
        pods = [spec["template"]["spec"]]
    elif obj["kind"] == "RayService":
        cluster = spec["rayClusterConfig"]
        pods = [cluster["headGroupSpec"]["template"]["spec"]]
        pods += [group["template"]["spec"] for group in cluster["workerGroupSpecs"]]
    for pod in pods:
        for container in pod["containers"]:
            yield pod, container


def probe_problems(where: str, container: dict[str, Any]) -> list[str]:
    """Probes that cannot cause a restart storm: a startup probe holds the others back while
    the server starts, every probe has its own timeout, and liveness tolerates a minute."""
    problems = []
    probes = {k: container.get(f"{k}Probe") for k in ("startup", "readiness", "liveness")}
    for kind, probe in probes.items():
        if not probe:
            problems.append(f"{where}: no {kind} probe")
        elif probe.get("timeoutSeconds", 1) < 2:
            problems.append(f"{where}: {kind} probe times out in under 2 s")
    tolerated = {
        k: p.get("periodSeconds", 10) * p.get("failureThreshold", 3) for k, p in probes.items() if p
    }
    if tolerated.get("liveness", 60) < 60:
        problems.append(f"{where}: liveness restarts after {tolerated['liveness']} s")
    if tolerated.get("startup", 120) < 120:
        problems.append(f"{where}: startup allows only {tolerated['startup']} s")
    return problems


@pytest.mark.parametrize("target", [*OVERLAYS, *JOB_FILES])
def test_every_container_is_bounded_and_locked_down(target: str) -> None:
    problems = []
    for obj in render(TARGETS[target]):
        for pod, container in containers(obj):
            where = f"{obj['kind']}/{obj['metadata']['name']}/{container['name']}"
            limits = container.get("resources", {})
            if set(limits.get("requests", {})) < {"cpu", "memory"} or set(
                limits.get("limits", {})
            ) < {"cpu", "memory"}:
                problems.append(f"{where}: cpu/memory requests and limits")
            security = container.get("securityContext", {})
            if security.get("allowPrivilegeEscalation") is not False:
                problems.append(f"{where}: allowPrivilegeEscalation")
            if security.get("capabilities", {}).get("drop") != ["ALL"]:
                problems.append(f"{where}: capabilities not dropped")
            if not security.get("readOnlyRootFilesystem"):
                problems.append(f"{where}: writable root filesystem")
            if pod.get("securityContext", {}).get("runAsNonRoot") is not True:
                problems.append(f"{where}: may run as root")
            if obj["kind"] in ("Deployment", "StatefulSet"):
                problems += probe_problems(where, container)
    assert problems == []


@pytest.mark.parametrize("target", OVERLAYS)
def test_namespaces_deny_by_default_and_no_secret_is_committed(target: str) -> None:
    objects = render(TARGETS[target])
    namespaces = {o["metadata"]["name"] for o in objects if o["kind"] == "Namespace"}
    assert namespaces == {"lakeserve-platform", "lakeserve-serving", "lakeserve-jobs"}
    denied = {
        o["metadata"]["namespace"]
        for o in objects
        if o["kind"] == "NetworkPolicy"
        and o["spec"]["podSelector"] == {}
        and set(o["spec"]["policyTypes"]) == {"Ingress", "Egress"}
        and not o["spec"].get("ingress")
        and not o["spec"].get("egress")
    }
    assert denied == namespaces
    assert not [o for o in objects if o["kind"] == "Secret"]


@pytest.mark.parametrize("target", JOB_FILES)
def test_job_files_refer_to_what_the_overlays_create(target: str) -> None:
    # `kubectl create -f` runs these beside an applied overlay: names must match exactly.
    for overlay in OVERLAYS:
        present = {
            (o["kind"], o["metadata"].get("namespace"), o["metadata"]["name"])
            for o in render(TARGETS[overlay])
        }
        for obj in render(TARGETS[target]):
            present.add((obj["kind"], obj["metadata"].get("namespace"), obj["metadata"]["name"]))
        for obj in render(TARGETS[target]):
            namespace = obj["metadata"].get("namespace")
            for pod, container in containers(obj):
                wanted = {("ServiceAccount", namespace, pod["serviceAccountName"])}
                wanted |= {
                    ("ConfigMap", namespace, ref["configMapRef"]["name"])
                    for ref in container.get("envFrom", [])
                    if "configMapRef" in ref
                }
                wanted |= {
                    ("ConfigMap", namespace, v["configMap"]["name"])
                    for v in pod.get("volumes", [])
                    if "configMap" in v
                }
                assert wanted <= present, (overlay, wanted - present)


def test_prod_is_highly_available_and_autoscaled() -> None:
    objects = {(o["kind"], o["metadata"]["name"]): o for o in render(TARGETS["prod"])}
    assert objects[("Deployment", "mlflow")]["spec"]["replicas"] >= 2
    assert objects[("HorizontalPodAutoscaler", "chat")]["spec"]["minReplicas"] >= 2
    assert {name for kind, name in objects if kind == "PodDisruptionBudget"} >= {
        "mlflow", "chat", "ray-workers", "ray-head", "chroma",
    }  # fmt: skip
    cluster = objects[("RayService", "lakeserve")]["spec"]["rayClusterConfig"]
    redis = cluster["gcsFaultToleranceOptions"]
    assert redis["redisAddress"] and redis["redisPassword"]["valueFrom"]["secretKeyRef"]
    assert cluster["enableInTreeAutoscaling"] is True
    [workers] = cluster["workerGroupSpecs"]
    assert 2 <= workers["minReplicas"] < workers["maxReplicas"]


@pytest.mark.parametrize("target", OVERLAYS)
def test_autoscaled_deployments_leave_replicas_to_the_hpa(target: str) -> None:
    objects = render(TARGETS[target])
    scaled = {
        (o["metadata"]["namespace"], o["spec"]["scaleTargetRef"]["name"])
        for o in objects
        if o["kind"] == "HorizontalPodAutoscaler"
    }
    assert scaled, "no HPA rendered"
    for obj in objects:
        key = (obj["metadata"].get("namespace"), obj["metadata"]["name"])
        if obj["kind"] == "Deployment" and key in scaled:
            assert "replicas" not in obj["spec"], f"{key}: an apply would reset the HPA's count"


def cpus(quantity: str | int | float) -> float:
    text = str(quantity)
    return float(text[:-1]) / 1000 if text.endswith("m") else float(text)


def test_dev_fits_a_laptop() -> None:
    for obj in render(TARGETS["dev"]):
        for _, container in containers(obj):
            requests = container["resources"]["requests"]
            assert cpus(requests["cpu"]) <= 1, (obj["kind"], obj["metadata"]["name"], requests)


def assert_checkov_clean(*args: str) -> None:
    """Run checkov; fail listing every failed check, or when it checked nothing at all."""
    report = checkov(*args)
    assert report.failed == [], f"{len(report.failed)} failed checks:\n" + "\n".join(report.failed)
    assert report.passed > 0, f"checkov {' '.join(args)} checked nothing"


@pytest.mark.parametrize("target", [*OVERLAYS, *JOB_FILES])
def test_checkov_kubernetes_has_no_failures(target: str, tmp_path: Path) -> None:
    write_objects(render(TARGETS[target]), tmp_path)
    assert_checkov_clean("-d", str(tmp_path), "--framework", "kubernetes")


def test_checkov_kustomize_has_no_failures() -> None:
    assert_checkov_clean("-d", str(K8S), "--framework", "kustomize")


def test_checkov_dockerfile_has_no_failures() -> None:
    assert DOCKERFILE.is_file(), f"{DOCKERFILE} missing"
    assert_checkov_clean("-f", str(DOCKERFILE), "--framework", "dockerfile")


def test_hadolint_is_clean() -> None:
    assert DOCKERFILE.is_file(), f"{DOCKERFILE} missing"
    code, findings = validate.hadolint(DOCKERFILE)
    assert (code, findings) == (0, "")


def test_linters_report_what_they_should(tmp_path: Path) -> None:
    privileged = {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "bad", "namespace": "x"},
        "spec": {"containers": [{"name": "c", "image": "busybox:latest",
                                 "securityContext": {"privileged": True}}]},
    }  # fmt: skip
    (tmp_path / "k8s").mkdir()
    write_objects([privileged], tmp_path / "k8s")
    report = checkov("-d", str(tmp_path / "k8s"), "--framework", "kubernetes")
    assert any("CKV_K8S_16 " in line and "Pod.x.bad" in line for line in report.failed)
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text("FROM python:latest\nRUN apt-get update && apt-get install -y curl\n")
    report = checkov("-f", str(dockerfile), "--framework", "dockerfile")
    assert any(line.startswith("dockerfile: CKV_DOCKER_3 ") for line in report.failed)
    code, findings = validate.hadolint(dockerfile)
    assert code == 1 and "DL3007" in findings and "DL3008" in findings


def test_one_image_runs_every_role() -> None:
    # The Dockerfile's entrypoint is `lakeserve`; every role's command exists in the package.
    dockerfile = DOCKERFILE.read_text()
    assert 'ENTRYPOINT ["lakeserve"]' in dockerfile and "USER 10001" in dockerfile
    commands: set[str] = set()
    for target in ("dev", "train-job"):
        for obj in render(TARGETS[target]):
            for _, container in containers(obj):
                if "lakeserve" not in container["image"]:  # MinIO, Postgres (dev only)
                    continue
                if "command" in container:
                    commands.add(container["command"][0])
                elif container.get("args"):
                    commands.add(f"lakeserve {container['args'][0]}")
    assert commands >= {"lakeserve chat", "lakeserve train", "lakeserve rag", "mlflow", "chroma"}
    for command in commands:
        program, *sub = command.split()
        if program in ("mlflow", "chroma", "lakeserve"):
            args = [*sub, "--help"]
            done = subprocess.run([str(BIN / program), *args], capture_output=True, timeout=120)
            assert done.returncode == 0, (command, done.stderr[-500:])


def test_scripts_pass_shellcheck() -> None:
    shellcheck = ROOT / ".venv-tools" / "bin" / "shellcheck"
    if not shellcheck.exists():
        pytest.fail(f"{shellcheck} missing: `make tools` installs it")
    scripts = sorted((ROOT / "scripts").glob("*.sh"))
    assert {script.name for script in scripts} >= {"kind-deploy.sh", "image.sh"}
    done = subprocess.run([str(shellcheck), *map(str, scripts)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout


def test_probe_check_reports_restart_storm_settings() -> None:
    quick = {"httpGet": {"path": "/h", "port": 80}, "periodSeconds": 5, "failureThreshold": 3}
    assert probe_problems("c", {"readinessProbe": quick, "livenessProbe": quick}) == [
        "c: no startup probe",
        "c: readiness probe times out in under 2 s",
        "c: liveness probe times out in under 2 s",
        "c: liveness restarts after 15 s",
    ]


def test_every_overlay_has_an_argo_cd_application_and_each_points_at_one() -> None:
    paths = {}
    for name, path in GITOPS.items():
        [app] = render(path)
        assert app["kind"] == "Application" and app["metadata"]["namespace"] == "argocd"
        paths[name] = app["spec"]["source"]["path"]
    assert sorted(paths.values()) == [f"k8s/overlays/{o}" for o in OVERLAYS]
    assert all((ROOT / path / "kustomization.yaml").is_file() for path in paths.values())


@pytest.mark.parametrize("target", OVERLAYS)
def test_the_chat_page_is_reached_only_through_sign_in(target: str) -> None:
    objects = {(o["kind"], o["metadata"]["name"]): o for o in render(TARGETS[target])}
    ingress_backends = {
        rule["host"].split(".")[0]: path["backend"]["service"]["name"]
        for (kind, _), obj in objects.items() if kind == "Ingress"
        for rule in obj["spec"]["rules"] for path in rule["http"]["paths"]
    }  # fmt: skip
    assert ingress_backends == {"api": "lakeserve-serve-svc", "chat": "chat-signin"}
    [chat_route] = objects[("HTTPRoute", "lakeserve-chat")]["spec"]["rules"]
    assert [ref["name"] for ref in chat_route["backendRefs"]] == ["chat-signin"]
    assert "limit-rps" in str(objects[("Ingress", "chat")]["metadata"]["annotations"])
    # The chat pods admit browsers from the sign-in proxy only (and monitoring on metrics).
    policy = objects[("NetworkPolicy", "chat")]["spec"]["ingress"]
    page = [rule for rule in policy if {"protocol": "TCP", "port": 8501} in rule["ports"]]
    assert [rule["from"] for rule in page] == [
        [{"podSelector": {"matchLabels": {"app.kubernetes.io/name": "chat-signin"}}}]
    ]
    signin = objects[("Deployment", "chat-signin")]["spec"]
    [proxy] = signin["template"]["spec"]["containers"]
    assert "--provider=oidc" in proxy["args"]
    assert {"secretRef": {"name": "chat-oidc"}} in proxy["envFrom"]
    # kind has no OIDC provider: the proxy is scaled to 0 there, the page is port-forwarded.
    assert signin["replicas"] == (0 if target == "dev" else 2)


@pytest.mark.parametrize("target", OVERLAYS)
def test_the_chat_page_has_its_own_api_key(target: str) -> None:
    objects = {(o["kind"], o["metadata"]["name"]): o for o in render(TARGETS[target])}

    def env(container: dict[str, Any]) -> dict[str, Any]:
        return {e["name"]: e.get("valueFrom", {}).get("secretKeyRef") or e.get("value")
                for e in container.get("env", [])}  # fmt: skip

    [chat] = objects[("Deployment", "chat")]["spec"]["template"]["spec"]["containers"]
    assert env(chat)["LAKESERVE_API_KEY"]["name"] == "lakeserve-chat-key"
    cluster = objects[("RayService", "lakeserve")]["spec"]["rayClusterConfig"]
    groups = [cluster["headGroupSpec"], *cluster["workerGroupSpecs"]]
    for group in groups:
        for container in group["template"]["spec"]["containers"]:
            values = env(container)
            names = list(values)
            assert values["CLIENT_API_KEYS"]["name"] == "lakeserve-api-keys"
            assert values["CHAT_API_KEY"]["name"] == "lakeserve-chat-key"
            assert values["LAKESERVE_API_KEYS"] == "$(CLIENT_API_KEYS),$(CHAT_API_KEY)"
            # Kubernetes expands $(VAR) only from variables defined before it.
            assert names.index("LAKESERVE_API_KEYS") > max(
                names.index("CLIENT_API_KEYS"), names.index("CHAT_API_KEY")
            )


def secrets_used(pod: dict[str, Any], container: dict[str, Any]) -> set[str]:
    """Every Secret a container reads: envFrom, env and volumes."""
    names = {s["secretRef"]["name"] for s in container.get("envFrom", []) if "secretRef" in s}
    names |= {
        e["valueFrom"]["secretKeyRef"]["name"]
        for e in container.get("env", [])
        if "secretKeyRef" in e.get("valueFrom", {})
    }
    mounted = {
        v["name"]: v["secret"]["secretName"] for v in pod.get("volumes", []) if "secret" in v
    }
    return names | {
        mounted[m["name"]] for m in container.get("volumeMounts", []) if m["name"] in mounted
    }


@pytest.mark.parametrize("target", [*OVERLAYS, *JOB_FILES])
def test_each_role_has_its_own_registry_identity(target: str) -> None:
    registry_secrets = {"mlflow-auth", "mlflow-users", "mlflow-trainer", "mlflow-serving"}
    allowed = {
        "lakeserve-serving": {"mlflow-serving"},
        "lakeserve-jobs": {"mlflow-trainer"},
        "lakeserve-platform": {"mlflow-auth", "mlflow-users"},
    }
    seen: dict[str, set[str]] = {}
    for obj in render(TARGETS[target]):
        namespace = obj["metadata"].get("namespace", "")
        for pod, container in containers(obj):
            used = secrets_used(pod, container) & registry_secrets
            where = f"{obj['kind']}/{obj['metadata']['name']}/{container['name']}"
            assert used <= allowed.get(namespace, set()), (where, used)
            seen.setdefault(where, used)
            args = " ".join(container.get("args", []))
            if namespace == "lakeserve-jobs" and args.split()[:1] in (["train"], ["rag"]):
                assert used == {"mlflow-trainer"}, where  # a Job that logs to MLflow
            if obj["kind"] == "RayService":
                assert used == {"mlflow-serving"}, where
    if target in JOB_FILES:
        return
    objects = {(o["kind"], o["metadata"]["name"]): o for o in render(TARGETS[target])}
    mlflow = objects[("Deployment", "mlflow")]["spec"]["template"]
    server = mlflow["spec"]["containers"][0]
    assert "--app-name=basic-auth" in server["args"]
    assert seen["Deployment/mlflow/mlflow"] == {"mlflow-auth"}
    [users] = objects[("Job", "mlflow-users")]["spec"]["template"]["spec"]["containers"]
    assert users["args"] == ["registry", "users", "trainer", "serving"]
    # Prometheus scrapes the metrics sidecar's port, and monitoring reaches only that port.
    sidecar_ports = {p["containerPort"] for p in mlflow["spec"]["containers"][1]["ports"]}
    assert int(mlflow["metadata"]["annotations"]["prometheus.io/port"]) in sidecar_ports
    policy = objects[("NetworkPolicy", "mlflow")]["spec"]
    for rule in policy["ingress"]:
        ports = {p["port"] for p in rule["ports"]}
        monitoring = any(
            peer.get("namespaceSelector", {}).get("matchLabels", {}).get(
                "kubernetes.io/metadata.name") == "monitoring"
            for peer in rule["from"]
        )  # fmt: skip
        assert ports == (sidecar_ports if monitoring else {5000}), rule


@pytest.mark.parametrize("target", OVERLAYS)
def test_overlays_start_pinned_images_from_the_node(target: str) -> None:
    policies, images = set(), set()
    for obj in render(TARGETS[target]):
        for _, container in containers(obj):
            policies.add(container["imagePullPolicy"])
            images.add(container["image"])
        if obj["kind"] == "RayService":
            policies.add(obj["spec"]["rayClusterConfig"]["autoscalerOptions"]["imagePullPolicy"])
    assert policies == {"IfNotPresent"}, target
    if target == "prod":  # a moved tag can never change what runs: every image by digest
        assert all("@sha256:" in image for image in images), images
    base = {c["imagePullPolicy"] for o in render(TARGETS["base"]) for _, c in containers(o)}
    assert base == {"Always"}  # base refers to release tags, which a registry may move


def test_dev_gives_each_role_a_minio_user_with_its_policy(tmp_path: Path) -> None:
    objects = {(o["kind"], o["metadata"]["name"]): o for o in render(TARGETS["dev"])}
    admin = {"minio-root", "minio-users"}
    for obj in objects.values():
        for pod, container in containers(obj):
            used = secrets_used(pod, container) & admin
            where = (obj["kind"], obj["metadata"]["name"])
            # MinIO's root user and the roles' secret keys reach MinIO and its set-up Job only.
            if where == ("StatefulSet", "minio"):
                assert used == {"minio-root"}
            elif where == ("Job", "minio-setup"):
                assert used == admin
            else:
                assert not used, where
    policies = sorted((K8S / "overlays" / "dev" / "s3-policies").glob("*.json"))
    [config] = [o for o in objects.values() if o["metadata"]["name"].startswith("s3-policies")]
    assert config["data"] == {p.name: p.read_text() for p in policies}
    job = objects[("Job", "minio-setup")]["spec"]["template"]["spec"]
    [container] = job["containers"]
    script = container["args"][0]
    roles = {line.split()[1] for line in script.splitlines() if line.strip().startswith("role ")}
    assert roles == {p.stem for p in policies} == {"serving", "jobs", "mlflow"}
    [volume] = [v for v in job["volumes"] if "configMap" in v]
    assert volume["configMap"]["name"] == config["metadata"]["name"]
    # The script is shell run by /bin/sh in the MinIO image: shellcheck it as such.
    assert container["command"][:2] == ["/bin/sh", "-ec"]
    (tmp_path / "setup.sh").write_text("#!/bin/sh\nset -e\n" + script)
    shellcheck = ROOT / ".venv-tools" / "bin" / "shellcheck"
    done = subprocess.run(
        [str(shellcheck), "-s", "sh", str(tmp_path / "setup.sh")], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout


def test_podmonitors_scrape_every_annotated_pod_and_keep_lakeserve_names() -> None:
    import re

    objects = render(TARGETS["prod"])
    monitors = [o for o in objects if o["kind"] == "PodMonitor"]
    scrape = yaml.safe_load(
        next(o for o in objects if o["metadata"]["name"] == "lakeserve-prometheus-scrape")["data"][
            "scrape-configs.yaml"
        ]
    )
    # The pods' job (the other, lakeserve-pushgateway, scrapes a Service outside Lakeserve).
    [plain] = [job for job in scrape if job["job_name"] == "lakeserve-pods"]
    pods = []  # (namespace, labels, port name of the prometheus.io/port annotation)
    for obj in objects:
        for template in pod_templates(obj):
            annotations = template["metadata"].get("annotations", {})
            if annotations.get("prometheus.io/scrape") != "true":
                continue
            ports = {
                p["containerPort"]: p.get("name")
                for c in template["spec"]["containers"]
                for p in c.get("ports", [])
            }
            port = ports[int(annotations["prometheus.io/port"])]
            pods.append((obj["metadata"]["namespace"], template["metadata"]["labels"], port))
    assert len(pods) >= 4  # Ray head, Ray workers, chat, MLflow
    for namespace, labels, port in pods:
        matching = [
            m
            for m in monitors
            if m["metadata"]["namespace"] == namespace
            and m["spec"]["selector"]["matchLabels"].items() <= labels.items()
        ]
        assert [e["port"] for m in matching for e in m["spec"]["podMetricsEndpoints"]] == [port]
    # The Ray pods' replica metrics: one rename, in both configs, anchored as Prometheus does.
    [ray] = [m for m in monitors if m["metadata"]["name"] == "lakeserve-ray"]
    [rename] = ray["spec"]["podMetricsEndpoints"][0]["metricRelabelings"]
    [plain_rename] = plain["metric_relabel_configs"]
    assert (rename["regex"], rename["replacement"]) == (
        plain_rename["regex"], plain_rename["replacement"]
    )  # fmt: skip

    def stored(name: str) -> str:
        match = re.fullmatch(rename["regex"], name)
        return match.expand(rename["replacement"].replace("$1", r"\1")) if match else name

    assert stored("ray_lakeserve_model_requests_total") == "lakeserve_model_requests_total"
    assert stored("ray_serve_num_http_requests_total") == "ray_serve_num_http_requests_total"


def pod_templates(obj: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The pod templates of a workload or a RayService (head and worker groups)."""
    spec = obj.get("spec", {})
    if obj["kind"] == "RayService":
        cluster = spec["rayClusterConfig"]
        yield cluster["headGroupSpec"]["template"]
        for group in cluster.get("workerGroupSpecs", []):
            yield group["template"]
    elif obj["kind"] == "CronJob":
        yield spec["jobTemplate"]["spec"]["template"]
    elif "template" in spec:
        yield spec["template"]
