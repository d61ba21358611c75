"""Builds cannot be talked around (issue 21), through the real server and
engine: every reported way of naming another user's image or fetching a
URL is refused, base images' `ONBUILD` triggers are checked, the engine
builds the panel's re-written Dockerfile (never a second one from the
context), the build cache is not shared between users, build steps are held
under the pids quota, a compressed context is counted unpacked, and
`.dockerignore` is honoured."""

from __future__ import annotations

import gzip
import http.server
import io
import secrets
import subprocess
import tarfile
import threading
from pathlib import Path

import pytest

from tests.conftest import TEST_IMAGE, remove_images, ssh_available
from tests.test_build import put_folder, tags


pytestmark = pytest.mark.skipif(not ssh_available(), reason="needs OpenSSH")
SECRET = f"bob-secret-{secrets.token_hex(6)}"


@pytest.fixture(scope="module")
def bob_image(panel, docker_client):
    """Bob's build holding `/secret.txt`; removed with the module's images."""
    put_folder(panel, "bob", "bobimg", {"Dockerfile": f"FROM {TEST_IMAGE}\nCOPY secret.txt /secret.txt\n",
                                        "secret.txt": SECRET})
    result = panel.run(panel.users["bob"], "build", "bobimg", timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    yield f"{panel.namespace}/bob/bobimg:1"
    remove_images(docker_client, panel.namespace)


def tar_of(files: dict[str, bytes | str], compress: bool = False) -> bytes:
    """A build context as `tar c` (optionally gzip) would pipe it."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, data in files.items():
            raw = data.encode() if isinstance(data, str) else data
            info = tarfile.TarInfo(name)
            info.size = len(raw)
            tar.addfile(info, io.BytesIO(raw))
    return gzip.compress(buffer.getvalue()) if compress else buffer.getvalue()


def build_tar(panel, user, name: str, data: bytes) -> subprocess.CompletedProcess:
    return subprocess.run([*panel.ssh_args(user), "--", "build", name, "-"], input=data,
                          capture_output=True, timeout=300)


def alice_has_secret(docker_client, repository: str) -> bool:
    """True when any image tagged under `repository` holds bob's file."""
    for tag in tags(docker_client, repository):
        output = docker_client.containers.run(tag, ["sh", "-c", "cat /s /secret.txt 2>/dev/null; true"], remove=True)
        if SECRET.encode() in output:
            return True
    return False


BYPASSES = {
    "empty-continuation-line": "FROM \\\n\n{bob}\n",
    "byte-order-mark": "\ufeffFROM {bob}\n",
    "split-from-flag": "FROM {base}\nCOPY --fr\\\nom={bob} /secret.txt /s\n",
    "comment-in-continuation": "FROM \\\n# a comment\n{bob}\n",
    "escape-directive": "# escape=`\nFROM {base}\nCOPY --from={bob} `\n /secret.txt /s\n",
    "onbuild-in-own-stage": "FROM {base} AS s\nONBUILD COPY --from={bob} /secret.txt /s\nFROM s\n",
    "quoted-flag": "FROM {base}\nCOPY --from=\"{bob}\" /secret.txt /s\n",
    "heredoc": "FROM {base}\nCOPY <<EOF /s\nx\nEOF\n",
    "run-mount": "FROM {base}\nRUN --mount=type=bind,from={bob},target=/m cat /m/secret.txt\n",
}


@pytest.mark.parametrize("kind", sorted(BYPASSES))
def test_another_users_image_cannot_be_named_regression(panel, docker_client, bob_image, kind):
    alice = panel.users["alice"]
    name = f"steal{kind.replace('-', '')}"[:60]
    text = BYPASSES[kind].format(bob=bob_image, base=TEST_IMAGE)
    put_folder(panel, "alice", name, {"Dockerfile": text})
    result = panel.run(alice, "build", name, timeout=300)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Step 1" not in result.stdout
    repository = f"{panel.namespace}/alice/{name}"
    assert tags(docker_client, repository) == [] and not alice_has_secret(docker_client, repository)


def test_a_second_dockerfile_in_the_context_is_never_built_regression(panel, docker_client, bob_image):
    """Members that extraction would make the Dockerfile (a later duplicate,
    `./`, `a/../`, `/`) are read as the Dockerfile, the way extraction
    leaves it, and checked; a lower-case one is dropped: the engine builds
    only the checked text."""
    evil = f"FROM {bob_image}\n".encode()
    for name in ("Dockerfile", "./Dockerfile", "x/../Dockerfile", "dockerfile", "/Dockerfile"):
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as tar:
            for member, data in (("Dockerfile", f"FROM {TEST_IMAGE}\nRUN true\n".encode()), (name, evil)):
                info = tarfile.TarInfo(member)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        result = build_tar(panel, panel.users["alice"], "twofiles", buffer.getvalue())
        output = result.stdout.decode() + result.stderr.decode()
        assert f": FROM {bob_image}" not in output, (name, output)
        assert result.returncode == (0 if name == "dockerfile" else 1), (name, output)
    assert not alice_has_secret(docker_client, f"{panel.namespace}/alice/twofiles")


class _Recorder(http.server.BaseHTTPRequestHandler):
    hits: list[str] = []

    def do_GET(self):  # noqa: N802 (the stdlib's name)
        self.hits.append(self.path)
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"fetched")

    def log_message(self, *args):
        pass


