"""A real S3-compatible server for tests: `moto_server` in its own process on a local address.

No mock is patched into any process: ray-macaw, Ray, Tune and pyarrow talk HTTP to the server
exactly as they would to S3 or MinIO, with credentials and the endpoint from the standard AWS
variables.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import IO

import pyarrow.fs as pafs

START_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class S3Server:
    """A running server: its endpoint and the AWS variables that point a client at it."""

    endpoint: str
    start_seconds: float

    @property
    def env(self) -> dict[str, str]:
        return {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_REGION": "us-east-1",
            "AWS_ENDPOINT_URL": self.endpoint,
            # Never ask a cloud metadata service (169.254.169.254) for anything.
            "AWS_EC2_METADATA_DISABLED": "true",
        }

    def create_bucket(self, name: str) -> str:
        """Make a bucket; returns its URI."""
        fs = pafs.S3FileSystem(
            access_key="testing",
            secret_key="testing",
            region="us-east-1",
            endpoint_override=self.endpoint,
            allow_bucket_creation=True,
        )
        fs.create_dir(name)
        return f"s3://{name}"


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


@contextmanager
def s3_server(
    host: str = "127.0.0.1", port: int | None = None, prefix: Sequence[str] = ()
) -> Iterator[S3Server]:
    """Start `moto_server` on `host` (run under `prefix`, e.g. `ip netns exec NS`), wait until
    it answers, and stop it afterwards.

    Raises:
        RuntimeError: The server did not answer within START_TIMEOUT_S.
    """
    port = port or free_port(host)
    started = time.monotonic()
    command = [*prefix, sys.executable, "-m", "moto.server", "-H", host, "-p", str(port)]
    # The server logs every request: to a file, never to a pipe nobody drains (it would block).
    log = tempfile.TemporaryFile()
    process = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=log, start_new_session=True
    )
    endpoint = f"http://{host}:{port}"
    try:
        _wait_until_up(process, endpoint, prefix, log)
        yield S3Server(endpoint, time.monotonic() - started)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def _wait_until_up(
    process: subprocess.Popen, endpoint: str, prefix: Sequence[str], log: IO[bytes]
) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            log.seek(0)
            raise RuntimeError(f"moto_server exited: {log.read().decode()[-2000:]}")
        if _answers(endpoint, prefix):
            return
        time.sleep(0.1)
    raise RuntimeError(f"moto_server did not answer on {endpoint} within {START_TIMEOUT_S} s")


def _answers(endpoint: str, prefix: Sequence[str]) -> bool:
    if prefix:  # the server is in another network namespace: ask from there
        probe = f"import urllib.request; urllib.request.urlopen('{endpoint}/moto-api/', timeout=1)"
        return (
            subprocess.run([*prefix, sys.executable, "-c", probe], capture_output=True).returncode
            == 0
        )
    try:
        urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=1)
        return True
    except OSError:
        return False


@contextmanager
def aws_environment(env: dict[str, str]) -> Iterator[None]:
    """Set the AWS variables for this process (and the Ray workers it starts), then restore."""
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
