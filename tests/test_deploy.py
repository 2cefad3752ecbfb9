"""The deployment files: docker-compose.yml, Dockerfile, .dockerignore, deploy/.

No Docker engine is needed: the compose file is parsed and checked against what the
services expect (DSN, ports, tokens, health, mounts), the ClickHouse config is parsed as
XML, and the Dockerfile is read instruction by instruction. When the `docker compose`
plugin is installed, `docker compose config -q` validates the file as well.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import tomllib
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml

from flightrec.store.config import parse_dsn

ROOT = Path(__file__).resolve().parents[1]
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
SYSTEM_LOGS = ROOT / "deploy" / "clickhouse" / "config.d" / "system-logs.xml"
CLICKHOUSE_CONFIG_D = "/etc/clickhouse-server/config.d/"

# A compose run with only the required variable set, and one with everything overridden.
DEFAULT_ENV = {"FLIGHTREC_API_TOKEN": "test-token"}
CUSTOM_ENV = {
    "FLIGHTREC_API_TOKEN": "test-token",
    "FLIGHTREC_CLICKHOUSE_PASSWORD": "s3cr3tpw",
    "FLIGHTREC_INGEST_TOKENS": "a,b",
    "FLIGHTREC_UI_BIND": "0.0.0.0",
}


# --- a small compose interpolation, enough to read the file as compose would ----------


class MissingVariable(Exception):
    """A `${VAR:?message}` whose variable is unset or empty."""


_VARIABLE = re.compile(r"\$(?:(?P<dollar>\$)|\{(?P<braced>[^}]*)\}|(?P<named>[A-Za-z_][A-Za-z0-9_]*))")
_BRACED = re.compile(r"(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:-|-|:\?|\?|:\+|\+)(?P<arg>.*))?", re.S)


def interpolate(value: str, env: dict[str, str]) -> str:
    """Expand $VAR, ${VAR}, ${VAR:-d}, ${VAR-d}, ${VAR:?m}, ${VAR?m}, ${VAR:+r} and $$."""

    def expand(match: re.Match[str]) -> str:
        if match.group("dollar"):
            return "$"
        if match.group("named"):
            return env.get(match.group("named"), "")
        braced = _BRACED.fullmatch(match.group("braced"))
        assert braced, f"unsupported interpolation {match.group(0)!r}"
        name, op, arg = braced.group("name"), braced.group("op"), braced.group("arg") or ""
        current = env.get(name)
        if op is None:
            return current or ""
        if op == ":-":
            return current if current else arg
        if op == "-":
            return current if current is not None else arg
        if op == ":?":
            if not current:
                raise MissingVariable(f"{name}: {arg}")
            return current
        if op == "?":
            if current is None:
                raise MissingVariable(f"{name}: {arg}")
            return current
        if op == ":+":
            return arg if current else ""
        return arg if current is not None else ""  # "+"

    return _VARIABLE.sub(expand, value)


# --- fixtures and helpers ------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict:
    assert COMPOSE_FILE.is_file(), "docker-compose.yml is missing at the repository root"
    data = yaml.safe_load(COMPOSE_FILE.read_text())
    assert isinstance(data, dict) and isinstance(data.get("services"), dict)
    return data


@pytest.fixture(scope="module")
def services(compose: dict) -> dict:
    return compose["services"]


def environment(service: dict) -> dict[str, str]:
    """A service's environment as a mapping, raw (uninterpolated)."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        pairs = (item.split("=", 1) if "=" in item else (item, "") for item in env)
        return {key: value for key, value in pairs}
    return {key: "" if value is None else str(value) for key, value in env.items()}


def command_args(service: dict, env: dict[str, str]) -> list[str]:
    """A service's command, interpolated and split into arguments."""
    command = service.get("command")
    assert command, "service has no command"
    if isinstance(command, list):
        return [interpolate(str(arg), env) for arg in command]
    return shlex.split(interpolate(command, env))


