"""A real S3-compatible server for the tests: moto's server in a child process on 127.0.0.1.

Test modules load the fixtures with ``pytest_plugins = ("s3server",)``.
`s3_server` starts one server per test session (per xdist worker) on a free loopback
port and creates the bucket; `s3_lake` gives a test the AWS_* settings (for that
test only) and an empty lakehouse URI ``s3://<bucket>/<unique prefix>``.

The server runs in its own process, not as a thread of the test process: deltalake
holds the GIL in some calls (`DeltaTable.is_deltatable`) while it waits for the
server, which would starve a server thread of the same process.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

BUCKET = "hortus-test"
CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_REGION": "us-east-1",
}


@dataclass(frozen=True)
class S3Server:
    endpoint: str
    bucket: str

    def env(self) -> dict[str, str]:
        """Return the environment that points AWS clients (and Hortus) at this server."""
        return CREDENTIALS | {"AWS_ENDPOINT_URL": self.endpoint, "AWS_ALLOW_HTTP": "true"}

    def client(self):  # a boto3 client, for the tests' own checks
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
            region_name=CREDENTIALS["AWS_REGION"],
        )

    def keys(self, prefix: str) -> list[str]:
        pages = (
            self.client()
            .get_paginator("list_objects_v2")
            .paginate(Bucket=self.bucket, Prefix=prefix)
        )
        return sorted(o["Key"] for page in pages for o in page.get("Contents", []))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_moto(port: int, log=subprocess.DEVNULL) -> subprocess.Popen:
    """Start `python -m moto.server` on 127.0.0.1:port and wait until it answers (30 s)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=log,
        stderr=log,
    )
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/moto-api/", timeout=1).close()
            return proc
        except (urllib.error.URLError, OSError):
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError(f"the moto server did not start on 127.0.0.1:{port}") from None
            time.sleep(0.05)


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    """Run a moto S3 server on a free loopback port for the session; create the bucket."""
    port = free_port()
    proc = start_moto(port)
    server = S3Server(f"http://127.0.0.1:{port}", BUCKET)
    try:
        server.client().create_bucket(Bucket=BUCKET)
        yield server
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture
def s3_lake(s3_server: S3Server, monkeypatch) -> str:
    """Point this test's AWS settings at the server; return a new lakehouse URI in the bucket."""
    for key in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(key, raising=False)
    for key, value in s3_server.env().items():
        monkeypatch.setenv(key, value)
    assert os.environ["AWS_ENDPOINT_URL"].startswith("http://127.0.0.1:")  # loopback only
    return f"s3://{s3_server.bucket}/lake-{uuid.uuid4().hex[:12]}"
