"""Deployment files, offline (RELIABILITY.md K1): Kubernetes manifests, the compose file and the Dockerfile.

- every YAML under deploy/k8s parses; each kustomization renders (`kubectl kustomize` when kubectl is
  installed, else our small renderer of the few features the base uses: resources, namespace, labels,
  images) and every rendered document passes kubernetes-validate's strict schemas (1.30 and the newest);
- deploy/compose.yaml passes the compose-spec JSON schema that check-jsonschema vendors;
- what matters beyond the schemas: non-root, read-only, capability-less containers with resource limits;
  probes on /healthz and /readyz; disruption budgets; settings that exist; no secret committed.
"""

from __future__ import annotations

import copy
import functools
import importlib.resources
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from pydantic import ValidationError

from shared.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
COMPOSE = DEPLOY / "compose.yaml"
DOCKERFILE = DEPLOY / "Dockerfile"

SERVICES = ("check-api", "list-sync", "feedback")
K8S_VERSIONS = ("1.30", kubernetes_validate.latest_version())
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "PersistentVolume", "StorageClass"}
POD_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "Job"}
PLACEHOLDER = "CHANGE-ME"
SETTING_NAMES = {"ONECHECK_" + name.upper() for name in Settings.model_fields}

Doc = dict[str, Any]


# ---------------------------------------------------------------------------------------------------- render


def _load_yaml_docs(path: Path) -> list[Doc]:
    return [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc is not None]


def _kustomization_dirs() -> list[Path]:
    return sorted(path.parent for path in K8S.rglob("kustomization.yaml"))


def _set_image(container: Doc, images: list[Doc]) -> None:
    name, _, _tag = str(container["image"]).partition(":")
    for image in images:
        if image["name"] == name:
            container["image"] = f"{image.get('newName', name)}:{image['newTag']}"


def _render_ourselves(directory: Path) -> list[Doc]:
    """The subset of kustomize the base uses; anything else fails here rather than rendering wrongly."""
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text(encoding="utf-8"))
    unsupported = set(kustomization) - {"apiVersion", "kind", "namespace", "labels", "resources", "images"}
    assert not unsupported, f"our renderer does not support {sorted(unsupported)}; install kubectl"
    docs: list[Doc] = []
    for entry in kustomization.get("resources", []):
        path = directory / entry
        docs.extend(_render_ourselves(path) if path.is_dir() else _load_yaml_docs(path))
    for doc in docs:
        meta = doc.setdefault("metadata", {})
        if "namespace" in kustomization and doc["kind"] not in CLUSTER_SCOPED:
            meta["namespace"] = kustomization["namespace"]
        for label in kustomization.get("labels", []):
            assert not label.get("includeSelectors")
            assert not label.get("includeTemplates")
            meta.setdefault("labels", {}).update(label["pairs"])
        if doc["kind"] in POD_KINDS:
            for container in _containers(doc):
                _set_image(container, kustomization.get("images", []))
    return docs


def _render_with_kubectl(directory: Path) -> list[Doc]:
    kubectl = shutil.which("kubectl")
    assert kubectl is not None
    out = subprocess.run(
        [kubectl, "kustomize", str(directory)], check=True, capture_output=True, text=True, timeout=60
    ).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc is not None]


@functools.cache
def _rendered(directory: Path) -> tuple[Doc, ...]:
    """What `kubectl apply -k` would send: kubectl's rendering when available, else ours."""
    docs = _render_with_kubectl(directory) if shutil.which("kubectl") else _render_ourselves(directory)
    return tuple(docs)


def _all_rendered() -> list[Doc]:
    return [copy.deepcopy(doc) for directory in _kustomization_dirs() for doc in _rendered(directory)]


def _doc_id(doc: Doc) -> str:
    return f"{doc['kind']}/{doc['metadata']['name']}"


def _by_kind(kind: str) -> list[Doc]:
    return [doc for doc in _all_rendered() if doc["kind"] == kind]


def _pod_spec(doc: Doc) -> Doc:
    spec: Doc = doc["spec"]["template"]["spec"]
    return spec


def _containers(doc: Doc) -> list[Doc]:
    spec = _pod_spec(doc)
    return [*spec.get("initContainers", []), *spec["containers"]]


def _workloads() -> list[Doc]:
    return [doc for doc in _all_rendered() if doc["kind"] in POD_KINDS]


def _selects(selector: Doc, labels: Doc) -> bool:
    return all(labels.get(key) == value for key, value in selector.items())


