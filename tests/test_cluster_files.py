"""The cluster description files, checked by parsing: no Docker engine or cloud runs in CI.

Covers Dockerfile, .dockerignore, docker-compose.yml, cluster/*.yaml (Ray cluster launcher configs
validated against Ray's own schema, the KubeRay RayJob) and the commands in cluster/README.md.
"""

from __future__ import annotations

import ipaddress
import re
import secrets
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from packaging.requirements import Requirement

from ray_macaw.cli.main import build_parser

REPO = Path(__file__).resolve().parents[1]
CLUSTER = REPO / "cluster"
COMPOSE = REPO / "docker-compose.yml"
DOCKERFILE = REPO / "Dockerfile"
ENV_FILE = ".env.ray"
TOKEN_EXAMPLE = CLUSTER / "ray-token.env.example"
SHARED = "/shared"
GIB = 1024**3


# ------------------------------------------------------------------------------------ helpers
def load(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def pins() -> dict[str, str]:
    """Exact versions pinned in pyproject.toml's dependencies (`name==X`)."""
    doc = tomllib.loads((REPO / "pyproject.toml").read_text())
    out = {}
    for line in doc["project"]["dependencies"]:
        req = Requirement(line)
        exact = [s.version for s in req.specifier if s.operator == "=="]
        if exact:
            out[req.name] = exact[0]
    return out


def dockerfile_args() -> dict[str, str]:
    """Default values of the Dockerfile's ARGs."""
    found = re.findall(r"^ARG\s+(\w+)=(\S+)\s*$", DOCKERFILE.read_text(), flags=re.M)
    return dict(found)


def dockerfile_workdir() -> str:
    workdirs = re.findall(r"^WORKDIR\s+(\S+)\s*$", DOCKERFILE.read_text(), flags=re.M)
    assert workdirs, "the Dockerfile sets no WORKDIR"
    return workdirs[-1]


def services() -> dict[str, dict[str, Any]]:
    return load(COMPOSE)["services"]


def volume_mounts(service: dict[str, Any]) -> dict[str, str]:
    """source -> target of a compose service's volumes (short or long syntax)."""
    out = {}
    for entry in service.get("volumes", []):
        if isinstance(entry, str):
            source, target = entry.split(":")[:2]
        else:
            source, target = entry["source"], entry["target"]
        out[source] = target
    return out


def published_ports(service: dict[str, Any]) -> list[tuple[str | None, str, str]]:
    """(host ip, host port, container port) of a compose service's published ports."""
    out: list[tuple[str | None, str, str]] = []
    for entry in service.get("ports", []):
        if isinstance(entry, dict):
            out.append((entry.get("host_ip"), str(entry.get("published")), str(entry["target"])))
            continue
        parts = str(entry).split(":")
        if len(parts) == 3:
            out.append((parts[0], parts[1], parts[2]))
        elif len(parts) == 2:
            out.append((None, parts[0], parts[1]))
        else:
            out.append((None, "", parts[0]))  # a container port alone: a random host port
    return out


def env_files(service: dict[str, Any]) -> list[str]:
    value = service.get("env_file", [])
    entries = value if isinstance(value, list) else [value]
    return [e["path"] if isinstance(e, dict) else e for e in entries]


def size_in_bytes(text: str) -> int:
    number, unit = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([kmg]?)b?", str(text).lower()).groups()
    return int(float(number) * {"": 1, "k": 1024, "m": 1024**2, "g": GIB}[unit])


def flag(command: list[str], name: str) -> str | None:
    """Value of `--name=VALUE` in a command list, with ${VAR:-default} read as its default."""
    for arg in command:
        if arg.startswith(f"--{name}="):
            value = arg.split("=", 1)[1]
            default = re.fullmatch(r"\$\{\w+:-(.*)\}", value)
            return default.group(1) if default else value
    return None


def logical_lines(markdown: str) -> list[str]:
    """Lines of the fenced code blocks of a markdown text, backslash continuations joined."""
    lines: list[str] = []
    for block in re.findall(r"```[a-z]*\n(.*?)```", markdown, flags=re.S):
        joined = re.sub(r"\\\n\s*", " ", block)
        lines += [line.split(" #")[0].strip() for line in joined.splitlines()]
    return [line for line in lines if line and not line.startswith("#")]


def ray_macaw_commands(markdown: str) -> list[tuple[str, list[str]]]:
    """(line, argv after `ray-macaw`) of every command in the code blocks that runs ray-macaw,
    directly or after `ray job submit ... --`."""
    out = []
    for line in logical_lines(markdown):
        words = shlex.split(line)
        if words[:1] == ["ray-macaw"]:
            out.append((line, words[1:]))
        elif "--" in words and words[words.index("--") + 1 : words.index("--") + 2] == [
            "ray-macaw"
        ]:
            out.append((line, words[words.index("--") + 2 :]))
    return out


def parse_cli(argv: list[str], line: str) -> Any:
    try:
        return build_parser().parse_args(argv)
    except SystemExit as e:  # argparse exits on an unknown command or flag
        raise AssertionError(f"`ray-macaw` refuses this command: {line}") from e


# ---------------------------------------------------------------------------- (a) YAML parses
def cluster_yaml_files() -> list[Path]:
    return sorted(CLUSTER.glob("*.yaml"))


def test_every_cluster_file_is_there() -> None:
    names = {p.name for p in cluster_yaml_files()}
    assert {"aws.yaml", "local.yaml", "rayjob.yaml"} <= names
    for path in (COMPOSE, DOCKERFILE, REPO / ".dockerignore", CLUSTER / "README.md"):
        assert path.is_file(), path
    assert TOKEN_EXAMPLE.is_file()


@pytest.mark.parametrize(
    "path",
    [COMPOSE, *cluster_yaml_files()],
    ids=lambda p: str(p.relative_to(REPO)),
)
def test_yaml_parses(path: Path) -> None:
    documents = list(yaml.safe_load_all(path.read_text()))
    assert documents, path
    assert all(isinstance(doc, dict) and doc for doc in documents), path


# ----------------------------------------------------------------------------- (b) compose
def test_compose_services_run_one_image_built_from_the_dockerfile() -> None:
    svc = services()
    head, worker = svc["head"], svc["worker"]
    assert head["image"] == worker["image"]
    assert head["image"].startswith("ray-macaw:")
    build = head["build"]
    assert (REPO / build.get("context", ".") / build.get("dockerfile", "Dockerfile")).is_file()
    # The worker reuses the head's image rather than building (or pulling) its own.
    assert "build" not in worker
    assert worker.get("pull_policy") == "never"
    gpu = svc["gpu-worker"]
    assert gpu["profiles"] == ["gpu"]
    assert gpu["image"] != head["image"]
    assert gpu["build"]["args"]["RAY_IMAGE_TAG"].endswith("-gpu")
    devices = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert any(d["driver"] == "nvidia" and "gpu" in d["capabilities"] for d in devices)


def test_compose_named_volume_is_mounted_at_the_same_path_on_every_node() -> None:
    doc = load(COMPOSE)
    (volume,) = doc["volumes"]  # one named volume
    targets = {name: volume_mounts(s).get(volume) for name, s in doc["services"].items()}
    assert set(targets.values()) == {SHARED}, targets


def test_compose_publishes_only_on_loopback_and_never_the_gcs_port() -> None:
    published = {name: published_ports(s) for name, s in services().items()}
    every = [port for ports in published.values() for port in ports]
    assert every, "nothing is published: the job API would be unreachable"
    for host_ip, _, _ in every:
        assert host_ip == "127.0.0.1", published
    assert ("127.0.0.1", "8265", "8265") in published["head"]
    assert not [p for p in every if "6379" in (p[1], p[2])]
    assert all(not ports for name, ports in published.items() if name != "head")


def test_compose_token_comes_from_the_ignored_env_file() -> None:
    for name, service in services().items():
        assert env_files(service) == [ENV_FILE], name
        assert service["environment"]["RAY_AUTH_MODE"] == "token", name
    gitignore = (REPO / ".gitignore").read_text().splitlines()
    assert ENV_FILE in [line.strip() for line in gitignore]
    dockerignore = (REPO / ".dockerignore").read_text().splitlines()
    assert ENV_FILE in [line.strip() for line in dockerignore]
    ignored = subprocess.run(["git", "check-ignore", "-q", ENV_FILE], cwd=REPO, check=False)
    assert ignored.returncode == 0, f"git does not ignore {ENV_FILE}"
    tracked = subprocess.run(
        ["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.splitlines()
    assert not [p for p in tracked if Path(p).name == ENV_FILE]


def read_env_file(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            assert re.fullmatch(r"[A-Z_]+=[^\s'\"]*", line), f"not a plain KEY=value: {line}"
            key, value = line.split("=", 1)
            out[key] = value
    return out


def test_token_example_names_the_variables_ray_reads(tmp_path: Path) -> None:
    example = read_env_file(TOKEN_EXAMPLE)
    assert set(example) == {"RAY_AUTH_MODE", "RAY_AUTH_TOKEN"}
    assert example["RAY_AUTH_MODE"] == "token"
    token = secrets.token_hex(32)
    env = {**example, "RAY_AUTH_TOKEN": token, "HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}
    probe = (
        "from ray._raylet import AuthenticationMode, AuthenticationTokenLoader, "
        "get_authentication_mode\n"
        "assert get_authentication_mode() == AuthenticationMode.TOKEN\n"
        "print(AuthenticationTokenLoader.instance().get_raw_token(ignore_auth_mode=True))"
    )
    run = subprocess.run(
        [sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.strip() == token


def test_compose_nodes_refuse_the_placeholder_token() -> None:
    for name, service in services().items():
        shell, dash_c, script, arg0 = service["entrypoint"]
        assert (shell, dash_c) == ("bash", "-c"), name
        script = script.replace("$$", "$")  # Compose's escape of a literal $
        placeholder = read_env_file(TOKEN_EXAMPLE)["RAY_AUTH_TOKEN"]
        for token, status in ((placeholder, 1), (secrets.token_hex(32), 0)):
            run = subprocess.run(
                ["bash", "-c", script, arg0, "true"],
                env={"RAY_AUTH_TOKEN": token, "PATH": "/usr/bin:/bin"},
                capture_output=True,
                check=False,
            )
            assert run.returncode == status, (name, token)


def test_compose_shared_memory_holds_the_object_store() -> None:
    for name, service in services().items():
        shm = size_in_bytes(service["shm_size"])
        assert shm >= 2 * GIB, name
        store = flag(service["command"], "object-store-memory")
        assert store is not None and int(store) < shm, name


def test_compose_healthchecks_and_start_order() -> None:
    svc = services()
    for name, service in svc.items():
        test = service["healthcheck"]["test"]
        assert test and test[0] in ("CMD", "CMD-SHELL"), name
    assert "gcs_healthz" in " ".join(svc["head"]["healthcheck"]["test"])
    head_cmd = svc["head"]["command"]
    assert head_cmd[:3] == ["ray", "start", "--head"]
    assert "--block" in head_cmd and flag(head_cmd, "port") == "6379"
    assert flag(head_cmd, "dashboard-port") == "8265"
    for name in ("worker", "gpu-worker"):
        service = svc[name]
        assert service["depends_on"]["head"]["condition"] == "service_healthy", name
        assert "local_raylet_healthz" in " ".join(service["healthcheck"]["test"]), name
        assert service["command"][:2] == ["ray", "start"], name
        assert "--block" in service["command"], name
        assert flag(service["command"], "address") == "head:6379", name


# ------------------------------------------------------------------------- (c) version pins
def test_dockerfile_pins_the_ray_and_torch_of_pyproject() -> None:
    pinned = pins()
    ray_version, torch_version = pinned["ray"], pinned["torch"]
    args = dockerfile_args()
    text = DOCKERFILE.read_text()
    assert re.search(r"^FROM rayproject/ray:\$\{RAY_IMAGE_TAG\}\s*$", text, flags=re.M)
    assert args["RAY_IMAGE_TAG"] == f"{ray_version}-py311-cpu"
    assert args["TORCH_VERSION"] == torch_version
    assert "download.pytorch.org/whl/cpu" in args["TORCH_INDEX_URL"]
    # torch before the project (else pip resolves torch from PyPI), and no dev extras.
    torch_at = text.index('"torch==${TORCH_VERSION}"')
    project = re.search(r"pip install --no-cache-dir (\S+)", text[torch_at:])
    assert project and project.group(1) in (".", dockerfile_workdir()), "project not installed"
    assert "[dev]" not in text


def test_python_tag_of_the_images_matches_pyproject() -> None:
    doc = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert doc["project"]["requires-python"] == ">=3.11,<3.12"  # hence the py311 images
    assert "-py311-" in dockerfile_args()["RAY_IMAGE_TAG"]


def test_every_image_reference_uses_the_pinned_ray() -> None:
    ray_version = pins()["ray"]
    for name, service in services().items():
        assert service["image"].split(":")[1].startswith(ray_version), name
        if "build" in service:
            assert service["build"]["args"]["RAY_IMAGE_TAG"].startswith(f"{ray_version}-"), name
    for launcher in ("aws.yaml", "local.yaml"):
        doc = load(CLUSTER / launcher)
        images = [doc["docker"]["image"]]
        images += [
            t["docker"]["worker_image"]
            for t in doc.get("available_node_types", {}).values()
            if "docker" in t
        ]
        for image in images:
            assert image.startswith(f"rayproject/ray:{ray_version}-py311-"), (launcher, image)
    _, job = yaml.safe_load_all((CLUSTER / "rayjob.yaml").read_text())
    assert job["spec"]["rayClusterSpec"]["rayVersion"] == ray_version


# ------------------------------------------------------------------ (d) launcher and KubeRay
def ray_validated(path: Path) -> dict[str, Any]:
    """The launcher config as `ray up` would fill and validate it (Ray's ray-schema.json)."""
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = prepare_config(load(path))
    validate_config(config)
    return config


def launcher_setup_is_pinned(doc: dict[str, Any], commands: list[str]) -> None:
    torch = pins()["torch"]
    assert f"torch=={torch}" in commands[0], commands
    assert any(c.endswith("pip install --no-cache-dir /home/ray/ray-macaw") for c in commands)
    assert doc["file_mounts"]["/home/ray/ray-macaw"] == "."
    assert doc["file_mounts"]["/home/ray/.ray/auth_token"] == "~/.ray/auth_token"
    assert ENV_FILE in doc["rsync_exclude"] and ".venv" in doc["rsync_exclude"]
    assert f"-v {SHARED}:{SHARED}" in doc["docker"]["run_options"]
    for key in ("head_start_ray_commands", "worker_start_ray_commands"):
        assert "export RAY_AUTH_MODE=token;" in doc[key][-1], key


def test_aws_has_a_cpu_head_and_cpu_and_gpu_worker_types() -> None:
    doc = load(CLUSTER / "aws.yaml")
    assert doc["provider"]["type"] == "aws"
    config = ray_validated(CLUSTER / "aws.yaml")
    types = config["available_node_types"]
    head = types[config["head_node_type"]]
    assert head["resources"] == {"CPU": 0}
    assert not head["node_config"]["InstanceType"].startswith(("g", "p"))
    workers = {name: t for name, t in types.items() if name != config["head_node_type"]}

    def is_gpu(t: dict[str, Any]) -> bool:
        return t["node_config"]["InstanceType"].startswith(("g", "p"))

    cpu = [t for t in workers.values() if not is_gpu(t)]
    gpu = [t for t in workers.values() if is_gpu(t)]
    assert cpu and gpu
    for t in cpu + gpu:  # autoscaling: from zero up to a bound
        assert t["min_workers"] == 0 < t["max_workers"]
    for t in gpu:  # a GPU image with a CUDA torch (from PyPI, not the CPU index)
        assert t["docker"]["worker_image"].endswith("-gpu")
        assert not any("whl/cpu" in c for c in t["worker_setup_commands"])
        assert any(f"torch=={pins()['torch']}" in c for c in t["worker_setup_commands"])
    launcher_setup_is_pinned(doc, doc["setup_commands"])
    mount = " ".join(doc["initialization_commands"])
    assert "efs" in mount and f" {SHARED}" in mount


def test_local_provider_lists_placeholder_hosts() -> None:
    doc = load(CLUSTER / "local.yaml")
    assert doc["provider"]["type"] == "local"
    documentation = ipaddress.ip_network("192.0.2.0/24")  # TEST-NET-1, RFC 5737
    hosts = [doc["provider"]["head_ip"], *doc["provider"]["worker_ips"]]
    assert len(hosts) == len(set(hosts)) >= 2
    assert all(ipaddress.ip_address(h) in documentation for h in hosts), hosts
    ray_validated(CLUSTER / "local.yaml")
    launcher_setup_is_pinned(doc, doc["setup_commands"])


def test_rayjob_runs_an_existing_tune_config_on_shared_storage() -> None:
    pvc, job = yaml.safe_load_all((CLUSTER / "rayjob.yaml").read_text())
    assert (job["apiVersion"], job["kind"]) == ("ray.io/v1", "RayJob")
    assert (pvc["apiVersion"], pvc["kind"]) == ("v1", "PersistentVolumeClaim")
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"]
    entrypoint = job["spec"]["entrypoint"]
    # KubeRay pastes the entrypoint into a bash line: an operator would split it.
    assert not re.search(r"&&|\|\||[;|`]|\$\(", entrypoint), entrypoint
    words = shlex.split(entrypoint)
    assert words[0] == "ray-macaw"
    args = parse_cli(words[1:], entrypoint)
    assert args.command == "tune"
    workdir = dockerfile_workdir()
    assert args.file.startswith(f"{workdir}/"), "the image's checkout is the Dockerfile WORKDIR"
    experiment = REPO / args.file.removeprefix(f"{workdir}/")
    assert experiment.is_file(), experiment
    assert args.storage_path.startswith(f"{SHARED}/")
    from ray_macaw.cli.common import parse_overrides
    from ray_macaw.tune.spec import load_tune_spec

    spec = load_tune_spec(experiment, parse_overrides(args.set))
    assert spec.config["data_root"].startswith(f"{SHARED}/")


def test_rayjob_cluster_mounts_the_claim_and_uses_token_auth() -> None:
    pvc, job = yaml.safe_load_all((CLUSTER / "rayjob.yaml").read_text())
    cluster = job["spec"]["rayClusterSpec"]
    assert cluster["authOptions"]["mode"] == "token"
    assert cluster["authOptions"]["secretName"]
    groups = [cluster["headGroupSpec"], *cluster["workerGroupSpecs"]]
    for group in groups:
        pod = group["template"]["spec"]
        claims = {
            v["name"]: v["persistentVolumeClaim"]["claimName"]
            for v in pod["volumes"]
            if "persistentVolumeClaim" in v
        }
        (container,) = pod["containers"]
        mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
        assert [mounts[name] for name in claims] == [SHARED]
        assert list(claims.values()) == [pvc["metadata"]["name"]]
        assert "/dev/shm" in mounts.values()
    gpu = [
        g
        for g in cluster["workerGroupSpecs"]
        if "nvidia.com/gpu" in g["template"]["spec"]["containers"][0]["resources"]["limits"]
    ]
    assert len(gpu) == 1 and gpu[0]["template"]["spec"]["containers"][0]["image"].endswith("-gpu")


# ------------------------------------------------------------------- (e) commands in the docs
def check_commands(markdown: str, where: str) -> set[str]:
    """Every ray-macaw command in the code blocks parses; returns the subcommands seen."""
    commands = ray_macaw_commands(markdown)
    assert commands, f"no ray-macaw command in {where}"
    seen = set()
    for line, argv in commands:
        args = parse_cli(argv, line)
        seen.add(args.command)
        if args.command == "train":
            assert (REPO / args.config).is_file(), line
            doc = load(REPO / args.config)
            assert doc["data_root"].startswith(f"{SHARED}/"), line
            assert doc["out"].startswith(f"{SHARED}/"), line
        if args.command == "tune":
            assert (REPO / args.file).is_file(), line
            assert args.storage_path.startswith(f"{SHARED}/"), line
            assert "data_root=/shared/data" in args.set, line
        if args.command == "collect":
            assert args.out.startswith(f"{SHARED}/"), line
        if args.command in ("finetune", "evaluate", "report"):
            assert (args.checkpoint if args.command != "report" else args.run_dir).startswith(
                f"{SHARED}/"
            ), line
        if line.startswith("ray job submit"):
            words = shlex.split(line)
            assert words[words.index("--address") + 1] == "http://127.0.0.1:8265", line
            assert words[words.index("--working-dir") + 1] == ".", line
    return seen


def test_cluster_readme_commands_are_real_subcommands() -> None:
    text = (CLUSTER / "README.md").read_text()
    seen = check_commands(text, "cluster/README.md")
    assert {"collect", "train", "tune", "finetune"} <= seen
    assert "RAY_AUTH_MODE=token" in text and "RAY_AUTH_TOKEN" in text
    assert "docker compose down -v" in text
    assert "no docker engine runs" in text.lower().replace("\n", " ")


def test_main_readme_cluster_section_commands_are_real_subcommands() -> None:
    text = (REPO / "README.md").read_text()
    match = re.search(r"^## Running on a cluster\n(.*?)(?=^## |\Z)", text, flags=re.M | re.S)
    if match is None:
        pytest.skip("README.md has no 'Running on a cluster' section yet")
    seen = check_commands(match.group(1), "README.md")
    assert {"collect", "train", "tune", "finetune"} <= seen


def test_check_commands_rejects_unknown_subcommands_and_flags() -> None:
    """The README check can fail: an unknown subcommand or flag is an AssertionError."""
    for bad in ("ray-macaw trian x.yaml", "ray-macaw collect --family x --out /s --bogus 1"):
        with pytest.raises(AssertionError, match="refuses"):
            check_commands(f"```bash\n{bad}\n```\n", "a bad text")
