"""The deployment files: they parse, name one image and one Ray, and run the real command.

Offline and fast: no Docker, no Kubernetes, no cloud. The cluster launcher config is checked
against the JSON schema that the installed Ray validates `ray up` configs with; the KubeRay
manifests against the field names of KubeRay's v1 API (ray-project/kuberay,
ray-operator/apis/ray/v1); every `stagetune` command in the manifests and in docs/cluster.md is
parsed by the real command-line parser.
"""

from __future__ import annotations

import importlib.util
import json
import re
import shlex
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from packaging.requirements import Requirement

from tests.conftest import REPO

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - pytest brings tomli where tomllib is missing
    import tomli as tomllib

DEPLOY = REPO / "deploy"
DOCKERFILE = DEPLOY / "Dockerfile"
DOCS = REPO / "docs" / "cluster.md"
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())

# Spec fields of KubeRay's v1 API: a misspelt key is dropped by the API server without a word, so
# it is an error here. A field that KubeRay adds later is added here.
RAYJOB_SPEC = {
    "activeDeadlineSeconds",
    "backoffLimit",
    "rayClusterSpec",
    "submitterPodTemplate",
    "metadata",
    "clusterSelector",
    "submitterConfig",
    "managedBy",
    "deletionStrategy",
    "entrypoint",
    "runtimeEnvYAML",
    "jobId",
    "submissionMode",
    "entrypointResources",
    "entrypointNumCpus",
    "entrypointNumGpus",
    "ttlSecondsAfterFinished",
    "shutdownAfterJobFinishes",
    "suspend",
    "schedule",
}
RAYCLUSTER_SPEC = {
    "headGroupSpec",
    "workerGroupSpecs",
    "rayVersion",
    "enableInTreeAutoscaling",
    "autoscalerOptions",
    "headServiceAnnotations",
    "suspend",
    "managedBy",
    "gcsFaultToleranceOptions",
}
HEAD_GROUP = {"serviceType", "headService", "enableIngress", "rayStartParams", "template"}
WORKER_GROUP = {
    "groupName",
    "replicas",
    "minReplicas",
    "maxReplicas",
    "numOfHosts",
    "rayStartParams",
    "template",
    "scaleStrategy",
    "suspend",
    "idleTimeoutSeconds",
}
AUTOSCALER_OPTIONS = {
    "resources",
    "image",
    "imagePullPolicy",
    "env",
    "envFrom",
    "volumeMounts",
    "securityContext",
    "idleTimeoutSeconds",
    "upscalingMode",
    "version",
}


def dockerfile() -> str:
    return DOCKERFILE.read_text()


def image() -> str:
    """The image the Dockerfile's build comment tags: the one name every manifest must use."""
    match = re.search(r"^#\s+docker build -f deploy/Dockerfile -t (\S+) \.$", dockerfile(), re.M)
    assert match, "deploy/Dockerfile: no `docker build -f deploy/Dockerfile -t IMAGE .` comment"
    return match.group(1)


def build_arg(name: str) -> str:
    match = re.search(rf"^ARG {name}=(\S+)$", dockerfile(), re.M)
    assert match, f"deploy/Dockerfile: no `ARG {name}=...`"
    return match.group(1)


def script() -> str:
    """The console script that runs ``service.cli:main``, from [project.scripts]."""
    names = [k for k, v in PYPROJECT["project"]["scripts"].items() if v == "service.cli:main"]
    assert len(names) == 1, f"[project.scripts] runs service.cli:main as {names}"
    return names[0]


def yaml_files() -> list[Path]:
    return sorted(p for p in DEPLOY.rglob("*") if p.suffix in {".yaml", ".yml"})


def load(path: Path) -> list[Any]:
    return list(yaml.safe_load_all(path.read_text()))


def kube_docs() -> list[dict[str, Any]]:
    return [d for p in yaml_files() for d in load(p) if isinstance(d, dict) and "kind" in d]


def manifest(kind: str) -> dict[str, Any]:
    docs = [d for d in kube_docs() if d["kind"] == kind]
    assert len(docs) == 1, f"deploy/: {len(docs)} {kind} manifests, expected 1"
    return docs[0]


