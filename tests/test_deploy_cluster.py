"""deploy/cluster: the compose file, the ClickHouse and Keeper XML, HAProxy's config and check.py.

No Docker engine is needed (none runs here): the files are parsed and checked against the pinned
topology (2 shards x 2 replicas ch-s1-r1..ch-s2-r2, the one-shard state cluster over all four
nodes, Keeper keeper1..3 on 9181/9234, two collectors behind one balancer). Each check is a
function run on the real files, and again on a copy of deploy/ in tmp_path with one thing broken,
which it must catch. check.py's plan and its pure verdicts run here too; the script itself runs on
a machine with Docker (deploy/cluster/README.md).
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import secrets
import shlex
import shutil
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from types import ModuleType

import pytest
import yaml

from flightrec.collector.decode import decode_body
from flightrec.settings import Settings
from flightrec.store.config import parse_dsn
from tests.test_deploy import (
    DEFAULT_ENV,
    _compose_plugin_available,
    environment,
    interpolate,
    is_bind,
    mounts,
    option,
    published_ports,
)

ROOT = Path(__file__).resolve().parents[1]
CLUSTER = ROOT / "deploy" / "cluster"
NODES = {"ch-s1-r1": "01", "ch-s1-r2": "01", "ch-s2-r1": "02", "ch-s2-r2": "02"}
KEEPERS = {"keeper1": 1, "keeper2": 2, "keeper3": 3}
COLLECTORS = ("collector1", "collector2")
CONFIG_D = "/etc/clickhouse-server/config.d/"
ENV = {**DEFAULT_ENV, "FLIGHTREC_CLUSTER_SECRET": "s3cret"}


# --- reading the files (from a base directory: the real deploy/cluster or a broken copy) -----------


def load_compose(base: Path) -> dict:
    data = yaml.safe_load((base / "docker-compose.yml").read_text())
    assert isinstance(data, dict) and isinstance(data.get("services"), dict), "no services in the compose file"
    return data


def command_args(service: dict) -> list[str]:
    command = service.get("command")
    assert command, "service has no command"
    return [interpolate(a, ENV) for a in command] if isinstance(command, list) else shlex.split(interpolate(command, ENV))


def mount_source(base: Path, service: dict, target: str) -> Path | None:
    """The file a service bind-mounts at ``target``, resolved against the compose file's folder."""
    for source, mounted in mounts(service):
        if mounted == target and is_bind(source):
            return (base / source).resolve()
    return None


def remote_servers(path: Path) -> dict[str, list[list[str]]]:
    """cluster name -> its shards, each the list of its replicas' hosts (ports checked to be 9000)."""
    clusters: dict[str, list[list[str]]] = {}
    root = ET.parse(path).getroot()
    for cluster in root.find("remote_servers") or []:
        assert cluster.find("secret") is not None and cluster.find("secret").get("from_env"), (
            f"cluster {cluster.tag}: no <secret from_env=...>: nodes would query each other as user default")
        shards = []
        for shard in cluster.findall("shard"):
            assert shard.findtext("internal_replication") == "true", f"{cluster.tag}: internal_replication must be true"
            replicas = shard.findall("replica")
            assert all(r.findtext("port") == "9000" for r in replicas), f"{cluster.tag}: replicas must use port 9000"
            shards.append([r.findtext("host") for r in replicas])
        clusters[cluster.tag] = shards
    return clusters


def node_macros(base: Path, compose: dict) -> dict[str, tuple[str, str]]:
    """node service -> (shard, replica) from the macros file it mounts."""
    found = {}
    for node in NODES:
        service = compose["services"].get(node)
        assert service is not None, f"no service {node}"
        path = mount_source(base, service, CONFIG_D + "macros.xml")
        assert path is not None, f"{node} mounts no {CONFIG_D}macros.xml"
        macros = ET.parse(path).getroot().find("macros")
        assert macros is not None, f"{path}: no <macros>"
        found[node] = (macros.findtext("shard"), macros.findtext("replica"))
    return found


# --- the checks ------------------------------------------------------------------------------------


def check_images_pinned(compose: dict) -> None:
    for name, service in compose["services"].items():
        image = service.get("image", "")
        if "build" in service:
            assert image == "flightrec:local", f"{name}: a built service is tagged flightrec:local, not {image!r}"
            continue
        repository, _, tag = image.partition(":")
        assert repository and re.fullmatch(r"\d+\.\d+(\.\d+)*", tag), f"{name}: pin a release tag, not {image!r}"
    servers = {compose["services"][n]["image"] for n in NODES}
    keepers = {compose["services"][k]["image"] for k in KEEPERS}
    assert servers == {"clickhouse/clickhouse-server:25.8"}, f"ClickHouse nodes run {servers}: one pinned LTS"
    assert keepers == {"clickhouse/clickhouse-keeper:25.8"}, f"Keeper nodes run {keepers}: the servers' release"


