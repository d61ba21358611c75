"""SSH user certificates (issue 24 item 4), end to end: certificates made by
`ssh-keygen -s` from a CA the panel trusts (`SSHPANEL_USER_CA_KEYS`), offered
by the real OpenSSH client (and paramiko) to a real panel. Each rule has its
test, among them the regressions of other servers' certificate bugs: a
`source-address` that excludes the client (Go x/crypto
GHSA-x527-x647-q7gg), a revoked CA and a revoked certificate (Go
CVE-2026-42508), an expired, a not yet valid, a host certificate, a
principal that is not the login name, an unknown CA, an unknown critical
option and an empty principals list."""

from __future__ import annotations

import asyncio
import json
import re
import secrets
import subprocess
import sys
from pathlib import Path

import asyncssh
import pytest

from tests.conftest import SSH_BASE, Panel, remove_namespace, ssh_available, start_panel, stop_panel, wait_for

pytestmark = pytest.mark.skipif(not ssh_available(), reason="needs OpenSSH")


def keygen(path: Path) -> Path:
    """Makes an ed25519 key pair at `path` (and `path.pub`)."""
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", path.name, "-f", str(path)], check=True)
    return path


def certify(ca: Path, key: Path, *options: str, key_id: str = "alice@laptop") -> Path:
    """Signs `key.pub` with the CA key `ca` (`ssh-keygen -s`); returns the
    certificate's path, `key-cert.pub`, which `ssh -i key` offers."""
    subprocess.run(["ssh-keygen", "-q", "-s", str(ca), "-I", key_id, *options, f"{key}.pub"], check=True,
                   capture_output=True)
    return Path(f"{key}-cert.pub")


class Authority:
    """The trusted CAs `ca` and `second_ca`, an untrusted one, and fresh
    client keys."""

    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        self.ca = keygen(folder / "ca")
        self.second_ca = keygen(folder / "second-ca")
        self.other_ca = keygen(folder / "other-ca")
        self.ca_keys = folder / "user_ca_keys"
        self.ca_keys.write_text(f"# the team's CAs\n\n{(folder / 'ca.pub').read_text()}"
                                f"{(folder / 'second-ca.pub').read_text()}")
        self.revoked = folder / "revoked_keys"
        self.revoked.write_text("# revoked keys, one per line\n")

    def key(self, *options: str, ca: Path | None = None, key_id: str = "alice@laptop") -> Path:
        """A new client key with a certificate of `ca` (the trusted one by default)."""
        key = keygen(self.folder / f"id-{secrets.token_hex(4)}")
        certify(ca or self.ca, key, *options, key_id=key_id)
        return key

    def revoke(self, pub: Path) -> None:
        """Adds a public key or certificate line to the revocation list."""
        with open(self.revoked, "a") as file:
            file.write(pub.read_text())

    def env(self, **extra: str) -> dict[str, str]:
        return {"SSHPANEL_USER_CA_KEYS": str(self.ca_keys), "SSHPANEL_REVOKED_KEYS": str(self.revoked), **extra}


def login(panel: Panel, user: str, key: Path, command: str = "whoami", *ssh: str) -> subprocess.CompletedProcess:
    """Runs one command as `user` with `key` and its certificate (OpenSSH
    offers `key-cert.pub` next to `-i key`, then the key itself)."""
    return subprocess.run([*SSH_BASE, *ssh, "-i", str(key), "-p", str(panel.port), f"{user}@127.0.0.1", "--", command],
                          capture_output=True, text=True, timeout=60)


def refused(panel: Panel, user: str, key: Path) -> bool:
    """True when OpenSSH cannot log in as `user` with `key` (exit 255, no
    output). Tried from an address of its own in 127.0.0.0/8, so that the
    refusals of this module never add up to a penalty of 127.0.0.1
    (`PerSourcePenalties`: 10 failures in a row)."""
    done = login(panel, user, key, "whoami", "-b", f"127.{secrets.randbelow(250) + 1}.{secrets.randbelow(250) + 1}.9")
    return done.returncode == 255 and done.stdout == ""


def asyncssh_refused(panel: Panel, user: str, key: Path) -> bool:
    """True when asyncssh's client, offering exactly `key` with its
    certificate, cannot log in as `user` (OpenSSH's own client does not
    even offer some certificates, e.g. a host certificate for a user
    login). From an address of its own, as `refused`."""
    source = f"127.{secrets.randbelow(250) + 1}.{secrets.randbelow(250) + 1}.8"

    async def attempt() -> bool:
        keypair = asyncssh.load_keypairs([(str(key), f"{key}-cert.pub")])
        try:
            async with asyncssh.connect("127.0.0.1", panel.port, username=user, client_keys=keypair,
                                        known_hosts=None, agent_path=None, local_addr=(source, 0),
                                        preferred_auth="publickey") as conn:
                await conn.run("whoami", check=True)
        except asyncssh.PermissionDenied:
            return True
        return False

    return asyncio.run(attempt())


