"""docker-compose.yml is valid Compose and holds the documented topology (no Docker engine needed)."""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
EXPECTED = {"redis1", "redis2", "redis3", "redis4", "redis5", "redis6", "redis-cluster-init",
            "admin1", "admin2", "agent", "nginx", "stable", "canary"}

BINARY = shutil.which("docker-compose")
pytestmark = pytest.mark.skipif(
    BINARY is None, reason="docker-compose binary not installed (apt-get install docker-compose; dev.sh does)")


def _compose(*args: str) -> subprocess.CompletedProcess:
    # --env-file: the passwords are mandatory (${VAR:?}); .env.example holds the dev values
    return subprocess.run([BINARY, "-f", str(COMPOSE), "--env-file", str(ENV_EXAMPLE), *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)


def _config() -> dict | str:
    """Return the resolved config as a dict (JSON output when supported), else as YAML text."""
    res = _compose("config", "--format", "json")
    if res.returncode == 0:
        try:
            return json.loads(res.stdout)
        except ValueError:
            pass
    res = _compose("config")
    assert res.returncode == 0, res.stderr
    try:
        import yaml
    except ImportError:
        return res.stdout
    return yaml.safe_load(res.stdout)


def test_compose_config_is_valid():
    res = _compose("config", "-q")
    assert res.returncode == 0, res.stderr


def test_compose_refuses_to_run_without_passwords(tmp_path):
    res = subprocess.run([BINARY, "-f", str(COMPOSE), "--project-directory", str(tmp_path), "config", "-q"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=60,
                         env={"PATH": "/usr/bin:/bin:/usr/local/bin"})
    assert res.returncode != 0
    assert "RG_OPS_PASSWORD" in res.stderr or "RG_" in res.stderr


def test_compose_services():
    config = _config()
    if isinstance(config, str):
        services_block = config.split("\nservices:\n", 1)[1]
        names = {line.strip().rstrip(":") for line in services_block.splitlines()
                 if line.startswith("  ") and not line.startswith("   ") and line.rstrip().endswith(":")}
        assert EXPECTED <= names, EXPECTED - names
        for needle in ("cluster-replicas", "rg-admin", "rg-gateway", "8080", "/opt/rulegate/lua"):
            assert needle in config or needle in (ROOT / "docker" / "cluster-init.sh").read_text()
        return
    services = config["services"]
    assert EXPECTED <= set(services), EXPECTED - set(services)
    for n in range(1, 7):
        assert services[f"redis{n}"]["image"].startswith("redis:7.2")
    assert services["redis-cluster-init"]["image"].startswith("redis:7.2")
    for name in ("admin1", "admin2"):
        env = services[name]["environment"]
        assert env["RULEADMIN_REDIS_USERNAME"] == "rg-admin"
        assert env["RULEADMIN_REDIS_NODES"] and env["RULEADMIN_REDIS_PASSWORD"] and env["RULEADMIN_SECRET_KEY"]
        assert "service_completed_successfully" in json.dumps(services[name]["depends_on"])
    assert "8080" in json.dumps(services["nginx"]["ports"])
    assert "/opt/rulegate/lua" in json.dumps(services["nginx"]["volumes"])
    assert "--listen 0.0.0.0:9901" in json.dumps(services["agent"]["command"])


def test_redis_acl_template_is_least_privilege():
    """The compose ACL file grants exactly what rulegate_dev/acl.py grants (admin; one namespace's gateway)."""
    from rulegate_dev.acl import ADMIN_RULES, gateway_rules, gateway_user

    rendered = (ROOT / "docker" / "redis" / "users.acl.template").read_text().replace("@RULEGATE_NAMESPACE@", "prod")
    users = {line.split()[1]: line for line in rendered.splitlines() if line.startswith("user ")}
    assert set(users) == {"default", "rg-ops", "rg-admin", gateway_user("prod")}
    assert " off " in users["default"]
    assert users["rg-admin"].split(" ", 4)[4] == "resetkeys " + ADMIN_RULES
    assert users[gateway_user("prod")].split(" ", 4)[4] == gateway_rules("prod")
    assert "+@all" not in users["rg-admin"] + users[gateway_user("prod")]
    conf = (ROOT / "docker" / "redis" / "redis.conf").read_text()
    for line in ("cluster-enabled yes", "cluster-require-full-coverage no", "cluster-node-timeout 5000"):
        assert line in conf