def check_mounts_exist(compose: dict, base: Path) -> None:
    declared = set(compose.get("volumes") or {})
    for name, service in compose["services"].items():
        for source, _target in mounts(service):
            if is_bind(source):
                assert not source.startswith(("/", "~")), f"{name}: {source} is outside the repository"
                assert (base / source).is_file(), f"{name} mounts {source}, which does not exist"
            else:
                assert source in declared, f"{name}: volume {source!r} is not declared"
        build = service.get("build")
        if build is not None:
            context = base / (build if isinstance(build, str) else build.get("context", "."))
            dockerfile = "Dockerfile" if isinstance(build, str) else build.get("dockerfile", "Dockerfile")
            assert (context / dockerfile).is_file(), f"{name}: no {dockerfile} in {context}"


def check_ports(compose: dict) -> None:
    """Only the balancer (4317, 4318), the UI (loopback by default) and one node's HTTP (loopback) publish."""
    services = compose["services"]
    published = {name: published_ports(service, ENV) for name, service in services.items() if service.get("ports")}
    assert set(published) == {"lb", "ui", "ch-s1-r1"}, f"services publishing ports: {sorted(published)}"
    assert {(host, container) for _, host, container in published["lb"]} == {("4317", "4317"), ("4318", "4318")}, \
        f"lb publishes {published['lb']}"
    assert published["ui"] == [("127.0.0.1", "8501", "8501")], f"ui publishes {published['ui']} by default"
    assert published_ports(services["ui"], {**ENV, "FLIGHTREC_UI_BIND": "0.0.0.0"}) == [("0.0.0.0", "8501", "8501")]
    assert published["ch-s1-r1"] == [("127.0.0.1", "8123", "8123")], f"ch-s1-r1 publishes {published['ch-s1-r1']}"


def check_collectors(compose: dict) -> None:
    """Each collector serves, in cluster mode, on a DSN to a ClickHouse node, with a WAL volume of its own."""
    services = compose["services"]
    wal_owner: dict[str, str] = {}
    for name in COLLECTORS:
        service = services.get(name)
        assert service is not None, f"no service {name}"
        args = command_args(service)
        assert args[:2] == ["flightrec", "serve"] and option(args, "--host") == "0.0.0.0", args
        assert (option(args, "--http-port"), option(args, "--grpc-port")) == ("4318", "4317"), args
        target = parse_dsn(option(args, "--store"))
        assert target.kind == "server" and target.host in NODES, f"{name}: the DSN names {target.host}, not a node"
        assert (target.port, target.database) == (8123, "flightrec"), f"{name}: {target.port}/{target.database}"
        node_env = {k: interpolate(v, ENV) for k, v in environment(services[target.host]).items()}
        assert (target.username, target.password) == (node_env["CLICKHOUSE_USER"], node_env["CLICKHOUSE_PASSWORD"]), \
            f"{name}: the DSN's account is not the one the nodes create"
        env = environment(service)
        assert env.get("FLIGHTREC_CLUSTER") == "flightrec", f"{name}: FLIGHTREC_CLUSTER is {env.get('FLIGHTREC_CLUSTER')!r}"
        assert env.get("FLIGHTREC_STATE_CLUSTER") == "flightrec_state", \
            f"{name}: FLIGHTREC_STATE_CLUSTER is {env.get('FLIGHTREC_STATE_CLUSTER')!r}"
        assert re.fullmatch(r"\$\{FLIGHTREC_API_TOKEN:\?[^}]+\}", env.get("FLIGHTREC_API_TOKEN", "")), \
            f"{name}: FLIGHTREC_API_TOKEN must be required (${{FLIGHTREC_API_TOKEN:?...}})"
        assert env.get("FLIGHTREC_DATA") == "/var/lib/flightrec", f"{name}: FLIGHTREC_DATA {env.get('FLIGHTREC_DATA')!r}"
        assert env.get("FLIGHTREC_NODE_ID") == name, f"{name}: FLIGHTREC_NODE_ID is {env.get('FLIGHTREC_NODE_ID')!r}"
        wal = [source for source, target_path in mounts(service) if target_path == env["FLIGHTREC_DATA"]]
        assert wal and not is_bind(wal[0]), f"{name}: its WAL ({env['FLIGHTREC_DATA']}) needs a named volume"
        assert wal[0] not in wal_owner, f"{name} shares WAL volume {wal[0]!r} with {wal_owner.get(wal[0])}"
        wal_owner[wal[0]] = name
    for name, service in services.items():
        for source, _ in mounts(service):
            assert source not in wal_owner or wal_owner[source] == name, f"{name} mounts {wal_owner[source]}'s WAL"


