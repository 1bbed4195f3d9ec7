"""The compose cluster's object-storage variant (docker-compose.s3.yml, cluster/s3.env.example),
checked by parsing, as tests/test_cluster_files.py checks the rest (no Docker engine runs here)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml
from s3_server import s3_server
from test_cluster_files import COMPOSE, REPO, env_files, published_ports, read_env_file

OVERRIDE = REPO / "docker-compose.s3.yml"
S3_EXAMPLE = REPO / "cluster" / "s3.env.example"
S3_ENV = ".env.s3"


def override() -> dict[str, Any]:
    return yaml.safe_load(OVERRIDE.read_text())


def test_the_override_adds_minio_and_its_bucket_and_extends_every_ray_node() -> None:
    services = override()["services"]
    base = yaml.safe_load(COMPOSE.read_text())["services"]
    assert services["minio"]["image"].startswith("minio/minio:RELEASE.")  # a pinned release
    assert services["bucket"]["image"].startswith("minio/mc:RELEASE.")
    assert services["bucket"]["depends_on"]["minio"]["condition"] == "service_healthy"
    for name in ("head", "worker"):
        assert name in base
        assert env_files(services[name]) == [".env.ray", S3_ENV], name
    assert services["head"]["depends_on"]["bucket"]["condition"] == (
        "service_completed_successfully"
    )
    for name in ("minio", "bucket"):
        assert env_files(services[name]) == [S3_ENV], name
    assert not [p for s in services.values() for p in published_ports(s)]  # MinIO stays inside
    assert "docker-compose.s3.yml" in COMPOSE.read_text()  # the base file points at it


def test_the_s3_env_file_is_ignored_and_never_tracked() -> None:
    for ignore_file in (".gitignore", ".dockerignore"):
        assert S3_ENV in (REPO / ignore_file).read_text().splitlines(), ignore_file
    ignored = subprocess.run(["git", "check-ignore", "-q", S3_ENV], cwd=REPO, check=False)
    assert ignored.returncode == 0
    tracked = subprocess.run(
        ["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.splitlines()
    assert not [p for p in tracked if Path(p).name == S3_ENV]


def test_the_s3_env_example_names_the_variables_the_s3_client_reads(tmp_path: Path) -> None:
    """With the example's variables (the endpoint pointed at a local S3 server), ray-macaw's
    storage writes and reads an object: those are the names pyarrow's S3 client reads."""
    example = read_env_file(S3_EXAMPLE)
    assert {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION", "AWS_ENDPOINT_URL"} <= set(
        example
    )
    assert example["AWS_ENDPOINT_URL"] == "http://minio:9000"
    with s3_server() as server:
        uri = server.create_bucket(example["MACAW_BUCKET"])
        env = {**example, "AWS_ENDPOINT_URL": server.endpoint, "HOME": str(tmp_path),
               "PATH": "/usr/bin:/bin", "AWS_EC2_METADATA_DISABLED": "true"}  # fmt: skip
        probe = (
            "from ray_macaw.data.storage import root_path\n"
            f"path = root_path('{uri}/probe.txt')\n"
            "path.write_text('seen')\n"
            "print(path.read_text())"
        )
        run = subprocess.run(
            [sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=60
        )
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.strip() == "seen"
