"""Build templates (issue 6): a folder or tar without a Dockerfile builds
with a detected or chosen template; templates are admin-managed (`template
ls|show|set|rm`) and their base images pass the allow-list."""

from __future__ import annotations

import io
import json
import secrets
import subprocess
import tarfile
import time

import pytest

from tests.conftest import ROOT, SSH_BASE, TEST_IMAGE, ssh_available
from tests.test_build import put_folder, tags

pytestmark = pytest.mark.skipif(not ssh_available(), reason="needs OpenSSH")

ALIAS = "busybox:latest"


@pytest.fixture(scope="module")
def admin(panel):
    return panel.add_user("root", admin=True)


@pytest.fixture(scope="module", autouse=True)
def busybox_alias(panel, docker_client):
    """Tags the test image as `busybox:latest` (the static template's base);
    removes that tag and this module's builds at the end."""
    made_alias = not docker_client.images.list(name="busybox")
    docker_client.images.get(TEST_IMAGE).tag(ALIAS)
    yield
    for image in docker_client.images.list():
        for tag in image.tags:
            if tag.startswith(f"{panel.namespace}/") or (made_alias and tag == ALIAS):
                docker_client.images.remove(tag, noprune=False)


def wait_for(check, seconds: float = 60):
    deadline = time.monotonic() + seconds
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.2)


