"""Compose projects over SSH (issue 22): `compose up|ps|logs|stop|start|
restart|down|config|ls` through the real server and the real engine, the
Compose Specification read strictly (forbidden keys refused with their path,
nothing created), all or nothing within the quota, and only changed
services recreated."""

from __future__ import annotations

import json

import pytest

from sshpanel.access.compose import parse_project
from sshpanel.access.compose_yaml import substitute
from sshpanel.errors import InvalidValue
from tests.conftest import TEST_IMAGE, ssh_available, wait_for
from tests.hardening import assert_hardened, engine_defaults
from tests.test_forwarding import _stdio

pytestmark = pytest.mark.skipif(not ssh_available(), reason="needs OpenSSH")

PROJECT = f"""
name: demo
services:
  db:
    image: {TEST_IMAGE}
    command: ["sh", "-c", "sleep 2; echo ready > /data/state; exec sleep 1000"]
    volumes: [data:/data]
    healthcheck:
      test: ["CMD", "test", "-f", "/data/state"]
      interval: 1s
      retries: 30
    cpus: 0.25
    mem_limit: 32m
    stop_grace_period: 1s
  worker:
    image: {TEST_IMAGE}
    command: ["sh", "-c", "test -f /data/state && echo worker ${{MODE:-v1}} db-ready; exec sleep 1000"]
    volumes: ["data:/data:ro"]
    depends_on:
      db: {{condition: service_healthy}}
    cpus: 0.25
    mem_limit: 32m
  web:
    image: {TEST_IMAGE}
    command: ["sh", "-c", "nslookup db >/dev/null && echo web resolved db; exec sleep 1000"]
    depends_on: [db]
    labels: {{app.tier: front}}
    deploy: {{resources: {{limits: {{memory: 32m, cpus: "0.25", pids: 50}}}}}}
volumes:
  data:
"""


def up(panel, user, text: str, *extra: str):
    return panel.run(user, "compose", "up", "-d", "-f", "-", *extra, input=text, timeout=180)


def ps(panel, user, project: str = "demo") -> dict[str, dict]:
    out = panel.run(user, "compose", "-p", project, "ps", "-a", "--format", "json")
    assert out.returncode == 0, out.stderr
    return {item["Service"]: item for item in map(json.loads, out.stdout.splitlines())}


def owned(docker_client, namespace: str) -> tuple[int, int, int]:
    """(containers, volumes, networks) the test namespace has on the engine."""
    label = f"io.{namespace}.owner"
    return (len(docker_client.containers.list(all=True, filters={"label": label})),
            len(docker_client.volumes.list(filters={"label": label})),
            len(docker_client.networks.list(filters={"label": label})))


