"""A real IMAP server for tests: Dovecot (Debian's `dovecot-imapd`, which the Makefile installs) on a random
loopback port, IMAPS only, with a certificate from a trustme test CA, users from a passwd-file and maildirs
under a temporary directory. Nothing outside that directory is read or written: Dovecot runs as the
current user with its own base_dir, state and log paths.

    with DovecotServer(tmp_path) as imap:          # or the `dovecot` fixture (tests/conftest.py style)
        imap.append("bounces", raw_message_bytes)  # as a remote MTA's mail would arrive
        imap.ca_file                                # what the code under test must trust
"""

from __future__ import annotations

import getpass
import grp
import imaplib
import os
import pwd
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.smtp_servers import LOOPBACK, CertAuthority

# The Debian package installs the binary here; `dovecot` is not on an unprivileged user's PATH.
DOVECOT_PATHS = ("dovecot", "/usr/sbin/dovecot")
USERS = {"bounces": "bounce-secret", "pec": "pec-secret", "archive": "archive-secret"}
START_TIMEOUT = 15.0


def dovecot_binary() -> str | None:
    for candidate in DOVECOT_PATHS:
        found = shutil.which(candidate)
        if found:
            return found
    return None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind((LOOPBACK, 0))
        return int(probe.getsockname()[1])


def _mail_owner() -> tuple[int, int]:
    """Dovecot refuses to keep mail as root: as root, the mail belongs to the package's `dovecot` user."""
    if os.getuid() == 0:
        owner = pwd.getpwnam("dovecot")
        return owner.pw_uid, owner.pw_gid
    return os.getuid(), os.getgid()


def _config(root: Path, port: int) -> str:
    uid, gid = _mail_owner()
    # Dovecot 2.3 syntax. Only the imap-login listener on our port; no other service listens anywhere.
    return f"""\
protocols = imap
listen = {LOOPBACK}
base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/dovecot.log
info_log_path = {root}/dovecot.log
{_identity()}ssl = required
ssl_cert = <{root}/server.pem
ssl_key = <{root}/server.key
auth_mechanisms = plain
auth_failure_delay = 0
disable_plaintext_auth = yes
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {root}/users
}}
userdb {{
  driver = passwd-file
  args = username_format=%u {root}/users
  default_fields = uid={uid} gid={gid} home={root}/home/%u
}}
mail_location = maildir:~/Maildir
first_valid_uid = {uid}
first_valid_gid = {gid}
namespace inbox {{
  inbox = yes
  separator = /
}}
service imap-login {{
  inet_listener imap {{
    port = 0
  }}
  inet_listener imaps {{
    address = {LOOPBACK}
    port = {port}
    ssl = yes
  }}
}}
service anvil {{
  chroot =
}}
service imap-login {{
  chroot =
}}
service stats {{
  unix_listener stats-writer {{
    mode = 0600
  }}
}}
"""


def _identity() -> str:
    """The users Dovecot's processes run as. An unprivileged user runs everything itself (no chroot is
    possible then). Root cannot: Dovecot refuses to run its login processes as root, so they run as the
    package's `dovenull` in their chroot under base_dir, and auth as root, which can read our passwd-file."""
    if os.getuid() == 0:
        return """\
default_internal_user = dovecot
default_login_user = dovenull
service auth {
  user = root
}
service auth-worker {
  user = root
}
"""
    user, group = getpass.getuser(), grp.getgrgid(os.getgid()).gr_name
    return f"""\
default_internal_user = {user}
default_internal_group = {group}
default_login_user = {user}
service imap-login {{
  chroot =
}}
service anvil {{
  chroot =
}}
"""