@pytest.fixture(scope="module")
def authority(tmp_path_factory):
    return Authority(tmp_path_factory.mktemp("ca"))


@pytest.fixture(scope="module")
def ca_panel(tmp_path_factory, docker_client, authority):
    """A panel trusting `authority.ca`, with users alice, bob and the admin root."""
    namespace = f"sptest{secrets.token_hex(3)}"
    server = start_panel(tmp_path_factory.mktemp("panel"), namespace, authority.env())
    server.add_user("alice")
    server.add_user("bob")
    server.add_user("root", admin=True)
    yield server
    stop_panel(server)
    remove_namespace(docker_client, namespace)


def audit(panel: Panel, action: str) -> list[dict]:
    done = panel.run(panel.users["root"], "audit", "--action", action, "--format", "json")
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines() if line.strip()]


def test_a_certificate_of_the_trusted_ca_logs_in_and_the_audit_log_records_its_key_id_and_serial(
        ca_panel, authority):
    key = authority.key("-n", "alice,alice-admin", "-z", "4242", key_id="alice@laptop")
    done = login(ca_panel, "alice", key)
    assert done.returncode == 0, (done.stderr, ca_panel.log()[-2000:])
    assert done.stdout.splitlines()[0] == "alice (user)"
    assert 'cert   certificate key ID "alice@laptop" serial 4242 CA SHA256:' in done.stdout
    entries = wait_for(lambda: [e for e in audit(ca_panel, "login") if "serial 4242" in e["Target"]],
                       what="the login in the audit log")
    assert entries[0]["User"] == "alice" and entries[0]["Outcome"] == "ok"
    assert entries[0]["Target"].startswith('certificate key ID "alice@laptop" serial 4242 CA SHA256:')
    assert "key ID" in ca_panel.log() and "serial 4242" in ca_panel.log()
    assert not asyncssh_refused(ca_panel, "alice", key)  # the client the refusal tests also use


def test_a_key_id_with_control_characters_is_escaped_in_the_audit_log(ca_panel, authority):
    key = authority.key("-n", "alice", "-z", "77", key_id="evil\x1b]0;title\x07")
    done = login(ca_panel, "alice", key)
    assert done.returncode == 0, done.stderr
    assert "\x1b" not in done.stdout
    entry = wait_for(lambda: [e for e in audit(ca_panel, "login") if "serial 77 " in e["Target"]],
                     what="the login in the audit log")[0]
    assert "\x1b" not in entry["Target"] and "\\x1b" in entry["Target"]


def test_paramiko_logs_in_with_a_certificate(ca_panel, authority):
    paramiko = pytest.importorskip("paramiko")
    key = authority.key("-n", "bob")
    client = paramiko.SSHClient()
    client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
    # paramiko loads `key-cert.pub` next to the key file and offers the certificate.
    client.connect("127.0.0.1", port=ca_panel.port, username="bob", key_filename=str(key), look_for_keys=False,
                   allow_agent=False, timeout=30)
    try:
        _, out, _ = client.exec_command("whoami", timeout=60)
        text = out.read().decode()
        assert out.channel.recv_exit_status() == 0
    finally:
        client.close()
    assert text.startswith("bob (user)") and "cert   certificate key ID" in text


def test_source_address_that_excludes_the_client_is_refused_regression(ca_panel, authority):
    """Go x/crypto GHSA-x527-x647-q7gg: `source-address` must be enforced."""
    outside = authority.key("-n", "alice", "-O", "source-address=10.9.8.0/24,192.0.2.1", key_id="outside")
    assert refused(ca_panel, "alice", outside)
    assert re.search(r'key ID "outside" .* refused .*: source address not allowed', ca_panel.log())
    inside = authority.key("-n", "alice", "-O", "source-address=10.9.8.0/24,127.0.0.1/32")
    assert login(ca_panel, "alice", inside).returncode == 0


def test_a_revoked_ca_and_a_revoked_certificate_are_refused_regression(ca_panel, authority):
    """Go CVE-2026-42508: the revocation list holds for certificates, and is
    read again while the panel runs."""
    key = authority.key("-n", "alice")
    assert login(ca_panel, "alice", key).returncode == 0
    authority.revoke(Path(f"{key}-cert.pub"))  # a certificate line stands for its key
    assert refused(ca_panel, "alice", key)
    assert "revoked certificate" in ca_panel.log()
    assert login(ca_panel, "alice", authority.key("-n", "alice")).returncode == 0
    second = authority.key("-n", "alice", ca=authority.second_ca)
    assert login(ca_panel, "alice", second).returncode == 0
    authority.revoke(authority.folder / "second-ca.pub")
    assert refused(ca_panel, "alice", second)
    assert refused(ca_panel, "alice", authority.key("-n", "alice", ca=authority.second_ca))
    assert "revoked CA" in ca_panel.log()
    assert login(ca_panel, "alice", authority.key("-n", "alice")).returncode == 0