# ---------------------------------------------------------------------------------------------------- k8s


@pytest.mark.parametrize("path", sorted(K8S.rglob("*.yaml")), ids=lambda p: str(p.relative_to(K8S)))
def test_every_k8s_yaml_parses(path: Path) -> None:
    docs = _load_yaml_docs(path)
    assert docs, f"{path} is empty"
    assert all(isinstance(doc, dict) for doc in docs)


def test_there_is_a_kustomization_with_everything() -> None:
    assert _kustomization_dirs() == [K8S / "base"]
    kinds = {(doc["kind"], doc["metadata"]["name"]) for doc in _all_rendered()}
    expected = {("Namespace", "onecheck"), ("ConfigMap", "onecheck-config"), ("Secret", "onecheck-secrets")}
    expected |= {("Job", "onecheck-migrate")}
    expected |= {(kind, s) for s in SERVICES for kind in ("Deployment", "Service", "PodDisruptionBudget")}
    assert kinds == expected


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("doc", _all_rendered(), ids=_doc_id)
def test_rendered_doc_is_valid_under_strict_schemas(doc: Doc, version: str) -> None:
    try:
        kubernetes_validate.validate(doc, version, strict=True)
    except kubernetes_validate.ValidationError as exc:
        pytest.fail(f"{_doc_id(doc)} invalid for Kubernetes {version}: {exc.message} at {list(exc.path)}")


def test_strict_validation_catches_an_unknown_field() -> None:
    """The strict schemas really are strict: a misspelt field is an error, not silently dropped."""
    deployment = _by_kind("Deployment")[0]
    _containers(deployment)[0]["readinesProbe"] = {"httpGet": {"path": "/readyz", "port": "http"}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, K8S_VERSIONS[0], strict=True)


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl not installed")
@pytest.mark.parametrize("directory", _kustomization_dirs(), ids=lambda p: str(p.relative_to(K8S)))
def test_our_renderer_agrees_with_kubectl_kustomize(directory: Path) -> None:
    """Where kubectl is missing the tests fall back on our renderer; it must render what kubectl does."""
    ours = sorted(_render_ourselves(directory), key=_doc_id)
    theirs = sorted(_render_with_kubectl(directory), key=_doc_id)
    assert ours == theirs


def test_everything_is_in_the_onecheck_namespace() -> None:
    for doc in _all_rendered():
        if doc["kind"] != "Namespace":
            assert doc["metadata"].get("namespace") == "onecheck", _doc_id(doc)
    (namespace,) = _by_kind("Namespace")
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


@pytest.mark.parametrize("doc", _workloads(), ids=_doc_id)
def test_every_container_is_hardened_and_bounded(doc: Doc) -> None:
    pod = _pod_spec(doc)
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 10001
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod.get("automountServiceAccountToken") is False
    volumes = {volume["name"]: volume for volume in pod.get("volumes", [])}
    for container in _containers(doc):
        where = f"{_doc_id(doc)} container {container['name']}"
        context = container["securityContext"]
        assert context["runAsNonRoot"] is True, where
        assert context["runAsUser"] == 10001, where
        assert context["readOnlyRootFilesystem"] is True, where
        assert context["allowPrivilegeEscalation"] is False, where
        assert context["capabilities"] == {"drop": ["ALL"]}, where
        assert "add" not in context["capabilities"], where
        assert context["seccompProfile"] == {"type": "RuntimeDefault"}, where
        assert not context.get("privileged", False), where
        resources = container["resources"]
        for bound in ("requests", "limits"):
            assert {"cpu", "memory"} <= set(resources[bound]), f"{where}: {bound}"
        # A read-only root needs a writable /tmp, and it must not be the node's disk without a bound.
        (tmp,) = [m for m in container["volumeMounts"] if m["mountPath"] == "/tmp"]
        assert "sizeLimit" in volumes[tmp["name"]]["emptyDir"], where
        assert str(container["image"]).startswith("onecheck:"), where
        assert container["envFrom"] == [
            {"configMapRef": {"name": "onecheck-config"}},
            {"secretRef": {"name": "onecheck-secrets"}},
        ], where