def check_macros(base: Path, compose: dict) -> None:
    """Macros unique per node and consistent with remote_servers in the cluster.xml every node mounts."""
    macros = node_macros(base, compose)
    replicas = [replica for _, replica in macros.values()]
    assert len(set(replicas)) == len(replicas), f"{{replica}} macros repeat: {replicas}"
    for node, (shard, replica) in macros.items():
        assert replica == node == compose["services"][node].get("hostname"), \
            f"{node}: {{replica}} {replica!r} must be the node's host name"
    clusters = None
    for node in NODES:
        path = mount_source(base, compose["services"][node], CONFIG_D + "cluster.xml")
        assert path is not None, f"{node} mounts no {CONFIG_D}cluster.xml (remote_servers, zookeeper)"
        assert clusters is None or remote_servers(path) == clusters, f"{node} mounts another cluster.xml"
        clusters = remote_servers(path)
    assert clusters is not None and {"flightrec", "flightrec_state"} <= set(clusters), f"clusters: {sorted(clusters or {})}"
    data, state = clusters["flightrec"], clusters["flightrec_state"]
    assert [len(shard) for shard in data] == [2, 2], f"flightrec must be 2 shards x 2 replicas, is {data}"
    for node, (shard, _) in macros.items():
        holding = [index for index, hosts in enumerate(data, 1) if node in hosts]
        assert len(holding) == 1, f"{node} is in {len(holding)} shards of flightrec, not exactly one"
        assert f"{holding[0]:02d}" == shard, f"{node}: {{shard}} is {shard!r} but it is in shard {holding[0]:02d}"
        assert data[holding[0] - 1].count(node) == 1, f"{node} is listed twice in its shard"
    assert len(state) == 1 and sorted(state[0]) == sorted(NODES), \
        f"flightrec_state must be one shard of all four nodes, is {state}"


def check_keeper(base: Path, compose: dict) -> None:
    """Raft ids unique, one raft configuration everywhere, and every node's zookeeper section names all three."""
    services, raft = compose["services"], None
    ids = {}
    for keeper, expected_id in KEEPERS.items():
        path = mount_source(base, services[keeper], "/etc/clickhouse-keeper/keeper_config.xml")
        assert path is not None, f"{keeper} mounts no keeper_config.xml"
        server = ET.parse(path).getroot().find("keeper_server")
        assert server is not None and server.findtext("tcp_port") == "9181", f"{path}: keeper_server on 9181"
        ids[keeper] = int(server.findtext("server_id", "0"))
        peers = {s.findtext("hostname"): (int(s.findtext("id", "0")), s.findtext("port"))
                 for s in server.find("raft_configuration") or []}
        assert raft is None or peers == raft, f"{keeper}: its raft_configuration differs from the others'"
        raft = peers
        assert peers.get(keeper, (None,))[0] == ids[keeper], f"{keeper}: server_id {ids[keeper]} is not its raft id"
    assert len(set(ids.values())) == len(ids), f"Keeper server_ids repeat: {ids}"
    assert raft == {k: (i, "9234") for k, i in KEEPERS.items()}, f"raft_configuration is {raft}"
    for node in NODES:
        path = mount_source(base, services[node], CONFIG_D + "cluster.xml")
        assert path is not None, f"{node} mounts no cluster.xml"
        zookeeper = ET.parse(path).getroot().find("zookeeper")
        listed = sorted((n.findtext("host"), n.findtext("port")) for n in (zookeeper if zookeeper is not None else []))
        assert listed == [(k, "9181") for k in KEEPERS], f"{node}: its zookeeper section lists {listed}"


