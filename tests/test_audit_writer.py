"""The audit writer: a separate process (and OS user) that holds the signing key.

- In one OS user: records sent over the socket are signed with the writer's key, not
  with anything the client holds, and `hortus audit verify` accepts them.
- Across OS users (issue 18 item 7): the test setup creates a writer user and a CLI
  user, runs `hortus audit writer` as the first and `hortus` as the second, and shows
  that the CLI user can neither read the private key nor forge a rewrite of the Delta
  table (with write access to its files) that `hortus audit verify` accepts.
  Creating OS users needs root (as here and in CI); as another user the fixture fails
  with a clear message instead of skipping.
"""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest

from conftest import with_policy
from hortus.cli.core import main
from hortus.config import Paths
from hortus.governance._audit_keys import KeyStore
from hortus.governance._audit_writer import WriterError, ping, prepare
from hortus.governance.audit import AuditError, AuditLog, AuditRecord, default_path

VENV = Path(sys.executable).parent
HORTUS = str(VENV / "hortus")
GROUP = "hortusaudit"
WRITER_USER = "hortus-auditw"
CLI_USER = "hortus-cli"


def start_writer(
    root: Path,
    sock: Path,
    key_dir: Path,
    hortus: list[str] | None = None,
    extra: tuple[str, ...] = ("--socket",),
    **popen,
) -> subprocess.Popen:
    """Start `hortus audit writer` and wait until it answers on its socket.

    `extra`: arguments after the key folder; ``--socket`` alone means ``--socket SOCK``.
    """
    cmd = [*(hortus or [HORTUS]), "--root", str(root), "audit", "writer"]
    cmd += ["--key-dir", str(key_dir)]
    for arg in extra:
        cmd += ["--socket", str(sock)] if arg == "--socket" else [arg]
    if popen.get("extra_groups"):
        cmd += ["--group", GROUP]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, **popen)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"audit writer exited {proc.returncode}: {proc.stderr.read()}")
        if sock.exists():
            try:
                ping(str(sock))
                return proc
            except WriterError:
                pass
        time.sleep(0.2)
    proc.kill()
    raise AssertionError("audit writer did not answer within 90 s")


def stop(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=30)


# ------------------------------------------------------------- one OS user
@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "proj"
    root.mkdir()
    with_policy(root)
    return root


def test_records_sent_to_the_writer_are_signed_with_its_key_only(project, tmp_path, monkeypatch):
    """Check the socket path end to end: the client signs nothing, the writer's key does."""
    sock, key_dir = tmp_path / "run" / "audit.sock", tmp_path / "writer-keys"
    proc = start_writer(project, sock, key_dir)
    try:
        assert sock.stat().st_mode & 0o777 == 0o660
        assert key_dir.stat().st_mode & 0o777 == 0o700
        writer_key = KeyStore(key_dir).current_id()
        assert all(p.stat().st_mode & 0o777 == 0o600 for p in key_dir.glob("*.pem"))
        monkeypatch.setenv("HORTUS_AUDIT_SOCKET", str(sock))
        monkeypatch.delenv("HORTUS_AUDIT_KEY")  # the client holds no key at all
        log = AuditLog.open(default_path(Paths.at(project)), secrets_dir=project / "secrets")
        rows = log.append(
            AuditRecord("alex", "read", "gold.kpi_daily", policy_version="p1"),
            AuditRecord("sam", "read", "silver.users", outcome="denied", policy_version="p1"),
            track_policy=True,
        )
        assert rows["seq"].to_list() == [1, 2, 3] and rows["action"][0] == "policy_change"
        assert set(rows["key_id"]) == {writer_key}
        with pytest.raises(AuditError, match="outcome must be one of"):
            log.append(AuditRecord("alex", "read", "t", outcome="maybe"))  # refused locally
        monkeypatch.setenv("HORTUS_USER", "audrey")
        assert main(["--root", str(project), "audit", "verify"]) == 0
        assert ping(str(sock))["key_id"] == writer_key
        # a rotation run beside the running writer (as its user): its next append
        # signs with the new key version, and both versions verify
        rotate = ["--root", str(project), "audit", "rotate-key", "--key-dir", str(key_dir)]
        assert main(rotate) == 0
        new_key = KeyStore(key_dir).current_id()
        after = log.append(AuditRecord("alex", "read", "gold.kpi_daily", policy_version="p1"))
        assert new_key != writer_key and after["key_id"].to_list() == [new_key]
    finally:
        stop(proc)
    assert not sock.exists()
    # with the writer gone, an append fails loudly instead of going unlogged
    with pytest.raises(AuditError, match="audit writer at .* not reachable"):
        log.append(AuditRecord("alex", "read", "gold.kpi_daily"))
    # the audit verify above logged its own read through the writer, and it verifies
    shown = AuditLog(default_path(Paths.at(project))).show()
    assert shown["detail"].str.starts_with("audit verify").sum() == 1
    assert AuditLog(default_path(Paths.at(project))).verify().ok