def test_three_services_start_in_order_and_an_edit_recreates_only_one(panel, docker_client):
    alice = panel.users["alice"]
    result = up(panel, alice, PROJECT)
    assert result.returncode == 0, result.stderr + panel.log()
    assert "Container demo-web-1 Started" in result.stderr
    services = ps(panel, alice)
    assert set(services) == {"db", "worker", "web"}
    assert {item["Name"] for item in services.values()} == {"demo-db-1", "demo-worker-1", "demo-web-1"}
    assert all(item["State"] == "running" and item["Project"] == "demo" for item in services.values())
    db = docker_client.containers.get(f"{panel.namespace}.alice.demo-db-1")
    labels = db.attrs["Config"]["Labels"]
    assert labels["com.docker.compose.project"] == "demo" and labels["com.docker.compose.service"] == "db"
    assert labels[f"io.{panel.namespace}.owner"] == "alice" and len(labels["com.docker.compose.config-hash"]) == 64
    assert db.attrs["State"]["Health"]["Status"] == "healthy"
    assert db.attrs["Config"]["StopTimeout"] == 1
    assert [m["Name"] for m in db.attrs["Mounts"]] == [f"{panel.namespace}.alice.demo_data"]
    web = docker_client.containers.get(f"{panel.namespace}.alice.demo-web-1")
    assert web.attrs["HostConfig"]["PidsLimit"] == 50 and web.attrs["Config"]["Labels"]["app.tier"] == "front"
    defaults = engine_defaults(docker_client, TEST_IMAGE)
    for service in services:
        container = docker_client.containers.get(f"{panel.namespace}.alice.demo-{service}-1")
        assert_hardened(container.attrs, panel.namespace, "alice", defaults,
                        network=f"{panel.namespace}.alice.demo_default")
    logs = wait_for(lambda: (out := panel.run(alice, "compose", "-p", "demo", "logs").stdout)
                    and "web resolved db" in out and out, what="web's log")
    assert "web-1     | web resolved db" in logs and "worker-1  | worker v1 db-ready" in logs
    only_web = panel.run(alice, "compose", "-p", "demo", "logs", "--tail", "1", "web").stdout
    assert only_web == "web-1  | web resolved db\n"
    listed = json.loads(panel.run(alice, "compose", "ls", "--format", "json").stdout)
    assert listed == [{"Name": "demo", "Status": "running(3)", "ConfigFiles": "-"}]

    before = {name: item["ID"] for name, item in services.items()}
    edited = up(panel, alice, PROJECT.replace("${MODE:-v1}", "v2"))
    assert edited.returncode == 0, edited.stderr
    after = {name: item["ID"] for name, item in ps(panel, alice).items()}
    assert after["db"] == before["db"] and after["web"] == before["web"]
    assert after["worker"] != before["worker"]
    again = up(panel, alice, PROJECT.replace("${MODE:-v1}", "v2"))
    assert again.returncode == 0 and {n: i["ID"] for n, i in ps(panel, alice).items()} == after

    history = panel.run(alice, "history", "--format", "json").stdout
    deploys = [e for e in map(json.loads, history.splitlines()) if e["Kind"] == "deploy"]
    assert sum(1 for e in deploys if e["Container"] == "demo-worker-1" and e["OK"]) == 2

    # A broken edit fails half-way: the old worker is put back, running, same ID.
    broken = up(panel, alice, PROJECT.replace("${MODE:-v1}", "v2").replace(
        '["sh", "-c", "test -f', '["/no/such/binary", "-c", "test -f'))
    assert broken.returncode == 1 and "putting the project back" in broken.stderr
    restored = ps(panel, alice)
    assert {n: i["ID"] for n, i in restored.items()} == after
    assert restored["worker"]["State"] == "running"
    history = panel.run(alice, "history", "--format", "json").stdout
    assert any(e["Kind"] == "deploy" and not e["OK"] for e in map(json.loads, history.splitlines()))

    # Stop and start by service, then down -v removes containers, network and volumes.
    assert panel.run(alice, "compose", "-p", "demo", "stop", "web").returncode == 0
    assert ps(panel, alice)["web"]["State"] == "exited"
    assert panel.run(alice, "compose", "-p", "demo", "start").returncode == 0
    assert ps(panel, alice)["web"]["State"] == "running"
    down = panel.run(alice, "compose", "-p", "demo", "down", "-v")
    assert down.returncode == 0, down.stderr
    assert "Volume demo_data Removed" in down.stderr and "Network demo_default Removed" in down.stderr
    assert ps(panel, alice) == {}
    assert owned(docker_client, panel.namespace)[0] == 0
    assert not docker_client.volumes.list(filters={"name": f"{panel.namespace}.alice.demo_data"})
    assert not [n for n in docker_client.networks.list() if n.name == f"{panel.namespace}.alice.demo_default"]


def test_another_users_project_is_invisible_under_its_name_regression(panel, docker_client):
    alice, bob = panel.users["alice"], panel.users["bob"]
    text = PROJECT.replace("name: demo", "name: secret")
    assert up(panel, alice, text).returncode == 0
    ids = {name: item["ID"] for name, item in ps(panel, alice, "secret").items()}
    assert ps(panel, bob, "secret") == {}
    assert json.loads(panel.run(bob, "compose", "ls", "--format", "json").stdout) == []
    for verb in ("stop", "down", "restart", "logs"):
        denied = panel.run(bob, "compose", "-p", "secret", verb)
        assert denied.returncode == 1 and "no such project: secret" in denied.stderr, verb
    assert {name: item["ID"] for name, item in ps(panel, alice, "secret").items()} == ids
    assert all(item["State"] == "running" for item in ps(panel, alice, "secret").values())
    assert panel.run(alice, "compose", "-p", "secret", "down", "-v").returncode == 0


def test_a_project_over_the_quota_creates_nothing(panel, docker_client):
    alice = panel.users["alice"]
    before = owned(docker_client, panel.namespace)
    big = PROJECT.replace("mem_limit: 32m", "mem_limit: 1g")
    refused = up(panel, alice, big)
    assert refused.returncode == 1
    assert "memory quota exceeded" in refused.stderr
    assert owned(docker_client, panel.namespace) == before
    assert ps(panel, alice) == {}