def check_secrets(base: Path, compose: dict) -> None:
    """Every node gets the cluster secret from a required variable, and cluster.xml reads it from there only."""
    for node in NODES:
        raw = environment(compose["services"][node]).get("CLICKHOUSE_CLUSTER_SECRET", "")
        assert re.fullmatch(r"\$\{FLIGHTREC_CLUSTER_SECRET:\?[^}]+\}", raw), \
            f"{node}: CLICKHOUSE_CLUSTER_SECRET must be ${{FLIGHTREC_CLUSTER_SECRET:?...}}, is {raw!r}"
        path = mount_source(base, compose["services"][node], CONFIG_D + "cluster.xml")
        assert path is not None, f"{node} mounts no cluster.xml"
        root = ET.parse(path).getroot()
        for element in [*root.iter("secret"), *root.iter("password")]:
            assert element.get("from_env") == "CLICKHOUSE_CLUSTER_SECRET" and not (element.text or "").strip(), \
                f"{path.name}: <{element.tag}> must come from_env CLICKHOUSE_CLUSTER_SECRET, not the file"
        assert root.find("interserver_http_credentials/password") is not None, "replicas fetch parts without a password"


def haproxy_sections(text: str) -> dict[str, list[str]]:
    """'frontend NAME' / 'backend NAME' / ... -> their lines, comments dropped."""
    sections: dict[str, list[str]] = {}
    current = None
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if not raw[0].isspace():
            current = line
            sections[current] = []
        elif current is not None:
            sections[current].append(line)
    return sections


def check_balancer(base: Path, compose: dict) -> None:
    """The balancer binds 4318 (HTTP/1.1) and 4317 (h2) and sends each to both collectors on that port."""
    ui = command_args(compose["services"]["ui"])
    assert ui[:2] == ["flightrec", "ui"] and option(ui, "--api") == "http://lb:4318", f"the UI calls {ui}, not the balancer"
    path = mount_source(base, compose["services"]["lb"], "/usr/local/etc/haproxy/haproxy.cfg")
    assert path is not None, "lb mounts no /usr/local/etc/haproxy/haproxy.cfg"
    sections = haproxy_sections(path.read_text())
    for port, h2 in (("4318", False), ("4317", True)):
        frontends = [name for name, lines in sections.items() if name.startswith("frontend ")
                     and any(re.fullmatch(rf"bind \S*:{port}( .*)?", line) for line in lines)]
        assert len(frontends) == 1, f"{len(frontends)} frontends bind :{port}"
        bind = next(line for line in sections[frontends[0]] if line.startswith("bind "))
        assert ("proto h2" in bind) == h2, f":{port} bind {bind!r}: gRPC needs 'proto h2', OTLP/HTTP must not force it"
        backend = next((line.split()[1] for line in sections[frontends[0]] if line.startswith("default_backend ")), None)
        lines = sections.get(f"backend {backend}", [])
        assert lines, f":{port} has no backend"
        servers = {parts[1]: parts for parts in (line.split() for line in lines) if parts[0] == "server"}
        assert set(servers) == set(COLLECTORS), f":{port} balances over {sorted(servers)}"
        for name, parts in servers.items():
            assert parts[2] == f"{name}:{port}", f":{port}: server {name} at {parts[2]}"
            assert "check" in parts, f":{port}: server {name} is not health-checked"
            assert ("h2" in parts and parts[parts.index("h2") - 1] == "proto") == h2, f":{port}: {name} {parts}"
        assert "http-check send meth GET uri /api/health" in lines, f":{port}: readiness must be GET /api/health"


CHECKS = {
    "images": lambda base: check_images_pinned(load_compose(base)),
    "mounts": lambda base: check_mounts_exist(load_compose(base), base),
    "ports": lambda base: check_ports(load_compose(base)),
    "collectors": lambda base: check_collectors(load_compose(base)),
    "macros": lambda base: check_macros(base, load_compose(base)),
    "keeper": lambda base: check_keeper(base, load_compose(base)),
    "balancer": lambda base: check_balancer(base, load_compose(base)),
    "secrets": lambda base: check_secrets(base, load_compose(base)),
}


@pytest.mark.parametrize("check", sorted(CHECKS))
def test_the_real_files_pass(check: str) -> None:
    CHECKS[check](CLUSTER)


