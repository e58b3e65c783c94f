"""Static checks of the container files: Dockerfile, compose files, nginx.conf, smoke test.

Offline and fast: nothing is built or started here (docker/smoke-test.sh does that).
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from gloss_gen.core.config import Settings

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
DOCKER_DIR = ROOT / "docker"
COMPOSE = DOCKER_DIR / "compose.yaml"
COMPOSE_GPU = DOCKER_DIR / "compose.gpu.yaml"
NGINX = DOCKER_DIR / "nginx.conf"
SMOKE = DOCKER_DIR / "smoke-test.sh"
README = DOCKER_DIR / "README.md"

VGLOSS_NAME = re.compile(r"\bVGLOSS_[A-Z0-9_]+\b")


def _load(path: Path) -> dict:
    data = yaml.safe_load(path.read_text())
    assert isinstance(data, dict), f"{path.name} is not a YAML mapping"
    return data


@pytest.fixture(scope="module")
def compose() -> dict:
    return _load(COMPOSE)


@pytest.fixture(scope="module")
def compose_gpu() -> dict:
    return _load(COMPOSE_GPU)


def _instructions(path: Path) -> list[tuple[str, str]]:
    """Dockerfile instructions as (KEYWORD, arguments), continuation lines joined."""
    out: list[tuple[str, str]] = []
    buf = ""
    for raw in path.read_text().splitlines():
        line = raw.rstrip()
        if not buf and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if buf and line.lstrip().startswith("#"):
            continue  # comment lines inside a continued instruction
        if line.endswith("\\"):
            buf += line[:-1] + " "
            continue
        buf += line
        keyword, _, args = buf.strip().partition(" ")
        out.append((keyword.upper(), args.strip()))
        buf = ""
    assert not buf, "Dockerfile ends inside a continued line"
    return out


def _stages(instructions: list[tuple[str, str]]) -> list[list[tuple[str, str]]]:
    stages: list[list[tuple[str, str]]] = []
    for keyword, args in instructions:
        if keyword == "FROM":
            stages.append([])
        if stages:
            stages[-1].append((keyword, args))
    return stages


def _service_volume_sources(service: dict) -> list[str]:
    sources = []
    for vol in service.get("volumes", []) or []:
        if isinstance(vol, str):
            parts = vol.split(":")
            if len(parts) >= 2:
                sources.append(parts[0])
        elif (
            isinstance(vol, dict)
            and vol.get("type", "volume") == "volume"
            and vol.get("source")
        ):
            sources.append(vol["source"])
    return sources


def _is_named_volume(source: str) -> bool:
    return not source.startswith((".", "/", "~", "$")) and "/" not in source


def _depends_on(service: dict) -> list[str]:
    dep = service.get("depends_on") or []
    return list(dep) if isinstance(dep, (list, dict)) else []


# --------------------------------------------------------------------------------- compose


def test_compose_files_parse(compose, compose_gpu):
    assert {"redis", "api", "worker", "describe"} <= set(compose["services"])
    assert set(compose_gpu["services"]) <= set(compose["services"]), (
        "compose.gpu.yaml names a service compose.yaml does not have"
    )


def test_depends_on_names_existing_services(compose, compose_gpu):
    services = set(compose["services"])
    for doc in (compose, compose_gpu):
        for name, svc in doc["services"].items():
            for dep in _depends_on(svc):
                assert dep in services, f"{name} depends on unknown service {dep!r}"


def test_api_worker_describe_wait_for_healthy_redis(compose):
    for name in ("api", "worker", "describe"):
        dep = compose["services"][name]["depends_on"]
        assert dep["redis"]["condition"] == "service_healthy", name
    assert compose["services"]["redis"]["healthcheck"]["test"]


def test_named_volumes_are_declared(compose, compose_gpu):
    declared = set((compose.get("volumes") or {}).keys())
    for doc in (compose, compose_gpu):
        for name, svc in doc["services"].items():
            for source in _service_volume_sources(svc):
                if _is_named_volume(source):
                    assert source in declared, (
                        f"{name} uses undeclared volume {source!r}"
                    )


def test_redis_persists_on_a_volume(compose):
    redis = compose["services"]["redis"]
    sources = _service_volume_sources(redis)
    assert any(_is_named_volume(s) for s in sources)
    assert "--appendonly" in redis["command"]


def test_services_share_model_cache_and_redis(compose):
    for name in ("api", "worker", "describe"):
        svc = compose["services"][name]
        env = svc["environment"]
        assert env["VGLOSS_REDIS_URL"] == "redis://redis:6379/0", name
        mounts = {v.split(":")[1]: v.split(":")[0] for v in svc["volumes"]}
        assert _is_named_volume(mounts["/cache"]), name
        # the weight caches point into the /cache volume
        assert str(env["VGLOSS_CACHE_DIR"]).startswith("/cache/"), name
        assert str(env["HF_HOME"]).startswith("/cache/"), name
    assert compose["services"]["describe"]["profiles"] == ["jobs"]
    assert compose["services"]["worker"]["command"] == ["vgloss", "worker"]
    assert "ports" not in compose["services"]["worker"], (
        "worker must scale: no fixed host port"
    )


def test_api_publishes_port_8000(compose):
    api = compose["services"]["api"]
    assert any(str(p).endswith(":8000") for p in api["ports"])
    cmd = api["command"]
    assert cmd[:2] == ["vgloss", "serve"] and cmd[cmd.index("--port") + 1] == "8000"


def test_gpu_overlay_reserves_nvidia_and_builds_cuda(compose_gpu):
    for name in ("api", "worker"):
        svc = compose_gpu["services"][name]
        devices = svc["deploy"]["resources"]["reservations"]["devices"]
        assert any(
            d.get("driver") == "nvidia" and "gpu" in d.get("capabilities", [])
            for d in devices
        )
        assert svc["build"]["args"]["VARIANT"] == "cuda"


def test_vgloss_env_names_are_real_settings():
    fields = set(Settings.model_fields)
    files = [DOCKERFILE, COMPOSE, COMPOSE_GPU, NGINX, SMOKE, README]
    seen = set()
    for path in files:
        if not path.exists():
            continue
        for name in VGLOSS_NAME.findall(path.read_text()):
            seen.add(name)
            field = name[len("VGLOSS_") :].lower()
            assert field in fields, f"{path.name}: {name} is not a Settings field"
    assert {"VGLOSS_REDIS_URL", "VGLOSS_CACHE_DIR", "VGLOSS_DATA_DIR"} <= seen


def test_compose_environment_keys_are_real_settings(compose):
    fields = set(Settings.model_fields)
    for name, svc in compose["services"].items():
        env = svc.get("environment") or {}
        keys = (
            env.keys() if isinstance(env, dict) else [e.split("=", 1)[0] for e in env]
        )
        for key in keys:
            if key.startswith("VGLOSS_"):
                assert key[len("VGLOSS_") :].lower() in fields, f"{name}: {key}"


# --------------------------------------------------------------------------------- Dockerfile


def test_dockerfile_base_image_arg():
    ins = _instructions(DOCKERFILE)
    first_from = next(i for i, (k, _) in enumerate(ins) if k == "FROM")
    args_before = [a for k, a in ins[:first_from] if k == "ARG"]
    assert any(a.startswith("BASE_IMAGE=") or a == "BASE_IMAGE" for a in args_before)
    assert "python:3.11-slim" in next(
        a for a in args_before if a.startswith("BASE_IMAGE")
    )
    assert ins[first_from][1].startswith("${BASE_IMAGE}")


def test_dockerfile_is_multi_stage_and_runs_as_non_root():
    stages = _stages(_instructions(DOCKERFILE))
    assert len(stages) >= 2, "multi-stage build expected"
    final = stages[-1]
    assert any(k == "COPY" and a.startswith("--from=") for k, a in final)
    users = [a for k, a in final if k == "USER"]
    assert users, "the final stage sets no USER"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0"), f"USER {users[-1]} is root"


def test_dockerfile_healthcheck_on_readyz():
    hc = [a for k, a in _instructions(DOCKERFILE) if k == "HEALTHCHECK"]
    assert len(hc) == 1
    assert "/readyz" in hc[0] and "urllib" in hc[0]
    assert ":8000/" in hc[0]


def test_dockerfile_default_command_serves():
    cmd = [a for k, a in _instructions(DOCKERFILE) if k == "CMD"][-1]
    assert cmd.startswith("[")
    import json

    assert json.loads(cmd) == ["vgloss", "serve", "--host", "0.0.0.0", "--port", "8000"]


def test_dockerfile_pip_stage_declares_pip_cert_and_variant():
    for stage in _stages(_instructions(DOCKERFILE)):
        runs_pip = any(
            k == "RUN" and re.search(r"\bpip install\b", a) for k, a in stage
        )
        if runs_pip:
            args = [a.split("=")[0] for k, a in stage if k == "ARG"]
            assert "PIP_CERT" in args, "a stage runs pip without ARG PIP_CERT"
            assert "VARIANT" in args and "TORCH_SPEC" in args


def test_dockerfile_caches_weights_on_a_volume_and_sets_up_wordnet():
    ins = _instructions(DOCKERFILE)
    final = _stages(ins)[-1]
    env_text = " ".join(a for k, a in final if k == "ENV")
    volumes = " ".join(a for k, a in final if k == "VOLUME")
    for var in ("HF_HOME", "VGLOSS_CACHE_DIR"):
        m = re.search(rf"\b{var}=(\S+)", env_text)
        assert m, f"{var} not set in the final stage"
        assert any(
            m.group(1).startswith(v) for v in re.findall(r'"(/[^"]+)"', volumes)
        ), var
    runs = " ".join(a for k, a in ins if k == "RUN")
    assert "wordnet-base" in runs and "wordnet-sense-index" in runs
    assert "gloss_gen.data.wordnet --setup /usr/share/nltk_data" in runs


def test_dockerignore_keeps_context_small_but_complete():
    patterns = {
        line.strip()
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    for must in (".git", ".venv", "**/__pycache__"):
        assert must in patterns, must
    for needed in ("pyproject.toml", "gloss_gen", "app", "gloss_gen/data"):
        assert needed not in patterns, needed


# --------------------------------------------------------------------------------- nginx


def test_nginx_upstream_points_at_api_service_port(compose):
    text = NGINX.read_text()
    upstreams = dict(re.findall(r"upstream\s+(\w+)\s*\{([^}]*)\}", text))
    assert upstreams, "no upstream block"
    api_port = compose["services"]["api"]["ports"][0].rsplit(":", 1)[1]
    for name, body in upstreams.items():
        servers = re.findall(r"^\s*server\s+([^\s;]+)", body, re.MULTILINE)
        assert servers == [f"api:{api_port}"], servers
        assert re.search(rf"proxy_pass\s+http://{name}\s*;", text)
    proxy = compose["services"]["proxy"]
    assert any(v.startswith("./nginx.conf:") for v in proxy["volumes"])
    listen = re.search(r"listen\s+(\d+)", text).group(1)
    assert any(str(p).endswith(f":{listen}") for p in proxy["ports"])


# --------------------------------------------------------------------------------- smoke test


def test_smoke_test_script_is_strict_and_valid():
    text = SMOKE.read_text()
    assert text.startswith("#!/usr/bin/env bash")
    assert "set -euo pipefail" in text
    assert SMOKE.stat().st_mode & 0o111, "docker/smoke-test.sh is not executable"
    for needle in (
        "--isolation chroot",
        "PIP_CERT=",
        "BASE_IMAGE=",
        "VGLOSS_PRETRAINED=none",
        "/readyz",
        "/v1/classify",
        "--runtime runc",
    ):
        assert needle in text, needle
    bash = shutil.which("bash")
    if bash:
        subprocess.run([bash, "-n", str(SMOKE)], check=True)


def test_readme_commands_use_the_files_here():
    text = README.read_text()
    for needle in (
        "docker build",
        "docker compose -f docker/compose.yaml",
        "docker/compose.gpu.yaml",
        "docker/smoke-test.sh",
    ):
        assert needle in text, needle
    # every `docker compose ... --profile X` names a profile that exists
    profiles = {
        p
        for svc in _load(COMPOSE)["services"].values()
        for p in svc.get("profiles", [])
    }
    for line in text.splitlines():
        if "--profile" in line:
            words = shlex.split(line.strip().lstrip("$ ").split("#")[0], posix=True)
            for i, w in enumerate(words[:-1]):
                if w == "--profile":
                    assert words[i + 1] in profiles, line