def test_a_revoked_plain_key_is_refused(ca_panel, authority):
    bob = ca_panel.users["bob"]
    assert ca_panel.run(bob, "whoami").returncode == 0
    authority.revoke(bob.pub)
    try:
        assert refused(ca_panel, "bob", bob.key)
        assert "key refused user='bob'" in ca_panel.log()
    finally:
        authority.revoked.write_text("".join(line for line in authority.revoked.read_text().splitlines(True)
                                             if line != bob.pub.read_text()))
    assert ca_panel.run(bob, "whoami").returncode == 0


def test_a_revocation_list_that_breaks_while_serving_refuses_every_key(ca_panel, authority):
    """As OpenSSH with `RevokedKeys`: a list that cannot be read revokes
    everything rather than nothing, until it is fixed."""
    alice = ca_panel.users["alice"]
    kept = authority.revoked.read_text()
    authority.revoked.write_text(kept + "this line is not a key\n")
    try:
        assert refused(ca_panel, "alice", alice.key)
        assert refused(ca_panel, "alice", authority.key("-n", "alice"))
        assert "every key is refused until the file is fixed" in ca_panel.log()
    finally:
        authority.revoked.write_text(kept)
    assert ca_panel.run(alice, "whoami").returncode == 0


@pytest.mark.parametrize("case, options, reason", [
    ("expired", ["-n", "alice", "-V", "20200101:20200102"], "Certificate expired"),
    ("not yet valid", ["-n", "alice", "-V", "+1d:+2d"], "Certificate not yet valid"),
    ("host certificate", ["-h", "-n", "alice"], "Invalid certificate type"),
    ("principal is not the login name", ["-n", "bob,alice-admin"], "Certificate principal mismatch"),
    ("no principals", [], "certificate without principals"),
    ("unknown critical option", ["-n", "alice", "-O", "critical:verify-required@example.org=yes"],
     "Unrecognized critical option: verify-required@example.org"),
])
def test_a_certificate_that_does_not_hold_is_refused_regression(ca_panel, authority, case, options, reason):
    key_id = f"case-{secrets.token_hex(4)}"
    key = authority.key(*options, key_id=key_id)
    assert refused(ca_panel, "alice", key), case
    if case != "unknown critical option":  # which asyncssh's client cannot even load
        assert asyncssh_refused(ca_panel, "alice", key), case
    # The log says why (asyncssh itself logs nothing of a refused certificate).
    lines = [line for line in ca_panel.log().splitlines() if "refused user='alice'" in line and reason in line]
    assert lines, ca_panel.log()[-3000:]
    assert case == "unknown critical option" or key_id in lines[-1]


def test_a_certificate_without_principals_is_refused_for_every_user(ca_panel, authority):
    """asyncssh takes an empty principals list as "any user"; OpenSSH's sshd
    refuses it with TrustedUserCAKeys, and so does the panel."""
    key = authority.key()
    for user in ("alice", "bob", "root"):
        assert refused(ca_panel, user, key), user
    assert "certificate without principals" in ca_panel.log()


def test_a_certificate_of_an_unknown_ca_is_refused_regression(ca_panel, authority):
    key = authority.key("-n", "alice", ca=authority.other_ca, key_id="from-elsewhere")
    assert refused(ca_panel, "alice", key)
    assert re.search(r'key ID "from-elsewhere" .* refused .*: CA not trusted', ca_panel.log())


def test_a_certificate_for_a_user_that_does_not_exist_is_refused_without_auto_create(ca_panel, authority):
    key = authority.key("-n", "carol")
    assert refused(ca_panel, "carol", key)
    assert "no such user" in ca_panel.log()


def test_a_certificate_of_a_disabled_user_is_refused(ca_panel, authority):
    root = ca_panel.users["root"]
    ca_panel.add_user("dave")
    key = authority.key("-n", "dave")
    assert login(ca_panel, "dave", key).returncode == 0
    assert ca_panel.run(root, "user", "disable", "dave").returncode == 0
    assert refused(ca_panel, "dave", key)