def test_add_of_a_loopback_url_fetches_nothing_regression(panel):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    try:
        for text in (f"ADD http:\\\n//127.0.0.1:{port}/a /a", f"ADD h\\\n# c\nttp://127.0.0.1:{port}/b /b",
                     f"ADD [\"http://127.0.0.1:{port}/c\", \"/c\"]", f"ADD h\"tt\"p://127.0.0.1:{port}/d /d"):
            put_folder(panel, "alice", "ssrf", {"Dockerfile": f"FROM {TEST_IMAGE}\n{text}\n"})
            result = panel.run(panel.users["alice"], "build", "ssrf", timeout=300)
            assert result.returncode == 1, text
    finally:
        server.shutdown()
    assert _Recorder.hits == []


def test_base_image_onbuild_triggers_are_checked_regression(panel, docker_client, bob_image):
    """An allowed base image whose `ONBUILD` names bob's image: the trigger
    runs at alice's FROM, so it is checked like her own instructions."""
    base = f"sshpanel-test/onbuild-{secrets.token_hex(3)}"
    container = docker_client.containers.create(TEST_IMAGE, ["true"])
    try:
        docker_client.api.commit(container.id, repository=base, tag="1",
                                 changes=[f"ONBUILD COPY --from={bob_image} /secret.txt /s"])
    finally:
        container.remove(force=True)
    try:
        put_folder(panel, "alice", "trigger", {"Dockerfile": f"FROM {base}:1\nRUN true\n"})
        result = panel.run(panel.users["alice"], "build", "trigger", timeout=300)
        assert result.returncode == 1, result.stdout + result.stderr
        assert not alice_has_secret(docker_client, f"{panel.namespace}/alice/trigger")
    finally:
        docker_client.images.remove(f"{base}:1", force=True)


def test_the_build_cache_is_not_shared_between_users_regression(panel):
    text = f"FROM {TEST_IMAGE}\nRUN echo {secrets.token_hex(8)} > /made\n"
    put_folder(panel, "alice", "cached", {"Dockerfile": text})
    put_folder(panel, "bob", "cached", {"Dockerfile": text})
    first = panel.run(panel.users["alice"], "build", "cached", timeout=300)
    assert first.returncode == 0, first.stdout + first.stderr
    other = panel.run(panel.users["bob"], "build", "cached", timeout=300)
    assert other.returncode == 0, other.stdout + other.stderr
    assert "Using cache" not in run_step(other.stdout), other.stdout
    again = panel.run(panel.users["alice"], "build", "cached", timeout=300)
    assert "Using cache" in run_step(again.stdout), again.stdout  # her own cache still answers


def run_step(output: str) -> str:
    """The build log of the `RUN` step (from its `Step N/M : RUN` line)."""
    return output[output.index(": RUN "):]


def test_build_steps_are_held_under_the_pids_quota(panel):
    put_folder(panel, "alice", "forks", {"Dockerfile": (
        f"FROM {TEST_IMAGE}\nRUN i=0; while [ $i -lt 400 ]; do sleep 5 & i=$((i+1)); done; "
        "echo running $(ls /proc | grep -c '^[0-9]')\n")})
    result = panel.run(panel.users["alice"], "build", "forks", timeout=300)
    output = result.stdout + result.stderr
    assert "can't fork" in output or "Resource temporarily unavailable" in output, output
    limit = Path(f"/sys/fs/cgroup/pids/{panel.namespace}-build/alice/pids.max")
    if not limit.exists():
        limit = Path(f"/sys/fs/cgroup/{panel.namespace}-build/alice/pids.max")
    assert limit.read_text().strip() == "256"


def test_a_compressed_context_is_counted_unpacked_regression(limited_panel):
    server = limited_panel(SSHPANEL_QUOTA_DISK=str(1024 * 1024))
    bomb = tar_of({"Dockerfile": f"FROM {TEST_IMAGE}\n", "zeros": bytes(8 * 1024 * 1024)}, compress=True)
    assert len(bomb) < 1024 * 1024
    result = build_tar(server, server.users["alice"], "bomb", bomb)
    assert result.returncode == 1
    assert b"unpacks to more than your disk quota" in result.stderr, result.stderr


def test_dockerignore_leaves_files_out_of_the_image(panel, docker_client):
    put_folder(panel, "alice", "ignoring", {
        "Dockerfile": f"FROM {TEST_IMAGE}\nCOPY . /app/\n", ".dockerignore": "# local only\nsecret.txt\n*.log\n",
        "secret.txt": "do not ship", "debug.log": "x", "app.txt": "shipped",
    })
    result = panel.run(panel.users["alice"], "build", "ignoring", timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    listing = docker_client.containers.run(f"{panel.namespace}/alice/ignoring:1", ["ls", "-a", "/app"], remove=True)
    names = listing.decode().split()
    assert "app.txt" in names and "secret.txt" not in names and "debug.log" not in names