def test_a_first_up_that_fails_half_way_leaves_nothing(panel, docker_client):
    alice = panel.users["alice"]
    before = owned(docker_client, panel.namespace)
    broken = PROJECT.replace("name: demo", "name: halfway").replace(
        '["sh", "-c", "nslookup', '["/no/such/binary", "-c", "nslookup')
    failed = up(panel, alice, broken)
    assert failed.returncode == 1 and "putting the project back" in failed.stderr
    assert "Container halfway-db-1 Started" in failed.stderr  # it got that far
    assert owned(docker_client, panel.namespace) == before
    assert ps(panel, alice, "halfway") == {}
    history = [json.loads(line) for line in panel.run(alice, "history", "--format", "json").stdout.splitlines()]
    failures = {e["Detail"].split(" ")[0] for e in history if e["Kind"] == "deploy" and not e["OK"]}
    assert {"halfway/db", "halfway/worker", "halfway/web"} <= failures


def test_published_ports_are_checked_for_the_whole_project(panel, docker_client):
    admin = panel.users.get("ada") or panel.add_user("ada", admin=True)
    carol = panel.users.get("carol") or panel.add_user("carol")
    assert panel.run(admin, "user", "set-quota", "carol", "--ports", "20400-20409").returncode == 0
    service = "  {name}:\n    image: " + TEST_IMAGE + "\n    command: [sleep, '1000']\n    cpus: 0.25\n" \
        "    mem_limit: 32m\n    ports: ['{port}']\n"

    def project(*ports: str) -> str:
        return "name: pub\nservices:\n" + "".join(
            service.format(name=f"s{index}", port=port) for index, port in enumerate(ports))

    before = owned(docker_client, panel.namespace)
    twice = up(panel, carol, project("20401:80", "20401:81"))
    assert twice.returncode == 1 and "host port 20401/tcp is already published by your service s0" in twice.stderr
    outside = up(panel, carol, project("20401:80", "30000:80"))
    assert outside.returncode == 1 and "host port 30000 is outside your range 20400-20409" in outside.stderr
    assert owned(docker_client, panel.namespace) == before
    fine = up(panel, carol, project("20401:80", "20402:80/udp"))
    assert fine.returncode == 0, fine.stderr
    publishers = {name: item["Publishers"] for name, item in ps(panel, carol, "pub").items()}
    assert publishers == {
        "s0": [{"URL": "127.0.0.1", "TargetPort": 80, "PublishedPort": 20401, "Protocol": "tcp"}],
        "s1": [{"URL": "127.0.0.1", "TargetPort": 80, "PublishedPort": 20402, "Protocol": "udp"}],
    }
    bound = docker_client.containers.get(f"{panel.namespace}.carol.pub-s0-1").attrs["HostConfig"]["PortBindings"]
    assert bound == {"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": "20401"}]}
    # An unchanged up keeps its own ports: they are not "already published".
    assert up(panel, carol, project("20401:80", "20402:80/udp")).returncode == 0
    assert panel.run(carol, "compose", "-p", "pub", "down").returncode == 0


def test_ssh_forwarding_reaches_a_project_container_on_its_network(panel):
    """`ssh -W PROJECT-SERVICE-1:80`: the container is on the project's
    network, not the user's, and the forward finds it there."""
    alice = panel.users["alice"]
    text = (f"name: fwd\nservices:\n  site:\n    image: {TEST_IMAGE}\n    cpus: 0.25\n    mem_limit: 32m\n"
            "    command: [sh, -c, 'mkdir -p /tmp/www && echo project-site > /tmp/www/index.html "
            "&& exec httpd -f -p 80 -h /tmp/www']\n")
    assert up(panel, alice, text).returncode == 0
    try:
        wait_for(lambda: b"project-site" in _stdio(panel, alice, "fwd-site-1:80").stdout, 60, "the project's httpd")
    finally:
        panel.run(alice, "compose", "-p", "fwd", "down")