@pytest.mark.parametrize("name", SERVICES)
def test_every_service_deployment_probes_serves_and_survives_disruption(name: str) -> None:
    (deployment,) = [d for d in _by_kind("Deployment") if d["metadata"]["name"] == name]
    assert deployment["spec"]["replicas"] >= 2
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    (container,) = _pod_spec(deployment)["containers"]
    assert container["args"] == ["serve", name, "--host", "0.0.0.0", "--port", "8000"]
    assert container["ports"] == [{"name": "http", "containerPort": 8000, "protocol": "TCP"}]
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["startupProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}

    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert _selects(deployment["spec"]["selector"]["matchLabels"], pod_labels)
    (service,) = [s for s in _by_kind("Service") if s["metadata"]["name"] == name]
    assert _selects(service["spec"]["selector"], pod_labels)
    assert service["spec"]["ports"][0]["targetPort"] == "http"
    (budget,) = [p for p in _by_kind("PodDisruptionBudget") if p["metadata"]["name"] == name]
    assert _selects(budget["spec"]["selector"]["matchLabels"], pod_labels)
    assert budget["spec"]["minAvailable"] < deployment["spec"]["replicas"]


def test_the_migration_job_upgrades_the_schema_once() -> None:
    (job,) = _by_kind("Job")
    (container,) = _pod_spec(job)["containers"]
    assert container["args"] == ["db", "upgrade"]
    assert _pod_spec(job)["restartPolicy"] == "Never"
    assert job["spec"]["backoffLimit"] >= 1
    assert "activeDeadlineSeconds" in job["spec"]


def test_configmap_holds_only_known_non_secret_settings() -> None:
    (config,) = _by_kind("ConfigMap")
    keys = set(config["data"])
    assert keys <= SETTING_NAMES, f"unknown settings: {sorted(keys - SETTING_NAMES)}"
    assert config["data"]["ONECHECK_ENVIRONMENT"] == "production"
    for secret in ("ONECHECK_DATABASE_URL", "ONECHECK_PII_HMAC_KEY", "ONECHECK_FEEDBACK_UPSTREAM_TOKEN"):
        assert secret not in keys
    # Whatever is configured must be accepted by Settings (types, bounds), with a real-looking secret.
    Settings(
        **_settings_kwargs(config["data"]),
        database_url="postgresql+asyncpg://x@db/onecheck",
        pii_hmac_key="k" * 40,
    )


def _settings_kwargs(env: dict[str, str]) -> dict[str, Any]:
    return {key.removeprefix("ONECHECK_").lower(): value for key, value in env.items()}


def test_the_secret_is_a_template_of_placeholders_production_refuses() -> None:
    (secret,) = _by_kind("Secret")
    assert "data" not in secret, "base64 `data` could hide a real value: use stringData placeholders"
    values = secret["stringData"]
    assert set(values) <= SETTING_NAMES
    assert set(values) >= {"ONECHECK_DATABASE_URL", "ONECHECK_PII_HMAC_KEY"}
    for key, value in values.items():
        assert PLACEHOLDER in value, f"{key} is not a placeholder"
    # Applied unchanged, the services refuse to start instead of running with a known key.
    (config,) = _by_kind("ConfigMap")
    with pytest.raises(ValidationError, match="ONECHECK_PII_HMAC_KEY"):
        Settings(**_settings_kwargs({**config["data"], **values}))


SECRET_NAME = re.compile(r"PII_HMAC_KEY|PASSWORD|TOKEN|SECRET")
REQUIRED_FROM_ENV = re.compile(r"\$\{[A-Z_][A-Z0-9_]*:\?[^}]+\}")


def test_no_secret_value_is_committed_under_deploy() -> None:
    # Kubernetes: secrets reach containers only through the Secret (envFrom), never as literal env values.
    for doc in _workloads():
        for container in _containers(doc):
            for env in container.get("env", []):
                assert not (SECRET_NAME.search(env["name"]) and "value" in env), _doc_id(doc)
    # Compose: every secret comes from the operator's environment, and must be set.
    for name, service in _compose()["services"].items():
        for key, value in service.get("environment", {}).items():
            if SECRET_NAME.search(key):
                assert REQUIRED_FROM_ENV.fullmatch(value), f"{name}: {key}"
            if key == "ONECHECK_DATABASE_URL":
                password = re.search(r"://[^:@/]+:(.*)@", value)
                assert password is not None, f"{name}: {key} has no password"
                assert REQUIRED_FROM_ENV.fullmatch(password.group(1)), f"{name}: {key}"


# ---------------------------------------------------------------------------------------------------- compose


def _compose() -> Doc:
    doc: Doc = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    return doc


def _compose_schema() -> Doc:
    schema_file = importlib.resources.files("check_jsonschema") / "builtin_schemas/vendor/compose-spec.json"
    schema: Doc = json.loads(schema_file.read_text(encoding="utf-8"))
    return schema


def test_compose_file_is_valid_against_the_compose_spec() -> None:
    schema = _compose_schema()
    validator_class = jsonschema.validators.validator_for(schema)
    validator_class.check_schema(schema)
    errors = sorted(validator_class(schema).iter_errors(_compose()), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors)


def test_compose_schema_is_not_vacuous() -> None:
    schema = _compose_schema()
    broken = _compose()
    broken["services"]["check-api"]["helthcheck"] = broken["services"]["check-api"].pop("healthcheck")
    assert list(jsonschema.validators.validator_for(schema)(schema).iter_errors(broken))


def test_compose_interpolations_are_well_formed() -> None:
    lines = COMPOSE.read_text(encoding="utf-8").splitlines()
    text = "\n".join(line for line in lines if not line.lstrip().startswith("#"))
    for match in re.finditer(r"\$\{([^}]*)\}", text):
        assert re.fullmatch(r"[A-Z_][A-Z0-9_]*(:?[-?+].*)?", match.group(1)), match.group(0)
    assert "$" not in re.sub(r"\$\{[^}]*\}", "", text)


def test_compose_runs_postgres_migration_and_three_services() -> None:
    services = _compose()["services"]
    assert set(services) == {"postgres", "migrate", *SERVICES}
    postgres = services["postgres"]
    assert postgres["image"] == "postgres:15"
    assert any(v.endswith(":/var/lib/postgresql/data") for v in postgres["volumes"])
    assert "pg_isready" in " ".join(postgres["healthcheck"]["test"])
    assert "ports" not in postgres
    assert services["migrate"]["command"] == ["db", "upgrade"]
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"

    for port, name in enumerate(SERVICES, start=8001):
        service = services[name]
        assert service["command"] == ["serve", name, "--host", "0.0.0.0", "--port", "8000"]
        assert service["ports"] == [f"{port}:8000"]
        assert service["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
        assert "/readyz" in " ".join(service["healthcheck"]["test"])

    for name in ("migrate", *SERVICES):
        service = services[name]
        assert service["user"] == "10001:10001"
        assert service["read_only"] is True
        assert service["cap_drop"] == ["ALL"]
        assert "no-new-privileges:true" in service["security_opt"]
        env = service["environment"]
        assert set(env) <= SETTING_NAMES
        assert env["ONECHECK_ENVIRONMENT"] == "production"
        assert env["ONECHECK_DATABASE_URL"].startswith("postgresql+asyncpg://")
        assert env["ONECHECK_PII_HMAC_KEY"].startswith("${ONECHECK_PII_HMAC_KEY:?")


# ---------------------------------------------------------------------------------------------------- image


def test_dockerfile_builds_a_non_root_image_of_the_package() -> None:
    text = DOCKERFILE.read_text(encoding="utf-8")
    assert re.search(r"^ARG PYTHON_IMAGE=python:3\.11-slim$", text, re.M)
    assert len(re.findall(r"^FROM ", text, re.M)) >= 2, "multi-stage"
    assert re.search(r"pip install \.(\s|$)", text)
    assert "[dev]" not in text
    assert re.search(r"^USER 10001:10001$", text, re.M)
    assert 'ENTRYPOINT ["onecheck"]' in text
    assert 'CMD ["serve", "--host", "0.0.0.0"]' in text
    assert re.search(r"^HEALTHCHECK .*\n?.*/healthz", text, re.M)
    assert "PYTHONDONTWRITEBYTECODE=1" in text
    assert "PYTHONUNBUFFERED=1" in text


def test_dockerignore_keeps_the_context_to_the_package() -> None:
    lines = (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
    assert "*" in lines, "ignore everything by default"
    allowed = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    assert allowed == {"pyproject.toml", "README.md", "shared", "services"}
    for copied in re.findall(r"^COPY (?!--from)(.+) \S+$", DOCKERFILE.read_text(encoding="utf-8"), re.M):
        assert set(copied.split()) <= allowed


# ---------------------------------------------------------------------------------------------------- docs


def test_operations_guide_lists_every_setting() -> None:
    guide = (ROOT / "docs" / "operations.md").read_text(encoding="utf-8")
    documented = set(re.findall(r"^\| `(ONECHECK_[A-Z0-9_]+)`", guide, re.M))
    assert documented == SETTING_NAMES