def test_static_site_without_dockerfile_is_built_and_served(panel, docker_client):
    alice = panel.users["alice"]
    put_folder(panel, "alice", "site", {"index.html": "<h1>hello from the template</h1>\n"})
    result = panel.run(alice, "build", "site", timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Using the static template" in result.stdout
    image = f"{panel.namespace}/alice/site:1"
    assert docker_client.images.get(image).attrs["Config"]["Cmd"] == ["httpd", "-f", "-p", "8080", "-h", "/www"]
    assert panel.run(alice, "run", "--name", "web", image).returncode == 0
    try:
        page = wait_for(lambda: panel.run(alice, "exec", "web", "wget", "-qO-", "http://127.0.0.1:8080/").stdout)
        assert "hello from the template" in page
        assert panel.run(alice, "exec", "web", "id", "-u").stdout.strip() == "65534"
    finally:
        panel.run(alice, "rm", "-f", "web")


def test_template_replaces_a_dockerfile_in_a_stdin_tar(panel, docker_client):
    alice = panel.users["alice"]
    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w") as tar:
        for name, text in (("index.html", b"tar site\n"), ("./Dockerfile", b"FROM sshpanel-test/busybox:latest\nCMD [\"sh\"]\n")):
            info = tarfile.TarInfo(name)
            info.size = len(text)
            tar.addfile(info, io.BytesIO(text))
    result = subprocess.run(
        [*panel.ssh_args(alice), "--", "build", "tarsite", "-", "--template", "static"],
        input=data.getvalue(), capture_output=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr.decode()
    config = docker_client.images.get(f"{panel.namespace}/alice/tarsite:1").attrs["Config"]
    assert config["Cmd"] == ["httpd", "-f", "-p", "8080", "-h", "/www"]


def test_python_template_without_its_base_image_fails_clearly(panel, docker_client):
    alice = panel.users["alice"]
    put_folder(panel, "alice", "py", {"app.py": "print('hi')\n", "requirements.txt": ""})
    for argv in (["build", "py"], ["build", "pyapp", "py", "--template", "python"]):
        result = panel.run(alice, *argv, timeout=300)
        assert result.returncode == 1, argv
        assert "unknown image 'python:3.11-slim'" in result.stderr, result.stderr
    assert tags(docker_client, f"{panel.namespace}/alice/py") == []
    assert tags(docker_client, f"{panel.namespace}/alice/pyapp") == []
    missing = panel.run(alice, "build", "x", "py", "--template", "nope")
    assert missing.returncode == 1 and "no such template" in missing.stderr


def test_users_list_and_show_templates(panel):
    bob = panel.users["bob"]
    listed = [json.loads(line) for line in panel.run(bob, "template", "ls", "--format", "json").stdout.splitlines()]
    assert {"Name": "static", "Source": "built-in", "Base": ALIAS} in listed
    assert {"Name": "python", "Source": "built-in", "Base": "python:3.11-slim"} in listed
    assert "FROM busybox:latest" in panel.run(bob, "template", "show", "static").stdout
    for argv in (["template", "set", "mine", "-"], ["template", "rm", "static"]):
        result = panel.run(bob, *argv, input=f"FROM {TEST_IMAGE}\n")
        assert result.returncode == 1 and "permission denied" in result.stderr, argv


def test_admin_adds_checks_and_removes_a_template(panel, admin, docker_client):
    text = f"FROM {TEST_IMAGE}\nCOPY . /data\nCMD [\"ls\", \"/data\"]\n"
    added = panel.run(admin, "template", "set", "files", "-", input=text)
    assert added.returncode == 0 and "added template files" in added.stdout, added.stderr
    assert (panel.data_dir / "templates" / "files.Dockerfile").read_text() == text
    assert "custom" in panel.run(admin, "template", "ls").stdout
    alice = panel.users["alice"]
    put_folder(panel, "alice", "data", {"notes.txt": "x\n"})
    built = panel.run(alice, "build", "data", "--template", "files", timeout=300)
    assert built.returncode == 0, built.stdout + built.stderr

    for bad, reason in (
        ("hello world\n", "not a Dockerfile"),
        ("RUN true\nFROM busybox\n", "must start with FROM"),
        (f"FROM {panel.namespace}/alice/data:1\n", "not allowed"),
        ("FROM $BASE\n", "variables"),
    ):
        result = panel.run(admin, "template", "set", "bad", "-", input=bad)
        assert result.returncode == 1 and reason in result.stderr, (bad, result.stderr)
    assert panel.run(admin, "image", "allow", "busybox:*").returncode == 0
    try:
        refused = panel.run(admin, "template", "set", "files", "-", input=text)
        assert refused.returncode == 1 and "not allowed" in refused.stderr
        stale = panel.run(alice, "build", "data2", "data", "--template", "files", timeout=300)
        assert stale.returncode == 1 and "not allowed: ask your admin" in stale.stderr
    finally:
        assert panel.run(admin, "image", "allow", "--rm", "busybox:*").returncode == 0

    assert panel.run(admin, "template", "rm", "files").returncode == 0
    assert panel.run(admin, "template", "show", "files").returncode == 1
    builtin = panel.run(admin, "template", "rm", "static")
    assert builtin.returncode == 1 and "built-in" in builtin.stderr


def fake_python_base(docker_client, tag: str) -> None:
    """Builds `tag` from the test image with stand-ins for `python` (prints
    the script it is given, so it fails when the file is unreadable) and
    `pip` (prints its arguments): no real Python base exists on this engine."""
    scripts = {"python": '#!/bin/sh\necho "python runs $1"\nexec cat "$1"\n', "pip": '#!/bin/sh\necho "pip $*"\n'}
    files = {"Dockerfile": f"FROM {TEST_IMAGE}\nCOPY python pip /bin/\n", **scripts}
    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w") as tar:
        for name, text in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(text.encode())
            info.mode = 0o755
            tar.addfile(info, io.BytesIO(text.encode()))
    data.seek(0)
    docker_client.images.build(fileobj=data, custom_context=True, tag=tag, rm=True)


def test_python_template_builds_and_runs_an_app_py_of_mode_0600(panel, admin, docker_client):
    base = f"{panel.namespace}-pybase:3.11-slim"
    fake_python_base(docker_client, base)
    shipped = (ROOT / "sshpanel" / "templates" / "python.Dockerfile").read_text()
    assert "FROM python:3.11-slim\n" in shipped
    alice = panel.users["alice"]
    try:
        override = panel.run(admin, "template", "set", "python", "-", input=shipped.replace("FROM python:3.11-slim", f"FROM {base}"))
        assert override.returncode == 0, override.stderr
        put_folder(panel, "alice", "pyapp", {"app.py": "print('hello from app.py')\n", "requirements.txt": "requests\n"})
        for name in ("app.py", "requirements.txt"):
            (panel.data_dir / "homes" / "alice" / "pyapp" / name).chmod(0o600)
        result = panel.run(alice, "build", "pyapp", timeout=300)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "Using the python template" in result.stdout
        assert "pip install --no-cache-dir -r requirements.txt" in result.stdout
        image = f"{panel.namespace}/alice/pyapp:1"
        assert docker_client.images.get(image).attrs["Config"]["User"] == "65534:65534"
        assert panel.run(alice, "run", "--name", "pyapp", image).returncode == 0
        logs = wait_for(lambda: (lambda out: out if "hello from app.py" in out else "")(panel.run(alice, "logs", "pyapp").stdout))
        assert "python runs app.py" in logs and "print('hello from app.py')" in logs, panel.run(alice, "logs", "pyapp")
    finally:
        panel.run(alice, "rm", "-f", "pyapp")
        panel.run(admin, "template", "rm", "python")
        docker_client.images.remove(base, noprune=False)


def test_static_folder_uploaded_with_scp_is_built_deployed_and_served_to_a_sibling(panel, docker_client, tmp_path):
    """The issue's own scenario: `scp -r` a folder holding only `index.html`,
    `build` (static template detected), `deploy`, then `wget` from another
    container of the same user on the user's network."""
    alice = panel.users["alice"]
    page = f"<h1>page {secrets.token_hex(4)}</h1>"
    (tmp_path / "homepage").mkdir()
    (tmp_path / "homepage" / "index.html").write_text(page + "\n")
    upload = subprocess.run(["scp", *SSH_BASE[1:], "-i", str(alice.key), "-P", str(panel.port), "-r", "homepage",
                             "alice@127.0.0.1:"], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert upload.returncode == 0, upload.stderr
    try:
        built = panel.run(alice, "build", "homepage", timeout=300)
        assert built.returncode == 0, built.stdout + built.stderr
        assert "Using the static template" in built.stdout
        deployed = panel.run(alice, "deploy", "homepage", timeout=120)
        assert deployed.returncode == 0, deployed.stdout + deployed.stderr
        assert panel.run(alice, "run", "-d", "--name", "visitor", TEST_IMAGE, "sleep", "600").returncode == 0
        fetched = wait_for(lambda: panel.run(alice, "exec", "visitor", "wget", "-qO-", "http://homepage:8080/").stdout)
        assert fetched.strip() == page
    finally:
        panel.run(alice, "rm", "-f", "visitor")
        panel.run(alice, "rm", "-f", "homepage")