FORBIDDEN = [
    ("privileged: true", "services.app.privileged"),
    ("cap_add: [SYS_ADMIN]", "services.app.cap_add"),
    ("cap_drop: [ALL]", "services.app.cap_drop"),
    ("devices: ['/dev/sda:/dev/sda']", "services.app.devices"),
    ("network_mode: host", "services.app.network_mode"),
    ("pid: host", "services.app.pid"),
    ("ipc: host", "services.app.ipc"),
    ("uts: host", "services.app.uts"),
    ("userns_mode: host", "services.app.userns_mode"),
    ("security_opt: ['seccomp:unconfined']", "services.app.security_opt"),
    ("sysctls: {net.ipv4.ip_forward: 1}", "services.app.sysctls"),
    ("volumes: ['/:/host']", "services.app.volumes[0]"),
    ("volumes: ['./site:/srv']", "services.app.volumes[0]"),
    ("volumes: ['/var/run/docker.sock:/var/run/docker.sock']", "services.app.volumes[0]"),
    ("volumes: [{type: bind, source: /etc, target: /x}]", "services.app.volumes[0].type"),
    ("volumes: [{type: tmpfs, target: /x}]", "services.app.volumes[0].type"),
    ("volumes_from: [other]", "services.app.volumes_from"),
    ("extra_hosts: ['host.docker.internal:host-gateway']", "services.app.extra_hosts"),
    ("cgroup_parent: /", "services.app.cgroup_parent"),
    ("runtime: runc", "services.app.runtime"),
    ("ulimits: {nofile: 1048576}", "services.app.ulimits"),
    ("networks: [outside]", "services.app.networks"),
    ("container_name: victim", "services.app.container_name"),
    ("labels: {io.NS.owner: bob}", "services.app.labels.io.NS.owner"),
    ("labels: {com.docker.compose.project: other}", "services.app.labels.com.docker.compose.project"),
    ("ports: ['0.0.0.0:8080:80']", "services.app.ports[0]"),
    ("ports: ['8000-8010:80']", "services.app.ports[0]"),
    ("ports: [{target: 80, published: 8080, host_ip: 0.0.0.0}]", "services.app.ports[0].host_ip"),
    ("deploy: {resources: {reservations: {devices: [{capabilities: [gpu]}]}}}",
     "services.app.deploy.resources.reservations"),
    ("deploy: {mode: global}", "services.app.deploy.mode"),
    ("shm_size: 8g", "services.app.shm_size"),
    ("oom_kill_disable: true", "services.app.oom_kill_disable"),
    ("group_add: [docker]", "services.app.group_add"),
    ("dns: [1.1.1.1]", "services.app.dns"),
    ("mac_address: 02:42:ac:11:00:02", "services.app.mac_address"),
    ("tmpfs: [/run]", "services.app.tmpfs"),
    ("storage_opt: {size: 1T}", "services.app.storage_opt"),
    ("env_file: ../../../../etc/passwd", "services.app.env_file"),
    ("env_file: /etc/passwd", "services.app.env_file"),
]
TOP_FORBIDDEN = [
    ("networks:\n  outside: {driver: host}\n", "networks"),
    ("volumes:\n  data: {driver_opts: {type: none, o: bind, device: /etc}}\n", "volumes.data.driver_opts"),
    ("volumes:\n  data: {external: true}\n", "volumes.data.external"),
    ("secrets:\n  s: {file: /etc/shadow}\n", "secrets"),
    ("configs:\n  c: {file: /etc/shadow}\n", "configs"),
    ("include: [/etc/other.yaml]\n", "include"),
]


@pytest.mark.parametrize("line,path", FORBIDDEN, ids=[path for _line, path in FORBIDDEN])
def test_forbidden_service_keys_are_refused_with_their_path(panel, docker_client, line, path):
    alice = panel.users["alice"]
    line, path = line.replace("NS", panel.namespace), path.replace("NS", panel.namespace)
    before = owned(docker_client, panel.namespace)
    text = f"name: bad\nservices:\n  app:\n    image: {TEST_IMAGE}\n    {line}\n"
    refused = up(panel, alice, text)
    assert refused.returncode == 1, refused.stdout
    assert f"Error: {path}" in refused.stderr, refused.stderr
    assert owned(docker_client, panel.namespace) == before
    assert ps(panel, alice, "bad") == {}


@pytest.mark.parametrize("block,path", TOP_FORBIDDEN, ids=[path for _block, path in TOP_FORBIDDEN])
def test_forbidden_top_level_keys_are_refused_with_their_path(panel, docker_client, block, path):
    alice = panel.users["alice"]
    before = owned(docker_client, panel.namespace)
    text = f"name: bad\nservices:\n  app:\n    image: {TEST_IMAGE}\n{block}"
    refused = up(panel, alice, text)
    assert refused.returncode == 1 and f"Error: {path}" in refused.stderr, refused.stderr
    assert owned(docker_client, panel.namespace) == before


