"""The deployment files agree with each other (Docker cannot run here): images, ports, env vars,
mounted config paths, the vLLM command; and every config in configs/ passes check-config."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from sidecar.cli import main
from sidecar.config import Config, RemoteModel, load_config, parse_listen

ROOT = Path(__file__).resolve().parents[1]
COMPOSE_FILES = ("docker-compose.yml", "docker-compose.elasticsearch.yml")
_VAR = re.compile(r"\$\{(?P<name>[A-Z0-9_]+)(?::?[-?](?P<default>[^}]*))?\}")


def compose(name: str) -> dict[str, Any]:
    data = yaml.safe_load((ROOT / name).read_text())
    assert isinstance(data, dict) and isinstance(data.get("services"), dict)
    return data


def interpolate(value: str, env: dict[str, str] | None = None) -> str:
    """Compose's ${VAR}, ${VAR:-default} and ${VAR:?error}, with the defaults where unset."""
    env = env or {}

    def one(m: re.Match[str]) -> str:
        if m.group("name") in env:
            return env[m.group("name")]
        return m.group("default") if m.group(0).startswith(f"${{{m.group('name')}:-") else "x"

    return _VAR.sub(one, value)


def host_path(file: str, service: dict[str, Any], container_path: str) -> Path:
    """Where a container path of the service lies on the host, through its bind mounts."""
    for volume in service.get("volumes", []):
        source, target = volume.split(":")[:2]
        if source.startswith(".") and (container_path + "/").startswith(target.rstrip("/") + "/"):
            return (ROOT / source / container_path[len(target) :].lstrip("/")).resolve()
    raise AssertionError(f"{file}: {container_path} is not in a bind mount of the service")


def sidecar_configs(file: str) -> list[tuple[dict[str, Any], Path]]:
    """The sidecar service and each config file its command can name (SIDECAR_CONFIG choices)."""
    data = compose(file)
    service = data["services"]["sidecar"]
    command = service["command"]
    raw = command[command.index("--config") + 1]
    if "${SIDECAR_CONFIG" in raw:
        choices = [interpolate(raw), interpolate(raw, {"SIDECAR_CONFIG": "compose-gpu.yaml"})]
    else:
        choices = [raw]
    return [(service, host_path(file, service, c)) for c in choices]


def published(service: dict[str, Any]) -> dict[int, str]:
    """Container port -> the host address it is published on."""
    out = {}
    for spec in service.get("ports", []):
        parts = str(spec).split(":")
        out[int(parts[-1])] = ":".join(parts[:-1])
    return out


@pytest.mark.parametrize("file", COMPOSE_FILES)
def test_images_are_pinned_and_every_service_has_a_healthcheck(file: str) -> None:
    for name, service in compose(file)["services"].items():
        assert "healthcheck" in service and service["healthcheck"]["test"], f"{name}: no healthcheck"
        if "image" in service:
            image = service["image"]
            assert ":" in image.rsplit("/", 1)[-1] and not image.endswith(":latest"), f"{name}: {image}"
        else:
            assert service["build"] == "." and (ROOT / "Dockerfile").is_file()


@pytest.mark.parametrize("file", COMPOSE_FILES)
def test_the_sidecar_service_and_its_configs_agree(file: str) -> None:
    services = compose(file)["services"]
    dockerfile = (ROOT / "Dockerfile").read_text()
    exposed = {
        int(p) for line in dockerfile.splitlines() if line.startswith("EXPOSE") for p in line.split()[1:]
    }
    for service, path in sidecar_configs(file):
        assert path.is_file(), f"{file}: the sidecar's config {path} does not exist"
        cfg = load_config(path)
        ports = published(service)
        listen_port = parse_listen(cfg.listen)[1]
        admin_port = parse_listen(cfg.admin.listen)[1]
        assert listen_port in ports and admin_port in ports and {listen_port, admin_port} <= exposed
        assert parse_listen(cfg.listen)[0] == "0.0.0.0"  # reachable from the other containers
        assert ports[admin_port].startswith("127.0.0.1")  # the admin API: the host's loopback only
        # the upstream is a service of this file, on its port, over https (security on)
        up = urlsplit(cfg.upstream.url)
        assert up.scheme == "https" and up.hostname in services and up.port == 9200
        assert service["depends_on"][up.hostname]["condition"] == "service_healthy"
        # each env var the config names is given to the container
        env = service["environment"]
        named = [cfg.admin.token_env, cfg.events.basic_auth_env]
        remotes = {name: m for name, m in cfg.models.items() if isinstance(m, RemoteModel)}
        named += [m.api_key_env for m in remotes.values()] + [
            v for m in remotes.values() for v in m.headers_env.values()
        ]
        for var in filter(None, named):
            assert var in env, f"{file}: {path.name} reads ${var}, the sidecar service does not set it"
        assert cfg.admin.token_env in " ".join(service["healthcheck"]["test"])
        # remote models point at a service of this file, which serves the model they name
        for name, model in remotes.items():
            for url in model.remote_urls:
                target = urlsplit(url)
                assert target.hostname in services, (
                    f"{path.name}: models.{name}: no service {target.hostname}"
                )
                check_vllm(file, services[target.hostname], target.port, model.model)


