"""deploy/: what cannot run here (a container runtime, a cluster) is checked as far as it can be.

nginx -t on the shipped site config, the Kubernetes manifests against the API's schemas
(kubernetes-validate, strict), the Dockerfile through hadolint, and the properties the
runbook relies on read from the files themselves.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from django.conf import settings

from testing.nginx import nginx_binary, nginx_test, render_site
from testing.require import require_service

DEPLOY = Path(settings.BASE_DIR) / "deploy"
MANIFESTS = sorted(path for path in (DEPLOY / "k8s").glob("*.yaml") if path.name != "kustomization.yaml")
BIN = Path(sys.executable).parent


def _documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def _resources() -> dict[tuple[str, str], dict[str, Any]]:
    return {(doc["kind"], doc["metadata"]["name"]): doc for path in MANIFESTS for doc in _documents(path)}


def _pod_spec(kind: str, name: str) -> dict[str, Any]:
    return _resources()[(kind, name)]["spec"]["template"]["spec"]


def _tool(name: str) -> str:
    found = shutil.which(name, path=str(BIN)) or shutil.which(name)
    assert found, f"{name} is installed with requirements-dev.txt"
    return found


# --- nginx -------------------------------------------------------------------


def test_nginx_accepts_the_shipped_site_config() -> None:
    require_service(nginx_binary() is not None, "nginx")
    # nginx resolves upstream names while checking, so the compose names become loopback addresses.
    result = nginx_test(render_site(listen="127.0.0.1:8080", upstreams=["127.0.0.1:8001", "127.0.0.1:8002"]))
    assert result.returncode == 0, result.stderr
    assert "test is successful" in result.stderr


def test_nginx_t_refuses_a_broken_site_config() -> None:
    require_service(nginx_binary() is not None, "nginx")
    site = render_site(listen="127.0.0.1:8080", upstreams=["127.0.0.1:8001"])
    broken = site.replace("proxy_buffering", "proxy_bufering")
    assert nginx_test(broken).returncode != 0


def test_the_gateway_location_streams_unbuffered_and_passes_the_request_id() -> None:
    site = render_site(listen="80", upstreams=["web-1:8000"])
    gateway_location = re.search(r"location /v1/ \{(.*?)\n    \}", site, re.S)
    assert gateway_location is not None
    for directive in ("proxy_buffering off;", "proxy_request_buffering on;", "gzip off;"):
        assert directive in gateway_location.group(1)
    assert "proxy_set_header X-Request-Id $pendra_request_id;" in site


# --- Kubernetes ----------------------------------------------------------------


@pytest.mark.parametrize("manifest", MANIFESTS, ids=lambda path: path.name)
def test_kubernetes_manifest_validates_against_the_api_schema(manifest: Path) -> None:
    result = subprocess.run(
        [_tool("kubernetes-validate"), "--strict", "--quiet", str(manifest)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_kubernetes_validate_refuses_a_manifest_with_a_misspelt_field(tmp_path: Path) -> None:
    broken = tmp_path / "web.yaml"
    broken.write_text((DEPLOY / "k8s" / "web.yaml").read_text().replace("containerPort:", "containerPorts:"))
    result = subprocess.run(
        [_tool("kubernetes-validate"), "--strict", "--quiet", str(broken)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode != 0


def test_kustomization_lists_every_manifest() -> None:
    listed = yaml.safe_load((DEPLOY / "k8s" / "kustomization.yaml").read_text())["resources"]
    assert sorted(listed) == [path.name for path in MANIFESTS]


def test_web_pods_are_probed_on_readyz_and_healthz_with_an_allowed_host() -> None:
    [web] = _pod_spec("Deployment", "pendra-web")["containers"]
    config = _resources()[("ConfigMap", "pendra-config")]["data"]
    assert web["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert web["livenessProbe"]["httpGet"]["path"] == "/healthz"
    for probe in (web["readinessProbe"], web["livenessProbe"]):
        [host] = [header["value"] for header in probe["httpGet"]["httpHeaders"] if header["name"] == "Host"]
        assert host in config["ALLOWED_HOSTS"].split(",")


def test_web_pods_get_longer_to_stop_than_the_longest_stream() -> None:
    longest = max(settings.PENDRA_IMAGES_TIMEOUT, settings.PENDRA_CHAT_MAX_SECONDS, settings.PENDRA_AUDIO_TIMEOUT)
    assert _pod_spec("Deployment", "pendra-web")["terminationGracePeriodSeconds"] > longest


def test_a_disruption_budget_keeps_a_web_pod_up_during_drains() -> None:
    budget = _resources()[("PodDisruptionBudget", "pendra-web")]["spec"]
    web = _resources()[("Deployment", "pendra-web")]["spec"]
    assert budget["minAvailable"] >= 1
    assert budget["selector"]["matchLabels"] == web["selector"]["matchLabels"]
    assert web["replicas"] > budget["minAvailable"]


def test_exactly_one_beat_and_it_is_replaced_not_doubled() -> None:
    beat = _resources()[("Deployment", "pendra-celery-beat")]["spec"]
    assert beat["replicas"] == 1
    assert beat["strategy"]["type"] == "Recreate"


def test_record_writers_run_beside_the_web_pods_that_hand_records_to_redis() -> None:
    [writer] = _pod_spec("Deployment", "pendra-record-writer")["containers"]
    assert {source.get("secretRef", {}).get("name") for source in writer["envFrom"]} >= {"pendra-secrets"}  # REDIS_URL
    assert writer["command"] == ["python", "manage.py", "record_writer"]
    assert _resources()[("Deployment", "pendra-record-writer")]["spec"]["replicas"] >= 1


def test_every_pod_runs_as_a_non_root_user() -> None:
    pods = [doc for doc in _resources().values() if doc["kind"] in {"Deployment", "Job"}]
    assert pods
    for pod in pods:
        context = pod["spec"]["template"]["spec"]["securityContext"]
        assert context["runAsNonRoot"] is True
        assert context["runAsUser"] != 0


# --- Compose -------------------------------------------------------------------


def test_compose_runs_two_web_nodes_behind_nginx_two_workers_and_one_beat() -> None:
    services = yaml.safe_load((DEPLOY / "compose.yaml").read_text())["services"]
    commands = {name: " ".join(service.get("command", [])) for name, service in services.items()}
    web = [name for name, command in commands.items() if "pendra_console.serving" in command]
    workers = [name for name, command in commands.items() if "celery -A pendra_console worker" in command]
    beats = [name for name, command in commands.items() if "celery -A pendra_console beat" in command]
    assert (len(web), len(workers), len(beats)) == (2, 2, 1)
    assert {"postgres", "redis", "nginx"} <= services.keys()
    upstreams = services["nginx"]["environment"]["PENDRA_NGINX_UPSTREAMS"]
    assert all(f"server {name}:8000;" in upstreams for name in web)


def test_compose_runs_a_record_writer_for_the_records_handed_to_redis() -> None:
    services = yaml.safe_load((DEPLOY / "compose.yaml").read_text())["services"]
    writers = [name for name, service in services.items() if service.get("command", [])[-1:] == ["record_writer"]]
    assert writers
    assert all(services[name]["environment"]["REDIS_URL"] for name in writers)


# --- The image -------------------------------------------------------------------


def test_hadolint_finds_nothing_in_the_dockerfile() -> None:
    result = subprocess.run(
        [_tool("hadolint"), "--failure-threshold", "info", str(DEPLOY / "Dockerfile")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def _runtime_stage() -> list[str]:
    text = re.sub(r"\\\n\s*", " ", (DEPLOY / "Dockerfile").read_text())
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    end = next(index for index, line in enumerate(lines) if line.startswith("FROM runtime AS test"))
    return lines[:end]


def test_the_image_runs_as_a_non_root_user() -> None:
    users = [line.split()[1] for line in _runtime_stage() if line.startswith("USER ")]
    assert users, "the runtime stage sets a USER"
    assert users[-1].split(":")[0] not in {"0", "root"}


def test_the_image_installs_the_pinned_requirements_and_collects_static_files_at_build() -> None:
    stage = _runtime_stage()
    assert any(line.startswith("COPY requirements.txt requirements-dev.txt") for line in stage)
    assert any("pip install" in line and "-r requirements.txt" in line for line in stage)
    assert any(line.startswith("RUN") and "manage.py collectstatic --noinput" in line for line in stage)


def test_the_image_reads_no_env_file() -> None:
    assert any(line.startswith("ENV") and 'PENDRA_ENV_FILE=""' in line for line in _runtime_stage())
    ignored = (Path(settings.BASE_DIR) / ".dockerignore").read_text().splitlines()
    assert ".env" in ignored