def test_yaml_tags_and_alias_bombs_are_refused(panel):
    alice = panel.users["alice"]
    tagged = up(panel, alice, "services:\n  a: !!python/object/apply:os.system ['id']\n")
    assert tagged.returncode == 1 and "YAML tags are not allowed" in tagged.stderr
    levels = ["a: &a [x, x, x, x, x, x, x, x, x, x]"]
    levels += [f"{c}: &{c} [{', '.join(['*' + p] * 10)}]" for p, c in zip("abcdefg", "bcdefgh")]
    bomb = up(panel, alice, "x-bomb:\n  " + "\n  ".join(levels) + f"\nservices:\n  a: {{image: {TEST_IMAGE}}}\n")
    assert bomb.returncode == 1 and "expands to more than" in bomb.stderr


def test_config_prints_the_project_with_env_file_and_dotenv(panel):
    alice = panel.users["alice"]
    home = panel.data_dir / "homes" / "alice" / "shop"
    home.mkdir(parents=True, exist_ok=True)
    (home / ".env").write_text("TAG=from-dotenv\n")
    (home / "web.env").write_text("COLOR=blue\n# comment\nexport SIZE='3'\n")
    (home / "compose.yaml").write_text(
        f"services:\n  web:\n    image: {TEST_IMAGE}\n    env_file: web.env\n"
        "    environment:\n      - LABEL=${TAG}\n      - PRICE=$$5\n")
    shown = panel.run(alice, "compose", "-f", "shop/compose.yaml", "config")
    assert shown.returncode == 0, shown.stderr
    assert "name: shop" in shown.stdout and "container_name: shop-web-1" in shown.stdout
    for expected in ("COLOR: blue", "SIZE: '3'", "LABEL: from-dotenv", "PRICE: $5"):
        assert expected in shown.stdout, shown.stdout
    by_project = panel.run(alice, "compose", "-p", "shop", "config")
    assert by_project.returncode == 0 and "container_name: shop-web-1" in by_project.stdout
    (home / "link.env").symlink_to("/etc/passwd")
    (home / "compose.yaml").write_text(f"services:\n  web:\n    image: {TEST_IMAGE}\n    env_file: link.env\n")
    linked = panel.run(alice, "compose", "-p", "shop", "config")
    assert linked.returncode == 1 and "services.web.env_file" in linked.stderr


def test_a_service_built_from_a_context_in_the_home(panel, docker_client):
    alice = panel.users["alice"]
    folder = panel.data_dir / "homes" / "alice" / "buildy"
    (folder / "app").mkdir(parents=True, exist_ok=True)
    (folder / "app" / "Dockerfile").write_text(
        f"FROM {TEST_IMAGE}\nCOPY msg /msg\nCMD [\"sh\", \"-c\", \"cat /msg; exec sleep 1000\"]\n")
    (folder / "app" / "msg").write_text("first build\n")
    (folder / "compose.yaml").write_text(
        "services:\n  app:\n    build: app\n    cpus: 0.25\n    mem_limit: 32m\n")
    try:
        result = panel.run(alice, "compose", "-p", "buildy", "up", "-d", timeout=240)
        assert result.returncode == 0, result.stderr
        assert "Service app Built" in result.stderr
        assert docker_client.images.get(f"{panel.namespace}/alice/buildy-app:1")
        wait_for(lambda: "app-1  | first build" in panel.run(alice, "compose", "-p", "buildy", "logs").stdout,
                 what="the built service's log")
        first = ps(panel, alice, "buildy")["app"]["ID"]
        (folder / "app" / "msg").write_text("second build\n")
        same = panel.run(alice, "compose", "-p", "buildy", "up", "-d", timeout=240)
        assert same.returncode == 0 and "Building" not in same.stderr
        assert ps(panel, alice, "buildy")["app"]["ID"] == first
        rebuilt = panel.run(alice, "compose", "-p", "buildy", "up", "-d", "--build", timeout=240)
        assert rebuilt.returncode == 0, rebuilt.stderr
        assert ps(panel, alice, "buildy")["app"]["ID"] != first
        wait_for(lambda: "second build" in panel.run(alice, "compose", "-p", "buildy", "logs").stdout,
                 what="the rebuilt service's log")
    finally:
        panel.run(alice, "compose", "-p", "buildy", "down", "-v")
        for image in docker_client.images.list(name=f"{panel.namespace}/alice/buildy-app"):
            docker_client.images.remove(image.id, force=True)