class DovecotServer:
    def __init__(self, root: Path) -> None:
        binary = dovecot_binary()
        if binary is None:
            raise RuntimeError("dovecot is not installed (make test installs dovecot-imapd)")
        self.binary = binary
        # As root, the mail processes run as `dovecot`, which must reach the sockets and the maildirs: a
        # directory of our own under /tmp instead of pytest's, which only root may enter.
        self._own_root = os.getuid() == 0
        self.root = Path(tempfile.mkdtemp(prefix="gmp-dovecot-")) if self._own_root else root
        self.port = _free_port()
        self.host = LOOPBACK
        self.users = dict(USERS)
        self.certs = CertAuthority()
        self.ca_file = self.root / "ca.pem"
        self._process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> DovecotServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        for folder in ("run", "state", "home"):
            (self.root / folder).mkdir(parents=True, exist_ok=True)
        if self._own_root:
            self.root.chmod(0o755)
            os.chown(self.root / "home", *_mail_owner())
        self.certs.write_ca_bundle(self.ca_file)
        self.certs.server_cert.cert_chain_pems[0].write_to_path(str(self.root / "server.pem"))
        self.certs.server_cert.private_key_pem.write_to_path(str(self.root / "server.key"))
        (self.root / "users").write_text("".join(f"{name}:{password}::::::\n" for name, password in self.users.items()))
        config = self.root / "dovecot.conf"
        config.write_text(_config(self.root, self.port))
        self._process = subprocess.Popen(
            [self.binary, "-F", "-c", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        self._wait_ready()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self._process is not None and self._process.poll() is not None:
                raise RuntimeError(f"dovecot exited: {self._failure()}")
            try:
                with self.connect("bounces"):
                    return
            except (OSError, imaplib.IMAP4.error):
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"dovecot did not answer on {self.host}:{self.port}: {self._failure()}")

    def _failure(self) -> str:
        log = self.root / "dovecot.log"
        stderr = b""
        if self._process is not None and self._process.poll() is not None and self._process.stderr:
            stderr = self._process.stderr.read()
        return (stderr.decode(errors="replace") + (log.read_text()[-2000:] if log.exists() else "")).strip()

    def stop(self) -> None:
        if self._process is None:
            return
        self._process.terminate()
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._process = None
        if self._own_root:
            shutil.rmtree(self.root, ignore_errors=True)

    def client_context(self) -> ssl.SSLContext:
        return self.certs.client_context()

    def connect(self, user: str) -> imaplib.IMAP4_SSL:
        conn = imaplib.IMAP4_SSL(self.host, self.port, ssl_context=self.client_context(), timeout=5)
        conn.login(user, self.users[user])
        return conn

    def append(self, user: str, message: bytes, folder: str = "INBOX") -> None:
        """Deliver `message` into `user`'s `folder` (IMAP APPEND), as an incoming mail."""
        with self.connect(user) as conn:
            if folder != "INBOX":
                conn.create(folder)
            status, detail = conn.append(folder, None, None, message)
            if status != "OK":
                raise RuntimeError(f"APPEND failed: {detail!r}")

    def create_folder(self, user: str, folder: str) -> None:
        with self.connect(user) as conn:
            conn.create(folder)

    def unmark(self, user: str, folder: str, flags: str) -> None:
        """Take `flags` off every message of `folder` (a poller that died before marking what it handled)."""
        with self.connect(user) as conn:
            conn.select(folder)
            conn.uid("STORE", "1:*", "-FLAGS", flags)

    def messages(self, user: str, folder: str = "INBOX") -> dict[int, set[str]]:
        """UID -> flags (system flags and keywords) of every message in `folder`."""
        with self.connect(user) as conn:
            conn.select(folder)
            _, data = conn.uid("FETCH", "1:*", "(FLAGS)")
            found: dict[int, set[str]] = {}
            for line in data:
                if not isinstance(line, bytes) or b"UID" not in line:
                    continue
                parsed = imaplib.ParseFlags(line)
                uid = int(line.split(b"UID ")[1].split(b" ")[0].rstrip(b")"))
                found[uid] = {flag.decode() for flag in parsed}
            return found


@pytest.fixture(scope="module", name="dovecot")
def dovecot_fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DovecotServer]:
    """One Dovecot per test module; each test uses its own folders or users' mail as it needs."""
    if dovecot_binary() is None:
        pytest.skip("dovecot is not installed and could not be installed (make test installs dovecot-imapd)")
    with DovecotServer(tmp_path_factory.mktemp("dovecot")) as server:
        yield server