def test_force_command_runs_instead_of_what_the_client_asked(ca_panel, authority):
    key = authority.key("-n", "alice", "-O", "force-command=whoami")
    done = login(ca_panel, "alice", key, "ps -a --format json")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("alice (user)")
    shell = subprocess.run([*SSH_BASE, "-tt", "-i", str(key), "-p", str(ca_panel.port), "alice@127.0.0.1"],
                           capture_output=True, text=True, timeout=60, input="")
    assert "alice (user)" in shell.stdout
    sftp = subprocess.run(["sftp", *SSH_BASE[1:], "-i", str(key), "-P", str(ca_panel.port), "-b", "-",
                           "alice@127.0.0.1"], capture_output=True, text=True, timeout=60, input="ls\n")
    assert sftp.returncode != 0  # the sftp subsystem ran `whoami` instead


def test_a_certificate_without_permit_pty_gets_no_terminal(ca_panel, authority):
    key = authority.key("-n", "alice", "-O", "no-pty")
    # Without `-q`, which would hide the message that tells.
    shell = subprocess.run(["ssh", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                            "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes", "-tt", "-i", str(key),
                            "-p", str(ca_panel.port), "alice@127.0.0.1"],
                           capture_output=True, text=True, timeout=60, input="")
    assert "PTY allocation request failed" in shell.stderr
    assert login(ca_panel, "alice", key).stdout.startswith("alice (user)")


def test_the_login_name_must_be_a_principal_even_when_the_key_is_registered_to_another_user(ca_panel, authority):
    """The identity is the certificate's principal, bound to the key that
    signed: bob's registered key certified for alice logs in as alice, and
    a certificate for alice never logs in as bob."""
    bob = ca_panel.users["bob"]
    certify(authority.ca, bob.key, "-n", "alice")
    try:
        assert login(ca_panel, "alice", bob.key).stdout.startswith("alice (user)")
        done = login(ca_panel, "bob", bob.key)  # the certificate is refused, bob's own key logs in
        assert done.stdout.startswith("bob (user)") and "cert " not in done.stdout
    finally:
        Path(f"{bob.key}-cert.pub").unlink()


def test_auto_create_makes_a_user_with_the_role_user(tmp_path, docker_client, authority):
    namespace = f"sptest{secrets.token_hex(3)}"
    server = start_panel(tmp_path, namespace, authority.env(SSHPANEL_CERT_AUTO_CREATE="1"))
    try:
        key = authority.key("-n", "carol", "-z", "9", key_id="carol@ci")
        done = login(server, "carol", key)
        assert done.returncode == 0, (done.stderr, server.log()[-2000:])
        assert done.stdout.startswith("carol (user)")
        assert refused(server, "Not_A_Name", authority.key("-n", "Not_A_Name"))
        server.add_user("root", admin=True)
        created = [entry for entry in audit(server, "user add") if entry["User"] == "carol"]
        assert created[0]["Outcome"].startswith('ok: created at login by certificate key ID "carol@ci" serial 9')
        listed = subprocess.run([sys.executable, "-m", "sshpanel", "user", "ls"], env=server.env(), capture_output=True,
                                text=True, check=True).stdout
        assert "carol" in listed and "Not_A_Name" not in listed
    finally:
        stop_panel(server)
        remove_namespace(docker_client, namespace)


def test_certificates_log_in_through_the_workers(tmp_path, docker_client, authority):
    """With `serve --workers 2` every worker holds the CAs and the list."""
    namespace = f"sptest{secrets.token_hex(3)}"
    server = start_panel(tmp_path, namespace, authority.env(SSHPANEL_WORKERS="2"))
    try:
        server.add_user("erin")
        key = authority.key("-n", "erin")
        for _ in range(3):
            done = login(server, "erin", key)
            assert done.stdout.startswith("erin (user)"), (done.stderr, server.log()[-2000:])
        assert refused(server, "erin", authority.key("-n", "erin", ca=authority.other_ca))
    finally:
        stop_panel(server)
        remove_namespace(docker_client, namespace)


@pytest.mark.parametrize("content, message", [
    (None, "is an OpenSSH KRL"),
    ("not a key\n", "line 1 is not an OpenSSH public key"),
])
@pytest.mark.parametrize("workers", ["1", "2"])
def test_an_unusable_revocation_list_stops_the_start(tmp_path, authority, content, message, workers):
    revoked = tmp_path / "revoked"
    if content is None:
        subprocess.run(["ssh-keygen", "-q", "-k", "-f", str(revoked), str(authority.folder / "ca.pub")], check=True,
                       capture_output=True)
    else:
        revoked.write_text(content)
    with pytest.raises(RuntimeError, match=message):
        start_panel(tmp_path, f"sptest{secrets.token_hex(3)}",
                    authority.env(SSHPANEL_REVOKED_KEYS=str(revoked), SSHPANEL_WORKERS=workers))