def test_a_writer_refuses_a_log_whose_active_key_it_does_not_hold(project, tmp_path):
    """Check the hand-over rule: a single-user log needs rotate-key --from-key-dir first."""
    path = default_path(Paths.at(project))
    AuditLog.open(path, secrets_dir=project).append(AuditRecord("alex", "read", "t"))
    key_dir = tmp_path / "writer-keys"
    with pytest.raises(WriterError, match="rotate-key --key-dir .* --from-key-dir"):
        prepare(AuditLog(path, None, key_dir=key_dir), KeyStore(key_dir))  # the writer's start
    # the hand-over: the single-user key (derived from the audit secret) signs the rotation;
    # `hortus keys rotate audit` is `hortus audit rotate-key` (one command family for keys)
    root_key = AuditLog(path).key_versions()
    assert main(["--root", str(project), "keys", "rotate", "audit", "--key-dir", str(key_dir)]) == 0
    from hortus.cli.keys import _audit_key_status

    status = _audit_key_status(Paths.at(project))
    assert status == {
        "active": KeyStore(key_dir).current_id(),
        "versions": [*root_key, status["active"]],
    }
    assert len(root_key) == 1
    proc = start_writer(project, tmp_path / "s.sock", key_dir)
    try:
        rows = AuditLog(path, socket=str(tmp_path / "s.sock")).append(
            AuditRecord("alex", "read", "u")
        )
        assert rows["key_id"][0] == KeyStore(key_dir).current_id()
    finally:
        stop(proc)
    log = AuditLog(path)
    assert log.verify().ok and log.show()["action"].to_list()[-2] == "key_rotation"


def test_the_writer_records_the_os_user_from_the_socket_and_applies_its_identity_map(
    project, tmp_path
):
    """Check SO_PEERCRED: each record names the sender's OS user (from the kernel, covered by
    the hash); with an identity map a claimed user the map does not allow is refused."""
    me = pwd.getpwuid(os.geteuid()).pw_name
    sock, key_dir = tmp_path / "a.sock", tmp_path / "writer-keys"
    idmap = tmp_path / "identities.yaml"
    idmap.write_text(f"{me}: [alex, dana]\nsomeone-else: '*'\n")
    proc = start_writer(project, sock, key_dir)
    path = default_path(Paths.at(project))
    try:
        assert ping(str(sock))["os_user"] == me
        rows = AuditLog(path, socket=str(sock)).append(AuditRecord("sam", "read", "t"))
        assert rows["os_user"].to_list() == [me]  # no map yet: recorded as claimed
    finally:
        stop(proc)
    proc = start_writer(project, sock, key_dir, extra=("--socket", "--identities", str(idmap)))
    try:
        client = AuditLog(path, socket=str(sock))
        ok = client.append(AuditRecord("alex", "read", "t"), AuditRecord("dana", "read", "u"))
        assert ok["os_user"].to_list() == [me, me]
        with pytest.raises(AuditError, match=f"OS user {me} may not record as hortus user 'sam'"):
            client.append(AuditRecord("alex", "read", "t"), AuditRecord("sam", "read", "t"))
    finally:
        stop(proc)
    assert b"refused: OS user" in proc.stderr.read()
    log = AuditLog(path)
    assert log.show()["user"].to_list() == ["sam", "alex", "dana"]  # nothing of the refused
    assert log.verify().ok
    # os_user is covered by the hash: changing it breaks the chain at that record
    df = pl.read_delta(str(path)).sort("seq")
    df.with_columns(
        os_user=pl.when(pl.col("seq") == 2).then(pl.lit("nobody")).otherwise("os_user")
    ).write_delta(str(path), mode="overwrite")
    bad = log.verify(anchors=False)
    assert not bad.ok and bad.broken_at == 2 and "does not match its contents" in bad.reason