# (check, file under deploy/cluster, text, replacement, what the failure says)
BREAKS = [
    ("images", "docker-compose.yml", "image: clickhouse/clickhouse-keeper:25.8", "image: clickhouse/clickhouse-keeper:latest",
     "pin a release tag"),
    ("images", "docker-compose.yml", "image: haproxy:3.2", "image: haproxy", "pin a release tag"),
    ("images", "docker-compose.yml", "  image: clickhouse/clickhouse-server:25.8",
     "  image: clickhouse/clickhouse-server:24.3", "one pinned LTS"),
    ("mounts", "docker-compose.yml", "./clickhouse/nodes/ch-s2-r2/macros.xml", "./clickhouse/nodes/ch-s2-r3/macros.xml",
     "does not exist"),
    ("mounts", "docker-compose.yml", "../clickhouse/config.d/system-logs.xml:/etc/clickhouse-server/config.d/system-logs.xml:ro\n"
     "  ch-s1-r2:", "../clickhouse/config.d/missing.xml:/etc/clickhouse-server/config.d/system-logs.xml:ro\n  ch-s1-r2:",
     "does not exist"),
    ("mounts", "docker-compose.yml", "      - collector2-wal:/var/lib/flightrec", "      - collector3-wal:/var/lib/flightrec",
     "not declared"),
    ("ports", "docker-compose.yml", '      - "127.0.0.1:8123:8123"', '      - "8123:8123"', "ch-s1-r1 publishes"),
    ("ports", "docker-compose.yml", "${FLIGHTREC_UI_BIND:-127.0.0.1}:8501", "${FLIGHTREC_UI_BIND:-0.0.0.0}:8501",
     "ui publishes"),
    ("ports", "docker-compose.yml", "    hostname: ch-s2-r1\n", '    hostname: ch-s2-r1\n    ports: ["9000:9000"]\n',
     "services publishing ports"),
    ("collectors", "docker-compose.yml", "      - collector2-wal:/var/lib/flightrec", "      - collector1-wal:/var/lib/flightrec",
     "shares WAL volume"),
    ("collectors", "docker-compose.yml", "  FLIGHTREC_STATE_CLUSTER: flightrec_state\n", "", "FLIGHTREC_STATE_CLUSTER is None"),
    ("collectors", "docker-compose.yml", "  FLIGHTREC_CLUSTER: flightrec\n", "  FLIGHTREC_CLUSTER: default\n",
     "FLIGHTREC_CLUSTER is 'default'"),
    ("collectors", "docker-compose.yml", "@ch-s2-r1:8123/flightrec", "@lb:8123/flightrec", "not a node"),
    ("collectors", "docker-compose.yml", "FLIGHTREC_API_TOKEN: ${FLIGHTREC_API_TOKEN:?set an API token}\n  FLIGHTREC_INGEST",
     "FLIGHTREC_API_TOKEN: ${FLIGHTREC_API_TOKEN:-}\n  FLIGHTREC_INGEST", "must be required"),
    ("collectors", "docker-compose.yml", "FLIGHTREC_NODE_ID: collector2", "FLIGHTREC_NODE_ID: collector1",
     "FLIGHTREC_NODE_ID is 'collector1'"),
    ("macros", "clickhouse/nodes/ch-s2-r2/macros.xml", "<shard>02</shard>", "<shard>01</shard>", "but it is in shard 02"),
    ("macros", "clickhouse/nodes/ch-s1-r2/macros.xml", "<replica>ch-s1-r2</replica>", "<replica>ch-s1-r1</replica>",
     "macros repeat"),
    ("macros", "clickhouse/config.d/cluster.xml",
     "<replica><host>ch-s2-r2</host><port>9000</port></replica>\n            </shard>\n        </flightrec_state>",
     "</shard>\n        </flightrec_state>", "one shard of all four nodes"),
    ("macros", "clickhouse/config.d/cluster.xml",
     "<replica><host>ch-s2-r1</host><port>9000</port></replica>\n                <replica><host>ch-s2-r2</host><port>9000</port></replica>\n            </shard>\n        </flightrec>",
     "<replica><host>ch-s2-r1</host><port>9000</port></replica>\n                <replica><host>ch-s1-r1</host><port>9000</port></replica>\n            </shard>\n        </flightrec>",
     "not exactly one"),
    ("macros", "clickhouse/config.d/cluster.xml", '<secret from_env="CLICKHOUSE_CLUSTER_SECRET"/>\n            <shard>\n                '
     "<internal_replication>true</internal_replication>\n                <replica><host>ch-s1-r1</host><port>9000</port></replica>\n"
     "                <replica><host>ch-s1-r2</host>", "<shard>\n                <internal_replication>true</internal_replication>\n"
     "                <replica><host>ch-s1-r1</host><port>9000</port></replica>\n                <replica><host>ch-s1-r2</host>",
     "no <secret"),
    ("keeper", "keeper/keeper3.xml", "<server_id>3</server_id>", "<server_id>2</server_id>", "is not its raft id"),
    ("keeper", "keeper/keeper2.xml", "<server><id>3</id><hostname>keeper3</hostname><port>9234</port></server>", "",
     "raft_configuration differs"),
    ("keeper", "clickhouse/config.d/cluster.xml", "<node><host>keeper3</host><port>9181</port></node>", "",
     "zookeeper section lists"),
    ("secrets", "docker-compose.yml", "${FLIGHTREC_CLUSTER_SECRET:?set FLIGHTREC_CLUSTER_SECRET (openssl rand -hex 32)}",
     "${FLIGHTREC_CLUSTER_SECRET:-changeme}", "must be ${FLIGHTREC_CLUSTER_SECRET:?...}"),
    ("secrets", "clickhouse/config.d/cluster.xml", '<password from_env="CLICKHOUSE_CLUSTER_SECRET"/>',
     "<password>hunter2</password>", "must come from_env"),
    ("secrets", "clickhouse/config.d/cluster.xml", '<secret from_env="CLICKHOUSE_CLUSTER_SECRET"/>',
     '<secret from_env="OTHER"/>', "must come from_env"),
    ("balancer", "haproxy/haproxy.cfg",
     "    server collector2 collector2:4317 proto h2", "    #server collector2 collector2:4317 proto h2", "balances over"),
    ("balancer", "docker-compose.yml", "--api http://lb:4318", "--api http://collector1:4318", "not the balancer"),
    ("balancer", "haproxy/haproxy.cfg", "    bind :4317 proto h2", "    bind :4317", "needs 'proto h2'"),
    ("balancer", "haproxy/haproxy.cfg", "server collector1 collector1:4318 check", "server collector1 collector1:4318",
     "not health-checked"),
    ("balancer", "haproxy/haproxy.cfg", "server collector2 collector2:4317 proto h2 check",
     "server collector2 collector2:4318 proto h2 check", "server collector2 at collector2:4318"),
]


