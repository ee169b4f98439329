"""The deployment files hold together: Compose (checked by ``docker compose config`` where the
plugin exists, and always by the checks below), the Caddyfile, the lock file and the Dockerfile.

Compose's own schema is not shipped here, so the file is checked against what this deployment
needs and against the keys Compose knows (a misspelt key fails), and its ``${...}``
interpolation is done as Compose does it, to prove that it refuses to start without the
required secrets.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).parents[2]
COMPOSE = ROOT / "docker-compose.yml"
REQUIRED = {"POSTGRES_PASSWORD", "PUBLIC_URL", "RELANCE_PROVIDER"}
FILLED = {
    "POSTGRES_PASSWORD": "a-long-random-password",
    "PUBLIC_URL": "https://relance.example.com",
    "RELANCE_PROVIDER": "meta",
}
# The service keys of the Compose specification this file may use.
SERVICE_KEYS = {
    "build", "image", "restart", "logging", "env_file", "environment", "depends_on", "command",
    "entrypoint", "ports", "expose", "volumes", "healthcheck", "profiles", "deploy", "networks",
    "labels", "stop_grace_period", "user", "working_dir", "init", "secrets", "configs",
}  # fmt: skip
HEALTHCHECK_KEYS = {"test", "interval", "timeout", "retries", "start_period", "disable"}
INTERPOLATION = re.compile(
    r"\$(?:\$|\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?P<op>:?[-?])?(?P<arg>[^}]*)\})"
)


def interpolate(value: Any, env: dict[str, str], missing: list[str]) -> Any:
    """Compose's interpolation of every string: ``${V}``, ``${V:-d}``, ``${V-d}``, ``${V:?m}``,
    ``${V?m}``, and ``$$`` for a literal ``$``; a required variable absent goes to ``missing``."""
    if isinstance(value, dict):
        return {k: interpolate(v, env, missing) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env, missing) for v in value]
    if not isinstance(value, str):
        return value

    def one(match: re.Match[str]) -> str:
        name, op, arg = match["name"], match["op"] or "", match["arg"]
        if name is None:
            return "$"
        present = name in env and (env[name] != "" or ":" not in op)
        if op.endswith("?") and not present:
            missing.append(name)
            return ""
        if op.endswith("-") and not present:
            return str(interpolate(arg, env, missing))
        return env.get(name, "")

    return INTERPOLATION.sub(one, value)


def compose(env: dict[str, str]) -> tuple[dict[str, Any], list[str]]:
    raw = yaml.safe_load(COMPOSE.read_text())
    missing: list[str] = []
    return interpolate(raw, env, missing), missing


def test_compose_refuses_to_start_without_its_secrets() -> None:
    _, missing = compose({})
    assert set(missing) == REQUIRED
    for name in REQUIRED:
        _, missing = compose({k: v for k, v in FILLED.items() if k != name})
        assert set(missing) == {name}, name
    _, missing = compose({**FILLED, "RELANCE_PROVIDER": ""})  # empty is not set
    assert missing and set(missing) == {"RELANCE_PROVIDER"}
    _, missing = compose(FILLED)
    assert missing == []


def test_every_service_is_known_to_compose_and_holds_together() -> None:
    doc, _ = compose(FILLED)
    services: dict[str, dict[str, Any]] = doc["services"]
    declared_volumes = set(doc["volumes"])
    for name, service in services.items():
        assert set(service) <= SERVICE_KEYS, (name, set(service) - SERVICE_KEYS)
        assert "image" in service or "build" in service, name
        for target in service.get("depends_on", {}):
            assert target in services, (name, target)
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (ROOT / source).exists(), (name, source)
            else:
                assert source in declared_volumes, (name, source)
        if "healthcheck" in service:
            assert set(service["healthcheck"]) <= HEALTHCHECK_KEYS, name
        # Log rotation on every container.
        logging = service["logging"]
        assert logging["driver"] == "json-file" and logging["options"]["max-size"], name
    for name in ("api", "worker", "beat", "postgres", "redis"):
        assert "healthcheck" in services[name], name
    env = services["api"]["environment"]
    assert env["PUBLIC_URL"] == FILLED["PUBLIC_URL"]
    assert FILLED["POSTGRES_PASSWORD"] in env["DATABASE_URL"]


def test_caddy_is_the_public_door_with_https_for_public_urls_host() -> None:
    doc, _ = compose(FILLED)
    services = doc["services"]
    caddy = services["caddy"]
    assert {"80:80", "443:443"} <= set(caddy["ports"])
    assert caddy["depends_on"]["api"]["condition"] == "service_healthy"
    # Only Caddy listens publicly: the api is bound to the host's loopback.
    assert all(p.startswith("127.0.0.1:") for p in services["api"]["ports"])
    # Its site address is PUBLIC_URL's host, as its shell command derives it.
    script = caddy["command"][-1].replace("$$", "$")
    derived = subprocess.run(
        ["sh", "-c", script.split("; exec")[0] + '; printf %s "$SITE_ADDRESS"'],
        env={"PUBLIC_URL": "https://relance.example.com/some/path"},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert derived == "relance.example.com"
    caddyfile = (ROOT / "deploy" / "Caddyfile").read_text()
    assert "{$SITE_ADDRESS} {" in caddyfile
    assert re.search(r"reverse_proxy api:8000 \{[^}]*flush_interval -1", caddyfile)
    assert "max_size 64MB" in caddyfile


def _requirement_name(spec: str) -> str:
    return re.split(r"[<>=!~\[ ;]", spec, maxsplit=1)[0].lower().replace("_", "-")


def test_the_image_installs_the_lock_file_pinned_and_hashed() -> None:
    lock = (ROOT / "requirements.lock").read_text()
    pinned = {
        m["name"].lower().replace("_", "-"): m["version"]
        for m in re.finditer(r"^(?P<name>[A-Za-z0-9_.-]+)==(?P<version>\S+) \\$", lock, re.M)
    }
    entries = [line for line in lock.splitlines() if line and not line.startswith((" ", "#"))]
    assert len(entries) == len(pinned), "every line of the lock is name==version with hashes"
    assert lock.count("--hash=sha256:") >= len(pinned)
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    for spec in project["dependencies"]:
        assert _requirement_name(spec) in pinned, spec
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "COPY requirements.lock" in dockerfile
    assert "pip install --require-hashes --no-deps -r requirements.lock" in dockerfile
    assert "pip install --no-deps ." in dockerfile and "pip check" in dockerfile


def _docker_compose() -> bool:
    if shutil.which("docker") is None:
        return False
    done = subprocess.run(["docker", "compose", "version"], capture_output=True, check=False)
    return done.returncode == 0


@pytest.mark.skipif(not _docker_compose(), reason="no docker compose plugin on this machine")
def test_docker_compose_config_accepts_the_file() -> None:
    import os

    base = {k: v for k, v in os.environ.items() if k not in REQUIRED}
    good = subprocess.run(
        ["docker", "compose", "-f", str(COMPOSE), "config", "--quiet"],
        env={**base, **FILLED},
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    )
    assert good.returncode == 0, good.stderr
    bad = subprocess.run(
        ["docker", "compose", "-f", str(COMPOSE), "config", "--quiet"],
        env=base,
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    )
    assert bad.returncode != 0 and "POSTGRES_PASSWORD" in bad.stderr + bad.stdout