def test_audit_show_names_the_os_user_beside_the_claimed_user(project, monkeypatch, capsys):
    """Check that `hortus audit show` prints each record's OS account next to its user."""
    me = pwd.getpwuid(os.geteuid()).pw_name
    paths = Paths.at(project)
    AuditLog.open(default_path(paths), secrets_dir=paths.secrets).append(
        AuditRecord("alex", "read", "gold.kpi_daily")
    )
    monkeypatch.setenv("HORTUS_USER", "audrey")
    assert main(["--root", str(project), "audit", "show", "--user", "alex"]) == 0
    assert f"alex ({me})" in capsys.readouterr().out


def test_a_map_that_does_not_name_the_os_user_refuses_everything(project, tmp_path):
    """Check that an OS user absent from the identity map (params.yaml audit.identities)
    cannot record as anyone, and that params.yaml's audit.socket is where clients send."""
    (project / "params.yaml").write_text(
        "audit:\n  socket: run/audit.sock\n  identities: {someone-else: '*'}\n"
    )
    key_dir = tmp_path / "writer-keys"
    sock = project / "run" / "audit.sock"
    proc = start_writer(project, sock, key_dir, extra=())  # the socket from params.yaml
    try:
        paths = Paths.at(project)
        log = AuditLog.open(default_path(paths), secrets_dir=paths.secrets)
        assert log.socket == str(sock)  # from params.yaml, relative to the project
        with pytest.raises(AuditError, match="is not in the audit writer's identity map"):
            log.append(AuditRecord("alex", "read", "t"))
    finally:
        stop(proc)
    assert not default_path(Paths.at(project)).exists()


def test_the_socket_comes_from_params_yaml_and_the_environment_wins(project, monkeypatch):
    """Check the order: HORTUS_AUDIT_SOCKET, else params.yaml audit.socket; "" turns it off;
    a bad section is refused naming file and key."""
    from hortus.governance.audit import configured_socket

    secrets = Paths.at(project).secrets
    monkeypatch.delenv("HORTUS_AUDIT_SOCKET", raising=False)
    assert configured_socket(secrets) is None  # no params.yaml: single-user mode
    (project / "params.yaml").write_text("audit:\n  socket: /run/hortus/audit.sock\n")
    assert configured_socket(secrets) == "/run/hortus/audit.sock"
    monkeypatch.setenv("HORTUS_AUDIT_SOCKET", "/tmp/other.sock")
    assert configured_socket(secrets) == "/tmp/other.sock"
    monkeypatch.setenv("HORTUS_AUDIT_SOCKET", "")
    assert configured_socket(secrets) is None
    monkeypatch.delenv("HORTUS_AUDIT_SOCKET")
    (project / "params.yaml").write_text("audit:\n  socket: 5\n  identities: {bob: []}\n")
    with pytest.raises(AuditError, match=r"params.yaml: audit.socket: expected a path"):
        configured_socket(secrets)


# ----------------------------------------------------------- separate OS users
def _ensure_group(name: str) -> int:
    try:
        return grp.getgrnam(name).gr_gid
    except KeyError:
        subprocess.run(["groupadd", "--system", name], check=True)
        return grp.getgrnam(name).gr_gid


def _ensure_user(name: str, group: str) -> pwd.struct_passwd:
    try:
        pwd.getpwnam(name)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin",
             "--groups", group, name],
            check=True,
        )  # fmt: skip
    return pwd.getpwnam(name)


@pytest.fixture(scope="module")
def os_users() -> Iterator[dict]:
    """Create (or reuse) the audit writer's OS user, a CLI user and their shared group."""
    if os.geteuid() != 0:
        pytest.fail(
            "tests/test_audit_writer.py::os_users needs root to create the audit writer's "
            f"and the CLI user's OS accounts (useradd/groupadd); running as uid {os.geteuid()}. "
            "Run this test as root (the CI job does), or create the users "
            f"{WRITER_USER} and {CLI_USER} in group {GROUP} beforehand and run as root."
        )
    for tool in ("useradd", "groupadd"):
        if shutil.which(tool) is None:
            pytest.fail(f"os_users: `{tool}` is not installed (package passwd/shadow-utils)")
    gid = _ensure_group(GROUP)
    users = {"writer": _ensure_user(WRITER_USER, GROUP), "cli": _ensure_user(CLI_USER, GROUP)}
    yield {"gid": gid, **users}  # kept for reuse by the next run (system accounts, no home)


# The venv's interpreter may live where other users cannot enter (here: pyenv under
# /root, mode 0700).  Then the same Python version from the system runs the venv's
# packages, ahead of the system's own.
_BOOT = """
import site, sys
_rest = [p for p in sys.path if "-packages" not in p]
sys.path[:] = []
site.addsitedir({site!r})
sys.path[:] = sys.path + _rest
"""