@pytest.mark.parametrize(("check", "path", "old", "new", "message"), BREAKS,
                         ids=[f"{b[0]}-{i}" for i, b in enumerate(BREAKS)])
def test_each_check_catches_a_broken_copy(tmp_path: Path, check: str, path: str, old: str, new: str, message: str) -> None:
    shutil.copytree(ROOT / "deploy", tmp_path / "deploy")
    shutil.copy(ROOT / "Dockerfile", tmp_path / "Dockerfile")
    base = tmp_path / "deploy" / "cluster"
    target = base / path
    text = target.read_text()
    assert old in text, f"{path} no longer holds {old!r}: update this break"
    target.write_text(text.replace(old, new, 1))
    with pytest.raises(AssertionError, match=re.escape(message)):
        CHECKS[check](base)


def test_the_collectors_cluster_settings_exist() -> None:
    """FLIGHTREC_CLUSTER and FLIGHTREC_STATE_CLUSTER are settings the collectors read."""
    settings = Settings(cluster="flightrec", state_cluster="flightrec_state")
    assert (settings.cluster, settings.state_cluster) == ("flightrec", "flightrec_state")


@pytest.mark.skipif(not _compose_plugin_available(), reason="the `docker compose` CLI plugin is not installed")
def test_docker_compose_accepts_the_file_and_refuses_a_missing_secret() -> None:
    def config(env: dict[str, str]) -> subprocess.CompletedProcess:
        return subprocess.run(["docker", "compose", "-f", str(CLUSTER / "docker-compose.yml"), "config", "-q"],
                              env={**os.environ, **env}, capture_output=True, text=True, timeout=60, check=False)

    assert config(ENV).returncode == 0, config(ENV).stderr
    without = {key: value for key, value in ENV.items() if key != "FLIGHTREC_CLUSTER_SECRET"}
    assert config({**without, "FLIGHTREC_CLUSTER_SECRET": ""}).returncode != 0, "compose accepted no cluster secret"