def check_vllm(file: str, service: dict[str, Any], port: int | None, model: str | None) -> None:
    """The vLLM service serves Qwen3-Reranker as the README documents, on the port the config uses."""
    assert service["image"].startswith("vllm/vllm-openai:") and service["profiles"] == ["gpu"]
    args = [str(a) for a in service["command"]]
    served = args[args.index("--served-model-name") + 1] if "--served-model-name" in args else args[0]
    assert served == model
    assert args[args.index("--port") + 1] == str(port)
    assert args[args.index("--runner") + 1] == "pooling"
    overrides = json.loads(args[args.index("--hf_overrides") + 1])
    assert overrides == {
        "architectures": ["Qwen3ForSequenceClassification"],
        "classifier_from_token": ["no", "yes"],
        "is_original_qwen3_reranker": True,
    }
    template = host_path(file, service, args[args.index("--chat-template") + 1])
    text = template.read_text()
    assert "<Instruct>:" in text and "<Query>:" in text and "<Document>:" in text and '"yes" or "no"' in text
    assert service["deploy"]["resources"]["reservations"]["devices"][0]["capabilities"] == ["gpu"]
    assert str(port) in " ".join(service["healthcheck"]["test"])


@pytest.mark.parametrize("file", COMPOSE_FILES)
def test_required_variables_are_in_the_readme(file: str) -> None:
    text = (ROOT / file).read_text()
    from tests import docs

    readme = docs.text()
    required = {m.group("name") for m in _VAR.finditer(text) if ":?" in m.group(0)}
    assert required, file
    for name in required:
        assert name in readme, f"{file} requires ${name}; the README does not mention it"


def test_the_cluster_passwords_reach_the_cluster_and_the_event_sink() -> None:
    os_services = compose("docker-compose.yml")["services"]
    assert "OPENSEARCH_INITIAL_ADMIN_PASSWORD" in os_services["opensearch"]["environment"]
    assert (
        "${OPENSEARCH_INITIAL_ADMIN_PASSWORD}"
        in os_services["sidecar"]["environment"]["OPENSEARCH_EVENTS_AUTH"]
    )
    es_services = compose("docker-compose.elasticsearch.yml")["services"]
    assert "ELASTIC_PASSWORD" in es_services["elasticsearch"]["environment"]
    assert "${ELASTIC_PASSWORD}" in es_services["sidecar"]["environment"]["ELASTICSEARCH_EVENTS_AUTH"]


CONFIGS = sorted(
    p for p in (ROOT / "configs").rglob("*.yaml") if "rules" not in p.relative_to(ROOT / "configs").parts
)