def _reachable_by_others(path: Path) -> bool:
    return all(p.stat().st_mode & 0o005 == 0o005 for p in [path, *path.parents] if p.is_dir())


def _python_for_others() -> list[str]:
    """Return the command prefix of a Python that other OS users can run, with hortus."""
    exe = Path(os.path.realpath(sys.executable))
    if _reachable_by_others(exe.parent):
        return [str(VENV / "python"), "-c", _BOOT.format(site=sysconfig.get_paths()["purelib"])]
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    for folder in ("/usr/bin", "/usr/local/bin", "/opt/python/bin"):
        candidate = Path(folder) / version
        if candidate.exists() and _reachable_by_others(candidate.parent):
            boot = _BOOT.format(site=sysconfig.get_paths()["purelib"])
            return [str(candidate), "-I", "-c", boot]
    pytest.fail(
        f"the test interpreter {exe} is not reachable by other OS users and no system "
        f"{version} was found: install {version} in /usr/bin or use a venv outside /root"
    )


def _hortus_for_others() -> list[str]:
    py = _python_for_others()
    return [
        *py[:-1],
        py[-1] + "from hortus.cli.core import main\nsys.exit(main(sys.argv[2:]))\n",
        "hortus",
    ]


def _as(user: pwd.struct_passwd, gid: int, home: Path) -> dict:
    """Popen arguments that run a command as `user` with the shared group."""
    env = {
        "PATH": f"{VENV}:/usr/bin:/bin",
        "HOME": str(home),
        "DVC_NO_ANALYTICS": "1",
        "OMP_NUM_THREADS": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    return {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": [gid], "env": env}


FORGE = textwrap.dedent(
    """
    # run as the CLI user: rewrite seq 2 of the audit table and re-chain from there,
    # signing with a key of one's own under the writer's key_id (or one's own key_id)
    import sys
    import polars as pl
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from hortus.governance._audit_keys import key_id_of
    from hortus.governance.audit import content_hash, signed_message

    path, own_id = sys.argv[2], sys.argv[3] == "own-key-id"
    key = Ed25519PrivateKey.generate()
    df = pl.read_delta(path).sort("seq")
    rows = df.with_columns(pl.col("ts").dt.epoch("us")).to_dicts()
    rows[1]["detail"] = "nothing to see here"
    prev = rows[0]["hash"]
    for row in rows[1:]:
        row["prev_hash"] = prev
        if own_id:
            row["key_id"] = key_id_of(key.public_key())
        row["hash"] = prev = content_hash(row)
        row["sig"] = key.sign(signed_message(prev)).hex()
    out = pl.DataFrame(rows).with_columns(pl.from_epoch("ts", "us").dt.replace_time_zone("UTC"))
    out.select(df.columns).cast(dict(df.schema)).write_delta(path, mode="overwrite")
    print("rewritten", len(rows))
    """
)


@pytest.mark.slow
def test_a_cli_user_can_neither_read_the_key_nor_forge_a_rewrite_that_verifies(os_users):
    """Check issue 18 item 7 with real OS users: writer and CLI user are different accounts."""
    gid, w, u = os_users["gid"], os_users["writer"], os_users["cli"]
    base = Path(tempfile.mkdtemp(prefix="hortus-audit-os-", dir="/tmp"))
    try:
        base.chmod(0o755)
        root = base / "proj"
        root.mkdir()
        with_policy(root)
        ops = Paths.at(root).table("ops", "audit_log").parent
        ops.mkdir(parents=True)
        for d, owner in ((base / "run", w), (base / "writer", w), (base / "home-w", w),
                         (base / "home-u", u)):  # fmt: skip
            d.mkdir()
            os.chown(d, owner.pw_uid, owner.pw_gid)
        (base / "writer").chmod(0o700)
        subprocess.run(["chown", "-R", f"{u.pw_uid}:{u.pw_gid}", str(root)], check=True)
        os.chown(ops, w.pw_uid, w.pw_gid)  # the writer owns the audit log's folder
        sock, key_dir = base / "run" / "audit.sock", base / "writer" / "keys"
        idmap = base / "identities.yaml"  # root's file: the writer reads it, users cannot write
        idmap.write_text(f"{CLI_USER}: [audrey]\n")
        idmap.chmod(0o644)
        as_others = _hortus_for_others()
        extra = ("--socket", "--identities", str(idmap))
        writer = start_writer(root, sock, key_dir, as_others, extra, **_as(w, gid, base / "home-w"))
        try:
            cli = _as(u, gid, base / "home-u")
            cli["env"] |= {"HORTUS_AUDIT_SOCKET": str(sock), "HORTUS_USER": "audrey"}

            def hortus(*args: str) -> subprocess.CompletedProcess:
                cmd = [*as_others, "--root", str(root), *args]
                return subprocess.run(cmd, capture_output=True, text=True, timeout=180, **cli)

            for _ in range(2):  # each run logs its own read through the writer
                first = hortus("audit", "verify")
                assert first.returncode == 0, first.stdout + first.stderr
            path = default_path(Paths.at(root))
            log = AuditLog(path)
            assert log.verify().ok and log.show().height >= 2
            assert set(log.show()["key_id"]) == {KeyStore(key_dir).current_id()}
            # the writer names the sender's OS account (from the socket, not the client)
            assert set(log.show()["os_user"]) == {CLI_USER}
            assert ping(str(sock))["os_user"] == "root"  # this test process
            # the identity map lets the CLI user record as audrey only
            cli["env"]["HORTUS_USER"] = "sam"
            claimed = hortus("audit", "verify")
            assert claimed.returncode != 0
            assert f"OS user {CLI_USER} may not record as hortus user 'sam'" in claimed.stderr
            cli["env"]["HORTUS_USER"] = "audrey"
            assert "sam" not in set(log.show()["user"])
            assert (path.stat().st_uid, log.trust.dir.stat().st_uid) == (w.pw_uid, w.pw_uid)

            # 1. the private key cannot be read by the CLI user (nor listed)
            pem = next(key_dir.glob("*.pem"))
            assert (pem.stat().st_mode & 0o777, pem.stat().st_uid) == (0o600, w.pw_uid)
            peek = subprocess.run(["cat", str(pem)], capture_output=True, text=True, **cli)
            assert peek.returncode != 0 and "Permission denied" in peek.stderr
            listing = subprocess.run(["ls", str(key_dir)], capture_output=True, text=True, **cli)
            assert listing.returncode != 0 and "Permission denied" in listing.stderr
            # nor can the CLI user publish a key of their own, or rewrite the anchors
            for target in (log.trust.dir / "keys" / "mine.pub", log.trust.anchors_path):
                touch = subprocess.run(
                    ["sh", "-c", f"echo x >> {target}"], capture_output=True, text=True, **cli
                )
                assert touch.returncode != 0 and "Permission denied" in touch.stderr

            # 2. grant the CLI user write access to the table files, and let them forge
            subprocess.run(["chmod", "-R", "a+rwX", str(path)], check=True)
            backup = base / "backup"
            shutil.copytree(path, backup)
            # the first commit is seq 1..2 (policy_change, read): a re-chain under the
            # writer's key_id fails its signed head (seq 2), reported as seq 1..2
            for mode, at, why in (
                ("writer-key-id", 1, "seq 1..2 (after the last good signed head, seq 0)"),
                ("own-key-id", 2, "unknown or retired key"),
            ):
                py = _python_for_others()
                forge = subprocess.run(
                    [*py[:-1], py[-1] + FORGE, "forge", str(path), mode],
                    capture_output=True, text=True, timeout=180, **cli,
                )  # fmt: skip
                assert forge.returncode == 0 and "rewritten" in forge.stdout, forge.stderr
                assert pl.read_delta(str(path)).filter(pl.col("seq") == 2)["detail"][0] == (
                    "nothing to see here"
                )
                check = hortus("audit", "verify")
                assert check.returncode == 1, check.stdout + check.stderr
                assert f"BROKEN at seq {at}:" in check.stdout and why in check.stdout, check.stdout
                shutil.rmtree(path)
                shutil.copytree(backup, path)
                subprocess.run(["chmod", "-R", "a+rwX", str(path)], check=True)

            # 3. cutting the tail (the last commit) is caught by the writer's anchor
            assert hortus("audit", "verify").returncode == 0
            last = max((path / "_delta_log").glob("*.json"))
            cut = subprocess.run(["rm", str(last)], capture_output=True, text=True, **cli)
            assert cut.returncode == 0, cut.stderr
            check = hortus("audit", "verify", "--json")
            assert check.returncode == 1 and "truncated or rewritten" in check.stdout
        finally:
            stop(writer)
    finally:
        shutil.rmtree(base, ignore_errors=True)