def pod_templates(cluster_spec: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    yield "head", cluster_spec["headGroupSpec"]["template"]["spec"]
    for group in cluster_spec.get("workerGroupSpecs", []):
        yield group["groupName"], group["template"]["spec"]


def containers(cluster_spec: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for name, pod in pod_templates(cluster_spec):
        for container in pod["containers"]:
            yield name, container


def entrypoint() -> str:
    return manifest("RayJob")["spec"]["entrypoint"]


def logical_lines(lines: list[str]) -> Iterator[str]:
    """Shell lines with backslash continuations joined."""
    pending = ""
    for line in lines:
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        yield pending + line
        pending = ""
    if pending:
        yield pending


def commands(line: str) -> Iterator[list[str]]:
    """The words of each simple command of a shell line; for ``ray job submit ... -- CMD``, CMD."""
    words: list[str] = []
    for token in [*shlex.split(line, comments=True), ";"]:
        if token not in {"&&", "||", "|", ";"}:
            words.append(token)
            continue
        if "--" in words:
            words = words[words.index("--") + 1 :]
        while words and re.fullmatch(r"[A-Za-z_]\w*=.*", words[0]):  # VAR=value cmd
            words = words[1:]
        if words:
            yield words
        words = []


def documented_commands() -> list[tuple[str, list[str]]]:
    """(where, words) of every command in docs/cluster.md's shell blocks and in the usage
    comments of deploy/ (comment lines indented by three spaces or more)."""
    found = []
    blocks = re.findall(r"^```(?:bash|sh|shell)\n(.*?)^```", DOCS.read_text(), re.M | re.S)
    for block in blocks:
        for line in logical_lines(block.splitlines()):
            found += [("docs/cluster.md", words) for words in commands(line)]
    for path in [DOCKERFILE, *yaml_files()]:
        usage = [m.group(1) for m in re.finditer(r"^#\s{3,}(\S.*)$", path.read_text(), re.M)]
        for line in logical_lines(usage):
            found += [(str(path.relative_to(REPO)), words) for words in commands(line)]
    return found


def stagetune_commands() -> list[tuple[str, list[str]]]:
    rayjob = ("deploy/kuberay/rayjob.yaml entrypoint", shlex.split(entrypoint()))
    return [(w, c) for w, c in [rayjob, *documented_commands()] if c[0] == script()]


@pytest.mark.parametrize("path", yaml_files(), ids=lambda p: str(p.relative_to(DEPLOY)))
def test_every_yaml_file_parses_into_mappings(path):
    docs = load(path)
    assert docs, f"{path}: empty"
    assert all(isinstance(d, dict) for d in docs), f"{path}: a document is not a mapping"


def test_the_deploy_files_are_all_there():
    names = {str(p.relative_to(DEPLOY)) for p in yaml_files()}
    assert {"cluster.yaml", "kuberay/raycluster.yaml", "kuberay/rayjob.yaml"} <= names
    assert DOCKERFILE.is_file()
    assert (REPO / ".dockerignore").is_file()


def test_the_image_is_built_on_a_pinned_cuda_base():
    bases = re.findall(r"^FROM\s+(?:--platform=\S+\s+)?(\S+)", dockerfile(), re.M)
    assert bases, "deploy/Dockerfile: no FROM"
    name, _, tag = bases[-1].partition(":")
    assert name == "nvidia/cuda", f"the runtime stage is built on {bases[-1]}, not a CUDA image"
    assert re.match(r"\d+\.\d+\.\d+-", tag), f"{bases[-1]}: pin a CUDA version, not {tag!r}"


def test_the_image_installs_the_project_with_its_console_script():
    text = dockerfile()
    assert re.search(r"^WORKDIR /app$", text, re.M)
    assert re.search(r"^COPY \. (/app|\.)/?$", text, re.M), "the project is not copied in"
    assert re.search(r"pip install (-c \S+ )?(-e )?\.(\s|$)", text), "the project is not installed"
    assert f"{script()} --help" in text, "the build does not run the console script"
    # The Ray cluster launcher runs `bash` in the container and KubeRay runs `ray start`.
    assert not re.search(r"^ENTRYPOINT", text, re.M)


def test_the_dockerignore_keeps_history_and_run_folders_out():
    lines = (REPO / ".dockerignore").read_text().splitlines()
    ignored = {line.strip() for line in lines if line.strip() and not line.startswith("#")}
    assert {".git", "runs"} <= ignored
    needed = {"pyproject.toml", "README.md", "configs", "model", "tuner", "service"}
    assert not needed & ignored, "the build needs these"


def test_every_manifest_runs_the_one_image_tagged_with_the_project_version():
    expected = image()
    assert expected.rpartition(":")[2] == PYPROJECT["project"]["version"]
    launcher = load(DEPLOY / "cluster.yaml")[0]["docker"]
    keys = [k for k in ("image", "head_image", "worker_image") if k in launcher]
    used = {(f"cluster.yaml {k}", launcher[k]) for k in keys}
    for kind, spec in [
        ("RayCluster", manifest("RayCluster")["spec"]),
        ("RayJob", manifest("RayJob")["spec"]["rayClusterSpec"]),
    ]:
        used |= {(f"{kind} {group}", c["image"]) for group, c in containers(spec)}
    assert {name for _, name in used} == {expected}, sorted(used)
    assert expected in DOCS.read_text(), "docs/cluster.md builds another image"


@pytest.mark.parametrize(("package", "arg"), [("ray", "RAY_VERSION"), ("torch", "TORCH_VERSION")])
def test_pinned_versions_meet_the_project_requirements(package, arg):
    pinned = build_arg(arg)
    requirements = [Requirement(r) for r in PYPROJECT["project"]["dependencies"]]
    (requirement,) = [r for r in requirements if r.name == package]
    assert requirement.specifier.contains(pinned), f"{arg}={pinned} but pyproject: {requirement}"


def test_every_pip_install_of_the_image_keeps_to_the_lock():
    installs = re.findall(r"pip install (?!--upgrade pip)(.*)", dockerfile())
    assert installs, "deploy/Dockerfile installs nothing"
    for args in installs:
        assert args.startswith("-c requirements/lock.txt "), f"pip install {args}: not locked"


@pytest.mark.parametrize(("package", "arg"), [("ray", "RAY_VERSION"), ("torch", "TORCH_VERSION")])
def test_the_image_pins_the_locked_versions(package, arg):
    lock = (REPO / "requirements" / "lock.txt").read_text()
    assert re.search(rf"^{package}=={re.escape(build_arg(arg))}$", lock, re.M), (
        f"{arg}={build_arg(arg)}, but requirements/lock.txt pins another {package}"
    )


def test_kuberay_names_the_ray_of_the_image():
    ray_version = build_arg("RAY_VERSION")
    assert manifest("RayCluster")["spec"]["rayVersion"] == ray_version
    assert manifest("RayJob")["spec"]["rayClusterSpec"]["rayVersion"] == ray_version


def test_cluster_yaml_is_a_valid_ray_launcher_config():
    config = load(DEPLOY / "cluster.yaml")[0]
    ray_dir = Path(importlib.util.find_spec("ray").submodule_search_locations[0])
    schema = json.loads((ray_dir / "autoscaler" / "ray-schema.json").read_text())
    jsonschema.validate(config, schema)

    types = config["available_node_types"]
    head = types[config["head_node_type"]]
    assert head["resources"].get("GPU", 0) == 0 and head["resources"].get("CPU") == 0
    workers = {name: t for name, t in types.items() if name != config["head_node_type"]}
    gpu = {name: t for name, t in workers.items() if t["resources"].get("GPU", 0) >= 1}
    assert gpu, "no GPU worker node type"
    for name, node_type in gpu.items():
        assert 0 <= node_type["min_workers"] <= node_type["max_workers"], name
        assert node_type["max_workers"] >= 1, name


def test_cluster_yaml_gives_gpus_to_the_workers_only():
    docker = load(DEPLOY / "cluster.yaml")[0]["docker"]
    assert "--gpus all" in docker["worker_run_options"]
    for key in ("run_options", "head_run_options"):
        assert not any("--gpus" in option for option in docker.get(key, [])), key


def test_the_raycluster_has_a_gpu_worker_group_and_a_gpu_free_head():
    spec = manifest("RayCluster")["spec"]
    assert manifest("RayCluster")["apiVersion"] == "ray.io/v1"
    gpus = {
        group: int(c["resources"]["limits"].get("nvidia.com/gpu", 0))
        for group, c in containers(spec)
    }
    assert gpus.pop("head") == 0
    # Where no node has a GPU, stagetune drops --gpus-per-trial and measures CPUs: a head with no
    # CPU for Ray makes a job that starts before the first GPU pod an error instead.
    assert spec["headGroupSpec"]["rayStartParams"].get("num-cpus") == "0"
    assert any(n >= 1 for n in gpus.values()), f"no worker group asks for nvidia.com/gpu: {gpus}"
    for group in spec["workerGroupSpecs"]:
        assert group["minReplicas"] <= group.get("replicas", 0) <= group["maxReplicas"]


def test_the_rayjob_runs_optimize_on_the_raycluster_spec():
    job = manifest("RayJob")
    assert job["apiVersion"] == "ray.io/v1"
    assert job["spec"]["rayClusterSpec"] == manifest("RayCluster")["spec"]
    assert job["spec"]["shutdownAfterJobFinishes"] is True
    assert shlex.split(entrypoint())[:2] == [script(), "optimize"]


def test_kuberay_specs_use_only_fields_of_the_v1_api():
    cluster = manifest("RayCluster")["spec"]
    checks = [
        ("RayJob spec", manifest("RayJob")["spec"], RAYJOB_SPEC),
        ("RayCluster spec", cluster, RAYCLUSTER_SPEC),
        ("headGroupSpec", cluster["headGroupSpec"], HEAD_GROUP),
        ("autoscalerOptions", cluster.get("autoscalerOptions", {}), AUTOSCALER_OPTIONS),
    ]
    checks += [(g["groupName"], g, WORKER_GROUP) for g in cluster["workerGroupSpecs"]]
    for where, fields, known in checks:
        assert set(fields) <= known, f"{where}: unknown {sorted(set(fields) - known)}"


def test_ray_start_params_are_strings_and_custom_resources_are_json():
    """rayStartParams is a map of strings in the CRD: a bare 0 or true is rejected on apply."""
    spec = manifest("RayCluster")["spec"]
    groups = [("head", spec["headGroupSpec"])]
    groups += [(g["groupName"], g) for g in spec["workerGroupSpecs"]]
    for name, group in groups:
        params = group["rayStartParams"]
        assert all(isinstance(v, str) for v in params.values()), f"{name}: {params}"
        if "resources" in params:  # KubeRay's form: '"{\"name\": 1}"'
            resources = json.loads(params["resources"].strip('"').replace('\\"', '"'))
            assert all(isinstance(v, (int, float)) for v in resources.values()), name


def test_every_pod_mounts_the_storage_the_job_writes_to():
    args = shlex.split(entrypoint())
    storage = args[args.index("--storage") + 1]
    claims = {d["metadata"]["name"]: d for d in kube_docs() if d["kind"] == "PersistentVolumeClaim"}
    for name, pod in pod_templates(manifest("RayCluster")["spec"]):
        volumes = {v["name"]: v for v in pod.get("volumes", [])}
        mounts = {m["mountPath"]: m for c in pod["containers"] for m in c.get("volumeMounts", [])}
        assert storage in mounts, f"{name}: nothing mounted at {storage}"
        claim = volumes[mounts[storage]["name"]]["persistentVolumeClaim"]["claimName"]
        assert "ReadWriteMany" in claims[claim]["spec"]["accessModes"], claim
    run_options = load(DEPLOY / "cluster.yaml")[0]["docker"]["run_options"]
    assert any(o.endswith(f":{storage}") for o in run_options), "cluster.yaml: storage not mounted"


def test_the_console_script_is_the_parser_of_service_cli():
    from service.cli import _parser

    assert PYPROJECT["project"]["scripts"][script()] == "service.cli:main"
    assert _parser().prog == script()


def test_documented_optimize_commands_run_the_console_script():
    found = documented_commands()
    optimize = [(where, words) for where, words in found if "optimize" in words]
    assert optimize, "no documented `optimize` command"
    for where, words in optimize:
        assert words[0] == script(), f"{where}: {shlex.join(words)} does not run {script()}"


@pytest.mark.parametrize(("where", "words"), stagetune_commands(), ids=lambda x: None)
def test_every_stagetune_command_is_accepted_by_the_parser(where, words, capsys):
    from service.cli import _parser

    try:
        _parser().parse_args(words[1:])
    except SystemExit:
        error = capsys.readouterr().err.strip().splitlines()[-1:]
        pytest.fail(f"{where}: `{shlex.join(words)}` is rejected: {error}")