def option(args: list[str], name: str) -> str:
    """The value of `--name VALUE` or `--name=VALUE` in args."""
    for i, arg in enumerate(args):
        if arg == name:
            assert i + 1 < len(args), f"{name} has no value"
            return args[i + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    raise AssertionError(f"{name} not in command {args}")


def published_ports(service: dict, env: dict[str, str]) -> list[tuple[str | None, str, str]]:
    """(host ip, host port, container port) for each published port of a service."""
    result = []
    for entry in service.get("ports") or []:
        if isinstance(entry, dict):
            result.append(
                (entry.get("host_ip"), str(entry.get("published", "")), str(entry["target"]))
            )
            continue
        spec = interpolate(str(entry), env).split("/", 1)[0]
        parts = spec.rsplit(":", 2)
        if len(parts) == 3:
            result.append((parts[0].strip("[]"), parts[1], parts[2]))
        elif len(parts) == 2:
            result.append((None, parts[0], parts[1]))
        else:
            result.append((None, "", parts[0]))  # container port only: a random host port
    return result


def mounts(service: dict) -> list[tuple[str, str]]:
    """(source, target) of each volume of a service; source is a path or a volume name."""
    result = []
    for entry in service.get("volumes") or []:
        if isinstance(entry, dict):
            result.append((str(entry.get("source", "")), str(entry["target"])))
        else:
            parts = str(entry).split(":")
            assert len(parts) >= 2, f"anonymous volume {entry!r}: name it so data survives"
            result.append((parts[0], parts[1]))
    return result


def is_bind(source: str) -> bool:
    return source.startswith((".", "/", "~"))


def depends_condition(service: dict, other: str) -> str | None:
    depends = service.get("depends_on") or {}
    if isinstance(depends, list):
        return "service_started" if other in depends else None
    if other not in depends:
        return None
    return (depends[other] or {}).get("condition", "service_started")


def healthcheck_text(service: dict) -> str:
    check = service.get("healthcheck") or {}
    assert not check.get("disable"), "healthcheck disabled"
    test = check.get("test")
    assert test, "no healthcheck test"
    if isinstance(test, list):
        assert test[0] in ("CMD", "CMD-SHELL"), f"healthcheck test {test!r} runs nothing"
        return " ".join(test[1:])
    return str(test)


def store_dsn(services: dict, env: dict[str, str]) -> str:
    return option(command_args(services["flightrec"], env), "--store")


# --- compose: services, store DSN, ports ------------------------------------------------


def test_services_exist(services: dict) -> None:
    assert {"clickhouse", "flightrec", "ui"} <= set(services)


def test_flightrec_serves_on_all_interfaces_with_both_otlp_ports(services: dict) -> None:
    args = command_args(services["flightrec"], DEFAULT_ENV)
    assert args[:2] == ["flightrec", "serve"], args
    assert option(args, "--host") == "0.0.0.0"
    assert option(args, "--http-port") == "4318"
    assert option(args, "--grpc-port") == "4317"


@pytest.mark.parametrize("env", [DEFAULT_ENV, CUSTOM_ENV], ids=["defaults", "overridden"])
def test_store_dsn_points_at_the_clickhouse_service(services: dict, env: dict[str, str]) -> None:
    raw = option(shlex.split(str(services["flightrec"]["command"])), "--store")
    assert re.fullmatch(r"http://[^@/]+@clickhouse:8123/flightrec", raw), raw

    target = parse_dsn(store_dsn(services, env))
    assert target.kind == "server"
    assert (target.host, target.port, target.database) == ("clickhouse", 8123, "flightrec")

    # The DSN's account is the one the ClickHouse container creates.
    ch_env = {k: interpolate(v, env) for k, v in environment(services["clickhouse"]).items()}
    assert target.username == ch_env["CLICKHOUSE_USER"]
    assert target.password == ch_env["CLICKHOUSE_PASSWORD"]
    assert target.database == ch_env["CLICKHOUSE_DB"]
    if "FLIGHTREC_CLICKHOUSE_PASSWORD" in env:
        assert target.password == env["FLIGHTREC_CLICKHOUSE_PASSWORD"]


def test_clickhouse_service_settings(services: dict) -> None:
    clickhouse = services["clickhouse"]
    image = clickhouse["image"]
    name, _, tag = image.partition(":")
    assert name == "clickhouse/clickhouse-server"
    assert re.fullmatch(r"\d+\.\d+(\.\d+)*", tag), f"pin a release tag, not {tag!r}"

    env = environment(clickhouse)
    assert env["CLICKHOUSE_DB"] == "flightrec"
    assert env["CLICKHOUSE_USER"] == "flightrec"
    assert env["CLICKHOUSE_DEFAULT_ACCESS_MANAGEMENT"] == "1"
    assert re.fullmatch(r"\$\{FLIGHTREC_CLICKHOUSE_PASSWORD:-[^}]+\}", env["CLICKHOUSE_PASSWORD"])

    nofile = clickhouse["ulimits"]["nofile"]
    limits = [nofile] if isinstance(nofile, int) else [nofile["soft"], nofile["hard"]]
    assert all(int(limit) >= 262144 for limit in limits)

    data = [source for source, target in mounts(clickhouse) if target == "/var/lib/clickhouse"]
    assert data and not is_bind(data[0]), "ClickHouse data needs a named volume"


def test_ports_are_published(services: dict) -> None:
    for env in (DEFAULT_ENV, CUSTOM_ENV):
        flightrec = {(host, container) for _, host, container in published_ports(services["flightrec"], env)}
        assert {("4317", "4317"), ("4318", "4318")} <= flightrec
        ui = {(host, container) for _, host, container in published_ports(services["ui"], env)}
        assert ("8501", "8501") in ui


def test_clickhouse_http_is_published_on_loopback_only(services: dict) -> None:
    for env in (DEFAULT_ENV, CUSTOM_ENV):
        ports = published_ports(services["clickhouse"], env)
        assert ("127.0.0.1", "8123", "8123") in ports
        assert all(ip in ("127.0.0.1", "::1") for ip, _, _ in ports), ports


def test_ui_talks_to_the_api_only(services: dict) -> None:
    ui = services["ui"]
    args = command_args(ui, DEFAULT_ENV)
    assert args[:2] == ["flightrec", "ui"], args
    assert option(args, "--api") == "http://flightrec:4318"
    assert option(args, "--port") == "8501"
    assert option(args, "--host") == "0.0.0.0"
    assert "--store" not in args
    assert ui.get("build") == services["flightrec"].get("build"), "ui and flightrec share one image"


# --- compose: health and start order --------------------------------------------------


def test_clickhouse_has_a_healthcheck(services: dict) -> None:
    check = healthcheck_text(services["clickhouse"])
    assert ("clickhouse-client" in check and "SELECT 1" in check) or "/ping" in check, check


def test_flightrec_waits_for_a_healthy_clickhouse(services: dict) -> None:
    assert depends_condition(services["flightrec"], "clickhouse") == "service_healthy"


def test_flightrec_healthcheck_calls_the_health_endpoint(services: dict) -> None:
    check = healthcheck_text(services["flightrec"])
    assert "http://127.0.0.1:4318/api/health/live" in check
    assert "urllib" in check  # the slim image has python but no curl or wget


def test_ui_waits_for_a_healthy_flightrec(services: dict) -> None:
    assert depends_condition(services["ui"], "flightrec") == "service_healthy"


# --- compose: tokens and data ---------------------------------------------------------


@pytest.mark.parametrize("name", ["flightrec", "ui"])
def test_api_token_is_required(services: dict, name: str) -> None:
    raw = environment(services[name]).get("FLIGHTREC_API_TOKEN", "")
    assert re.fullmatch(r"\$\{FLIGHTREC_API_TOKEN:\?[^}]+\}", raw), (
        f"{name}: FLIGHTREC_API_TOKEN must be ${{FLIGHTREC_API_TOKEN:?message}}, got {raw!r}"
    )
    with pytest.raises(MissingVariable):
        interpolate(raw, {})
    with pytest.raises(MissingVariable):
        interpolate(raw, {"FLIGHTREC_API_TOKEN": ""})
    assert interpolate(raw, DEFAULT_ENV) == "test-token"


def test_ingest_tokens_are_passed_through(services: dict) -> None:
    raw = environment(services["flightrec"]).get("FLIGHTREC_INGEST_TOKENS")
    assert raw is not None
    assert interpolate(raw, CUSTOM_ENV) == "a,b"
    assert interpolate(raw, DEFAULT_ENV) == ""


def test_wal_lives_on_a_named_volume(compose: dict, services: dict) -> None:
    flightrec = services["flightrec"]
    data_dir = environment(flightrec).get("FLIGHTREC_DATA")
    assert data_dir == "/var/lib/flightrec"
    sources = [source for source, target in mounts(flightrec) if target == data_dir]
    assert sources, f"nothing mounted at {data_dir}"
    assert not is_bind(sources[0])
    assert sources[0] in (compose.get("volumes") or {}), f"volume {sources[0]!r} is not declared"


def test_named_volumes_are_declared(compose: dict, services: dict) -> None:
    declared = set(compose.get("volumes") or {})
    for name, service in services.items():
        for source, _ in mounts(service):
            if not is_bind(source):
                assert source in declared, f"{name}: volume {source!r} is not declared"


def test_every_mounted_path_exists(services: dict) -> None:
    for name, service in services.items():
        for source, target in mounts(service):
            if is_bind(source):
                assert not source.startswith(("/", "~")), f"{name}: {source} is outside the repo"
                assert (ROOT / source).exists(), f"{name} mounts {source}, which does not exist"
        build = service.get("build")
        if build is not None:
            context = build if isinstance(build, str) else build.get("context", ".")
            dockerfile = "Dockerfile" if isinstance(build, str) else build.get("dockerfile", "Dockerfile")
            assert (ROOT / context / dockerfile).is_file(), f"{name}: no {dockerfile} in {context}"


# --- the ClickHouse system log config -------------------------------------------------


@pytest.fixture(scope="module")
def system_logs() -> ET.Element:
    root = ET.parse(SYSTEM_LOGS).getroot()  # raises on malformed XML
    assert root.tag == "clickhouse"
    return root


def test_system_logs_config_is_mounted_into_config_d(services: dict) -> None:
    relative = "./" + SYSTEM_LOGS.relative_to(ROOT).as_posix()
    targets = [target for source, target in mounts(services["clickhouse"]) if source == relative]
    assert targets, f"clickhouse does not mount {relative}"
    assert targets[0].startswith(CLICKHOUSE_CONFIG_D) and targets[0].endswith(".xml"), targets


def _removed(element: ET.Element | None) -> bool:
    return element is not None and "remove" in element.attrib


_TTL = re.compile(r"event_date \+ INTERVAL \d+ (DAY|WEEK|MONTH) DELETE")


def test_trace_log_is_removed_or_bounded(system_logs: ET.Element) -> None:
    trace_log = system_logs.find("trace_log")
    assert trace_log is not None, "system-logs.xml leaves trace_log unbounded"
    assert _removed(trace_log) or _TTL.fullmatch(trace_log.findtext("ttl", "").strip())


def test_query_log_has_a_ttl(system_logs: ET.Element) -> None:
    query_log = system_logs.find("query_log")
    assert query_log is not None and not _removed(query_log)
    assert _TTL.fullmatch(query_log.findtext("ttl", "").strip()), query_log.findtext("ttl")
    assert query_log.findtext("database") == "system"
    assert query_log.findtext("table") == "query_log"


# The system logs a stock ClickHouse server writes to by default.
STOCK_LOGS = [
    "query_log",
    "trace_log",
    "query_thread_log",
    "query_views_log",
    "part_log",
    "text_log",
    "metric_log",
    "error_log",
    "asynchronous_metric_log",
    "opentelemetry_span_log",
    "processors_profile_log",
    "asynchronous_insert_log",
]


@pytest.mark.parametrize("name", STOCK_LOGS)
def test_each_stock_system_log_is_removed_or_bounded(system_logs: ET.Element, name: str) -> None:
    element = system_logs.find(name)
    assert element is not None, f"system-logs.xml leaves system.{name} unbounded"
    if _removed(element):
        assert len(element) == 0, f"{name} is removed yet configured"
    else:
        ttl = element.findtext("ttl", "").strip()
        assert _TTL.fullmatch(ttl), f"{name}: ttl {ttl!r}"


def test_ttls_are_valid_for_their_tables(system_logs: ET.Element) -> None:
    for element in system_logs:
        if not isinstance(element.tag, str) or _removed(element):
            continue
        assert element.attrib.get("remove") is None
        # ClickHouse rejects <ttl> next to <engine>; the stock opentelemetry_span_log has one.
        assert element.find("engine") is None or element.find("ttl") is None, element.tag
        assert element.tag != "opentelemetry_span_log" or element.find("ttl") is None
        if element.find("ttl") is not None:
            assert element.findtext("table") == element.tag, element.tag
            assert element.findtext("database") == "system", element.tag


# --- Dockerfile and .dockerignore -----------------------------------------------------


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for line in DOCKERFILE.read_text().splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        full = (pending + stripped).strip()
        pending = ""
        keyword, _, rest = full.partition(" ")
        instructions.append((keyword.upper(), rest.strip()))
    assert not pending, "Dockerfile ends in a continuation line"
    return instructions


def _argv(arguments: str) -> list[str]:
    return json.loads(arguments) if arguments.startswith("[") else shlex.split(arguments)


def test_dockerfile_base_and_install() -> None:
    instructions = dockerfile_instructions()
    froms = [args for keyword, args in instructions if keyword == "FROM"]
    assert froms and froms[-1].split()[0] == "python:3.11-slim"
    runs = " && ".join(args for keyword, args in instructions if keyword == "RUN")
    assert re.search(r"pip install( --?[\w-]+)* \.(\s|$)", runs), "the image must `pip install .`"


def test_dockerfile_exposes_the_ports() -> None:
    exposed = set()
    for keyword, args in dockerfile_instructions():
        if keyword == "EXPOSE":
            exposed.update(port.split("/")[0] for port in args.split())
    assert {"4317", "4318", "8501"} <= exposed


def test_dockerfile_runs_flightrec_serve_as_non_root() -> None:
    instructions = dockerfile_instructions()
    entry = [_argv(args) for keyword, args in instructions if keyword == "ENTRYPOINT"]
    cmd = [_argv(args) for keyword, args in instructions if keyword == "CMD"]
    argv = (entry[-1] if entry else []) + (cmd[-1] if cmd else [])
    assert argv[:2] == ["flightrec", "serve"], argv
    assert option(argv, "--host") == "0.0.0.0"

    users = [args for keyword, args in instructions if keyword == "USER"]
    assert users, "the image runs as root"
    assert users[-1].split(":")[0] not in ("root", "0")


def test_dockerfile_copies_every_package() -> None:
    """setuptools needs each listed package dir; a missing COPY breaks `pip install .`."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "flightrec" in pyproject["project"]["scripts"]
    packages = set(pyproject["tool"]["setuptools"]["package-dir"].values())  # the folders installed
    copied: set[str] = set()
    for keyword, args in dockerfile_instructions():
        if keyword == "COPY":
            sources = [arg for arg in shlex.split(args) if not arg.startswith("--")][:-1]
            copied.update(source.rstrip("/").removeprefix("./") for source in sources)
    assert "pyproject.toml" in copied or "." in copied
    if "." not in copied:
        assert set(packages) <= copied, f"not copied: {sorted(set(packages) - copied)}"


def test_dockerignore_keeps_what_the_build_needs() -> None:
    patterns = {
        line.strip().rstrip("/")
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {".git", ".venv"} <= patterns
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    needed = ["pyproject.toml", *set(pyproject["tool"]["setuptools"]["package-dir"].values())]
    for path in needed:
        assert path not in patterns and f"/{path}" not in patterns, f".dockerignore drops {path}"


# --- docker compose itself, when installed ---------------------------------------------


def _compose_plugin_available() -> bool:
    if shutil.which("docker") is None:
        return False
    try:
        probe = subprocess.run(
            ["docker", "compose", "version"], capture_output=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return probe.returncode == 0


@pytest.mark.skipif(
    not _compose_plugin_available(),
    reason="the `docker compose` CLI plugin is not installed; the parsing tests above cover the file",
)
def test_docker_compose_config_validates() -> None:
    env = {**os.environ, **DEFAULT_ENV}
    result = subprocess.run(
        ["docker", "compose", "-f", str(COMPOSE_FILE), "config", "-q"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr

    missing = {key: value for key, value in env.items() if key != "FLIGHTREC_API_TOKEN"}
    refused = subprocess.run(
        ["docker", "compose", "-f", str(COMPOSE_FILE), "config", "-q"],
        cwd=ROOT,
        env=missing,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert refused.returncode != 0, "compose accepted a missing FLIGHTREC_API_TOKEN"


def test_deploy_readme_says_how_to_run_it() -> None:
    readme = (ROOT / "deploy" / "README.md").read_text()
    assert "FLIGHTREC_API_TOKEN" in readme and "docker compose up -d" in readme
    assert "system-logs.xml" in readme