@pytest.mark.parametrize("path", CONFIGS, ids=[str(p.relative_to(ROOT)) for p in CONFIGS])
def test_every_config_passes_check_config(path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check-config", str(path)]) == 0, capsys.readouterr().err
    assert isinstance(load_config(path), Config)


def test_the_configs_folder_holds_the_expected_configs() -> None:
    names = {str(p.relative_to(ROOT / "configs")) for p in CONFIGS}
    assert {"default.yaml", "demo.yaml", "compose.yaml", "compose-gpu.yaml", "compose-es.yaml"} <= names


def test_the_build_context_leaves_out_what_the_image_does_not_copy() -> None:
    ignored = {
        ln.strip()
        for ln in (ROOT / ".dockerignore").read_text().splitlines()
        if ln.strip() and not ln.startswith("#")
    }
    assert {".venv", ".git"} <= ignored
    copied = re.findall(r"^COPY (\S+)", (ROOT / "Dockerfile").read_text(), re.M)
    assert not ignored & set(copied), "the image copies something the context leaves out"


@pytest.mark.parametrize("file", COMPOSE_FILES)
def test_cluster_healthchecks_pass_only_on_green_or_yellow(file: str) -> None:
    for name, service in compose(file)["services"].items():
        if name in ("opensearch", "elasticsearch"):
            check = " ".join(service["healthcheck"]["test"])
            assert "green" in check and "yellow" in check and "grep -qv" not in check, name


def test_elasticsearch_keeps_its_automatic_tls() -> None:
    """Any xpack.security.* setting turns off the TLS set-up of Elasticsearch's first start, while
    its healthcheck and the sidecar's config speak https to it."""
    env = compose("docker-compose.elasticsearch.yml")["services"]["elasticsearch"]["environment"]
    assert not [k for k in env if k.startswith("xpack.security")]


def test_the_fleet_profile_puts_three_replicas_with_one_config_cache_and_history_behind_nginx() -> None:
    services = compose("docker-compose.yml")["services"]
    replicas = {n: s for n, s in services.items() if re.fullmatch(r"sidecar-\d", n)}
    assert len(replicas) == 3
    for name in (*replicas, "valkey", "nginx"):
        assert services[name]["profiles"] == ["fleet"], name
    cache_port = None
    for name, service in replicas.items():
        command = service["command"]
        path = host_path("docker-compose.yml", service, command[command.index("--config") + 1])
        cfg = load_config(path)
        assert cfg.config_store is not None and cfg.events.index and cfg.cache is not None
        cache = urlsplit(cfg.cache.url)
        assert (
            cache.hostname in services
            and service["depends_on"][cache.hostname]["condition"] == "service_healthy"
        )
        cache_port = cache.port
        env = service["environment"]
        for var in filter(
            None,
            (
                cfg.admin.token_env,
                cfg.events.basic_auth_env,
                cfg.config_store.basic_auth_env,
                cfg.config_store.key_env,
            ),
        ):
            assert var in env, f"{name}: {path.name} reads ${var}"
        ports = published(service)
        admin_port = parse_listen(cfg.admin.listen)[1]
        assert set(ports) == {admin_port} and ports[admin_port].startswith(
            "127.0.0.1"
        )  # clients go through nginx
    assert cache_port == 6379 and "valkey-cli" in services["valkey"]["healthcheck"]["test"]
    # nginx balances over exactly the replicas, on the port they listen on
    conf_mount = next(v for v in services["nginx"]["volumes"] if v.endswith(":/etc/nginx/nginx.conf:ro"))
    conf = (ROOT / conf_mount.split(":")[0]).read_text()
    upstream = re.search(r"upstream sidecars \{(.*?)\}", conf, re.S)
    assert upstream is not None
    servers = set(re.findall(r"server (\S+?):(\d+)", upstream.group(1)))
    listen = parse_listen(load_config(ROOT / "configs/compose-fleet.yaml").listen)[1]
    assert servers == {(n, str(listen)) for n in replicas}
    body = re.search(r"client_max_body_size (\d+)m", conf)
    assert body is not None and int(body.group(1)) * 1024 * 1024 >= Config().max_request_body_bytes
    assert all(services["nginx"]["depends_on"][n]["condition"] == "service_healthy" for n in replicas)


@pytest.mark.parametrize("file", COMPOSE_FILES)
def test_the_sidecar_can_write_its_config_file(file: str) -> None:
    """PUT /_sidecar/config (a TUI save) writes the file: its mount is not read-only."""
    service = compose(file)["services"]["sidecar"]
    mounts = [v for v in service["volumes"] if v.split(":")[1] == "/app/configs"]
    assert mounts and all(not v.endswith(":ro") for v in mounts)