@pytest.mark.skipif(shutil.which("haproxy") is None, reason="haproxy is not installed; check_balancer parses the file")
def test_haproxy_accepts_its_config() -> None:
    result = subprocess.run(["haproxy", "-c", "-f", str(CLUSTER / "haproxy" / "haproxy.cfg")],
                            capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 0, result.stderr


# --- check.py ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def check_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("cluster_check", CLUSTER / "check.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["cluster_check"] = module
    spec.loader.exec_module(module)
    return module


def test_dry_run_prints_every_claim_in_order_without_docker() -> None:
    result = subprocess.run([sys.executable, str(CLUSTER / "check.py"), "--dry-run", "--leader-bound", "12"],
                            capture_output=True, text=True, timeout=60, check=False, env={"PATH": "/nonexistent"})
    assert result.returncode == 0, result.stderr
    claims = [line.split(":")[0] for line in result.stdout.splitlines() if re.match(r"\d+\. ", line)]
    assert claims == ["1. up", "2. topology", "3. schema", "4. ingest", "5. one_shard", "6. replicas_equal",
                      "7. pause", "8. leader", "9. story"], result.stdout
    assert "leader 12 s" in result.stdout and "docker compose down -v" in result.stdout


def test_the_script_runs_on_python_3_9_and_later() -> None:
    """check.py runs on the Docker host's python3, not this venv: no syntax newer than 3.9."""
    import ast

    ast.parse((CLUSTER / "check.py").read_text(), feature_version=(3, 9))
    with pytest.raises(SyntaxError):  # the check itself can fail
        ast.parse("match x:\n    case 1:\n        pass\n", feature_version=(3, 9))


def test_the_script_knows_the_topology_the_files_pin(check_script: ModuleType) -> None:
    compose = load_compose(CLUSTER)
    assert check_script.NODES == {node: shard for node, (shard, _) in node_macros(CLUSTER, compose).items()}
    assert set(check_script.COLLECTORS) == set(COLLECTORS) <= set(compose["services"])
    clusters = remote_servers(CLUSTER / "clickhouse" / "config.d" / "cluster.xml")
    assert [list(hosts) for hosts in check_script.SHARDS.values()] == clusters[check_script.DATA_CLUSTER]
    assert sorted(clusters[check_script.STATE_CLUSTER][0]) == sorted(check_script.NODES)
    assert [name for name, _ in check_script.CLAIMS] == [name for name in check_script.Run.__dict__
                                                        if name in dict(check_script.CLAIMS)]


def test_its_spans_are_a_request_the_collector_accepts(check_script: ModuleType) -> None:
    traces = {"0af7651916cd43dd8448eb211c80319c": 5, "4bf92f3577b34da6a3ce929d0e0e4736": 3}
    request = check_script.otlp_json(traces, "CHK-1", "agent-x", 1_764_000_000_000_000_000)
    decoded = decode_body(json.dumps(request).encode(), "application/json")
    assert (decoded.accepted, decoded.rejected) == (8, 0), decoded.reasons
    spans = [span for rs in decoded.request.resource_spans for ss in rs.scope_spans for span in ss.spans]
    assert {span.trace_id.hex() for span in spans} == set(traces)
    assert len({(span.trace_id, span.span_id) for span in spans}) == 8
    roots = [span for span in spans if not span.parent_span_id]
    assert len(roots) == 2 and all({a.key for a in r.attributes} == {"flightrec.object.type", "flightrec.object.id"}
                                   for r in roots)


def test_single_shard_verdict(check_script: ModuleType) -> None:
    assert check_script.single_shard("t", {"01": 0, "02": 5}, 5) == "02"
    with pytest.raises(check_script.ClaimFailed, match="split across shards"):
        check_script.single_shard("t", {"01": 2, "02": 3}, 5)
    with pytest.raises(check_script.ClaimFailed, match="4 spans in the shards' local tables, 5 sent"):
        check_script.single_shard("t", {"01": 4, "02": 0}, 5)


def test_replicas_equal_verdict(check_script: ModuleType) -> None:
    check_script.replicas_equal("x", {"a": ("3", "99"), "b": ("3", "99")})
    with pytest.raises(check_script.ClaimFailed, match="replicas differ"):
        check_script.replicas_equal("x", {"a": ("3", "99"), "b": ("3", "98")})


def test_topology_verdicts(check_script: ModuleType) -> None:
    good = [["flightrec", "1", "1", "ch-s1-r1"], ["flightrec", "1", "2", "ch-s1-r2"], ["flightrec", "2", "1", "ch-s2-r1"],
            ["flightrec", "2", "2", "ch-s2-r2"]] + [["flightrec_state", "1", str(i), n] for i, n in enumerate(NODES, 1)]
    check_script.check_clusters("ch-s1-r1", good)
    with pytest.raises(check_script.ClaimFailed, match="cluster flightrec_state"):
        check_script.check_clusters("ch-s1-r1", good[:-1])
    with pytest.raises(check_script.ClaimFailed, match="cluster flightrec is"):
        swapped = [["flightrec", "1", "1", "ch-s1-r1"], ["flightrec", "1", "2", "ch-s2-r1"],
                   ["flightrec", "2", "1", "ch-s1-r2"], ["flightrec", "2", "2", "ch-s2-r2"]]
        check_script.check_clusters("ch-s1-r1", swapped + good[4:])
    check_script.check_macros("ch-s2-r1", "02", "ch-s2-r1")
    with pytest.raises(check_script.ClaimFailed, match="expected shard='02'"):
        check_script.check_macros("ch-s2-r1", "01", "ch-s2-r1")


def _health(node: str, holder: str | None, term: int, leads: bool) -> dict:
    return {"status": "ok", "leader": {"node": node, "holder": holder, "term": term, "is_leader": leads}}


def test_leader_verdicts(check_script: ModuleType) -> None:
    healths = {"collector1": _health("c1", "c2", 4, False), "collector2": _health("c2", "c2", 4, True)}
    assert check_script.leader_of(healths) == ("collector2", 4)
    with pytest.raises(check_script.ClaimFailed, match="2 collectors say they lead"):
        check_script.leader_of({"collector1": _health("c1", "c1", 4, True), "collector2": _health("c2", "c2", 4, True)})
    with pytest.raises(check_script.ClaimFailed, match="0 collectors say they lead"):
        check_script.leader_of({"collector1": _health("c1", None, 4, False), "collector2": _health("c2", None, 4, False)})
    with pytest.raises(check_script.ClaimFailed, match="names holder 'c9'"):
        check_script.leader_of({"collector1": _health("c1", "c9", 4, False), "collector2": _health("c2", "c2", 4, True)})
    assert check_script.took_over(4, _health("c1", "c1", 5, True))
    assert not check_script.took_over(4, _health("c1", "c1", 4, True))
    assert not check_script.took_over(4, _health("c1", "c2", 5, False))


def test_wait_for_names_what_did_not_happen(check_script: ModuleType) -> None:
    calls = []
    assert check_script.wait_for("x", 5, lambda: calls.append(1) or len(calls) >= 3, interval=0.001)[0]
    with pytest.raises(check_script.ClaimFailed, match="the pause seen: not within 0 s"):
        check_script.wait_for("the pause seen", 0.01, lambda: False, interval=0.001)


def test_the_host_side_claims_hold_on_a_real_server(make_server, check_script: ModuleType) -> None:
    """check.py's own HTTP path, span request, story claim and leader verdict, against a running server."""
    server = make_server(env={"FLIGHTREC_API_TOKEN": "check-token-0123456789abcdef"})
    cluster = check_script.Cluster({**os.environ, "FLIGHTREC_API_TOKEN": "check-token-0123456789abcdef"}, lb_url=server.url)
    run = check_script.Run(cluster, pause_bound=5, leader_bound=30)
    run.traces = {secrets.token_hex(16): 5, secrets.token_hex(16): 3}
    request = check_script.otlp_json(run.traces, run.ticket, check_script.AGENT, time.time_ns())
    run.send_http(request)
    for trace_id, count in run.traces.items():
        check_script.wait_for(f"trace {trace_id}", 60, lambda t=trace_id, n=count: run._spans_of(t) == n)
    assert run.story().startswith(f"story of ticket:{run.ticket}: 2 traces")
    health = cluster.api(None, "GET", "/api/health")
    assert check_script.leader_of({"collector1": health}) == ("collector1", health["leader"]["term"])

    run.traces[secrets.token_hex(16)] = 4  # a trace the store never got: the story claim must fail
    with pytest.raises(check_script.ClaimFailed, match=f"story of ticket:{run.ticket} tells traces"):
        run.story()
    with pytest.raises(check_script.ClaimFailed, match="OTLP/HTTP through the load balancer: 200"):
        run.send_http(check_script.otlp_json({"0af7": 1}, run.ticket, check_script.AGENT, time.time_ns()))  # a bad id
    wrong = check_script.Cluster({**os.environ, "FLIGHTREC_API_TOKEN": "not-the-token-0123456789abcdef"}, lb_url=server.url)
    with pytest.raises(check_script.ClaimFailed, match="GET /api/controls via the load balancer: 401"):
        wrong.api(None, "GET", "/api/controls")


def test_deploy_docs_say_how_to_run_it() -> None:
    readme = (CLUSTER / "README.md").read_text()
    for needed in ("python3 deploy/cluster/check.py", "--dry-run", "FLIGHTREC_CLUSTER_SECRET", "FLIGHTREC_API_TOKEN",
                   "haproxy", "docs/capacity.md", "docs/grafana.md"):
        assert needed in readme, f"deploy/cluster/README.md does not mention {needed}"
    for doc in ("README.md", "deploy/README.md"):
        text = (ROOT / doc).read_text()
        assert "docs/capacity.md" in text and "docs/grafana.md" in text and "deploy/cluster" in text, doc
