"""deploy/compose.yaml and deploy/nginx.conf, parsed (no Docker daemon here) and checked
against the settings table, the Dockerfile and each other."""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml

from faramesh.config import SETTINGS, Settings
from tests.deploy.support import DEPLOY, interpolate, parse_dockerfile

REPLICAS = ("faramesh-a", "faramesh-b")
SECRET = {"FARAMESH_SECRET_KEY": "s" * 64, "POSTGRES_PASSWORD": "pw-from-env"}


def services() -> dict[str, Any]:
    loaded = yaml.safe_load((DEPLOY / "compose.yaml").read_text())  # merges the x-faramesh anchor
    return dict(loaded["services"])


def image_port() -> int:
    _, stages = parse_dockerfile(DEPLOY / "Dockerfile")
    return int(stages[-1].env()["FARAMESH_PORT"])


def test_two_replicas_share_one_configuration_built_from_the_dockerfile() -> None:
    found = services()
    a, b = (found[name] for name in REPLICAS)
    assert a == b
    assert a["build"] == {"context": "..", "dockerfile": "deploy/Dockerfile"}
    assert a["depends_on"] == {"db": {"condition": "service_healthy"}}
    assert "ports" not in a  # reached only through the load balancer


def test_replica_environment_is_made_of_settings_that_parse() -> None:
    env = {k: interpolate(str(v), SECRET) for k, v in services()["faramesh-a"]["environment"].items()}
    known = {s.env for s in SETTINGS}
    assert set(env) <= known, set(env) - known
    settings = Settings.from_env(env)
    assert settings.secret_key == SECRET["FARAMESH_SECRET_KEY"]
    assert settings.approval_timeout == 3600
    with pytest.raises(KeyError, match="FARAMESH_SECRET_KEY"):  # refuses to start without a shared secret
        interpolate(services()["faramesh-a"]["environment"]["FARAMESH_SECRET_KEY"], {})


def test_replicas_reach_the_compose_database_with_its_credentials() -> None:
    found = services()
    db_env = {k: interpolate(str(v), SECRET) for k, v in found["db"]["environment"].items()}
    url = interpolate(found["faramesh-a"]["environment"]["FARAMESH_DATABASE_URL"], SECRET)
    match = re.fullmatch(r"postgresql://(\w+):([^@]+)@(\w+):5432/(\w+)", url)
    assert match, url
    user, password, host, database = match.groups()
    assert (user, password, database) == (db_env["POSTGRES_USER"], db_env["POSTGRES_PASSWORD"], db_env["POSTGRES_DB"])
    assert host == "db" and password == SECRET["POSTGRES_PASSWORD"]
    assert "pg_isready" in " ".join(found["db"]["healthcheck"]["test"])


def test_one_port_in_front_of_both_replicas() -> None:
    found = services()
    published = [s for s in found.values() if s.get("ports")]
    assert [s["ports"] for s in published] == [["8000:80"]]
    lb = published[0]
    assert set(lb["depends_on"]) == set(REPLICAS)
    assert all(lb["depends_on"][r]["condition"] == "service_healthy" for r in REPLICAS)  # the image's HEALTHCHECK
    conf = (DEPLOY / "nginx.conf").read_text()
    [mount] = lb["volumes"]
    assert mount.startswith("./nginx.conf:") and mount.endswith(":ro")
    upstream = re.search(r"upstream faramesh \{(.*?)\}", conf, re.S)
    assert upstream
    servers = re.findall(r"server (\S+):(\d+)", upstream.group(1))
    assert servers == [(name, str(image_port())) for name in REPLICAS]
    assert re.search(r"listen 80;", conf)
    # Long polls last up to 120 s and event streams stay open: the proxy must wait longer.
    timeouts = [int(t) for t in re.findall(r"proxy_read_timeout (\d+)s;", conf)]
    assert timeouts and min(timeouts) > 120
    assert "proxy_buffering off;" in conf.split("location = /v1/events", 1)[1]
    assert "deny all;" in conf.split("location = /metrics", 1)[1]
    # nginx refuses bodies the servers would accept otherwise: keep the limits equal.
    [size] = re.findall(r"client_max_body_size (\d+)m;", conf)
    assert int(size) * 1024 * 1024 == Settings().max_body_bytes