@pytest.mark.parametrize("text,expected", [
    ("${SET}", "yes"), ("$SET", "yes"), ("${UNSET:-d}", "d"), ("${EMPTY:-d}", "d"), ("${EMPTY-d}", ""),
    ("${UNSET-${SET}}", "yes"), ("${SET:+alt}", "alt"), ("${EMPTY+alt}", "alt"), ("${EMPTY:+alt}", ""),
    ("$$SET", "$SET"), ("${UNSET}", ""), ("a${SET}b$SET.c", "ayesbyes.c"),
])
def test_interpolation_follows_the_compose_specification(text, expected):
    assert substitute(text, {"SET": "yes", "EMPTY": ""}, "x") == expected


@pytest.mark.parametrize("text,message", [
    ("${NEED:?set NEED}", "x: required variable NEED is missing a value: set NEED"),
    ("${EMPTY:?}", "x: required variable EMPTY is missing a value"), ("cost $ 5", "x: invalid interpolation"),
    ("${OPEN", "x: invalid interpolation"), ("${1X}", "x: invalid interpolation"),
])
def test_bad_interpolation_is_refused_with_the_path(text, message):
    with pytest.raises(InvalidValue) as refused:
        substitute(text, {"EMPTY": ""}, "x")
    assert refused.value.message.startswith(message)


# Compose files modelled on well-known public examples (written for these tests).

WORDPRESS = """
services:
  db:
    image: mariadb:10.6
    command: '--default-authentication-plugin=mysql_native_password'
    volumes: [db_data:/var/lib/mysql]
    restart: always
    environment:
      - MYSQL_ROOT_PASSWORD=somewordpress
      - MYSQL_DATABASE=wordpress
  wordpress:
    image: wordpress:latest
    ports: ["8080:80"]
    restart: always
    depends_on: [db]
    environment:
      WORDPRESS_DB_HOST: db
      WORDPRESS_DB_NAME: wordpress
volumes:
  db_data:
"""
FLASK_REDIS = """
services:
  web:
    build: .
    ports: ["8000:5000"]
    depends_on:
      redis: {condition: service_healthy}
  redis:
    image: redis:alpine
    healthcheck: {test: ["CMD", "redis-cli", "ping"], interval: 5s, timeout: 3s, retries: 5}
"""
TRAEFIK = """
services:
  reverse-proxy:
    image: traefik:v3.0
    command: --api.insecure=true --providers.docker
    ports: ["80:80", "8080:8080"]
    volumes:
      - /var/run/docker.sock:/var/run/docker.sock
"""
PROMETHEUS_NODE_EXPORTER = """
services:
  node-exporter:
    image: prom/node-exporter
    pid: host
    network_mode: host
"""
NGINX_STATIC = """
services:
  web:
    image: nginx:alpine
    ports: ["8081:80"]
    volumes: ["./html:/usr/share/nginx/html:ro"]
"""
GITLAB_RUNNER = """
services:
  runner:
    image: gitlab/gitlab-runner
    privileged: true
"""
REACT_EXPRESS_MONGO = """
services:
  backend:
    image: node:20
    networks: [express-mongo]
networks:
  express-mongo: {}
"""


@pytest.mark.parametrize("text,refused_at", [
    (WORDPRESS, None),
    (FLASK_REDIS, None),
    (TRAEFIK, "services.reverse-proxy.volumes[0]"),
    (PROMETHEUS_NODE_EXPORTER, "services.node-exporter.pid"),
    (NGINX_STATIC, "services.web.volumes[0]"),
    (GITLAB_RUNNER, "services.runner.privileged"),
    (REACT_EXPRESS_MONGO, "networks"),
], ids=["wordpress", "flask-redis", "traefik", "node-exporter", "nginx-static", "gitlab-runner", "react-express"])
def test_public_examples_parse_and_are_accepted_or_refused_with_the_path(text, refused_at):
    def parse():
        return parse_project(text, "example", {}, lambda path, what: "", (256 << 20, 0.5), ("io.ns.",))

    if refused_at is None:
        project = parse()
        assert [service.name for service in project.services][-1] in ("wordpress", "web")
        assert all(service.spec.options.project == "example" for service in project.services)
        return
    with pytest.raises(InvalidValue) as refused:
        parse()
    assert refused.value.message.startswith(refused_at + ":"), refused.value.message
