"""Checks of the Kubernetes manifests in ``deploy/kubernetes/``: parsed here, never applied."""

from __future__ import annotations

from pathlib import Path

import pytest

yaml = pytest.importorskip(
    "yaml", reason="PyYAML parses deploy/kubernetes/*.yaml; install sluice's dev extras to run these checks")

MANIFESTS = Path(__file__).resolve().parents[2] / "deploy" / "kubernetes"
IMAGE = "your-registry/sluice:latest"

# The flags `sluice start` accepts in each role; the value says whether the flag takes an argument.
_SHARED_FLAGS = {"--bind": True, "--advertise": True, "--num-cpus": True, "--num-gpus": True,
                 "--resources": True, "--token": True, "--tls-cert": True, "--tls-key": True,
                 "--block": False}
HEAD_FLAGS = {**_SHARED_FLAGS, "--head": False, "--port": True}
NODE_FLAGS = {**_SHARED_FLAGS, "--address": True, "--flight-port": True}


def _documents() -> list[dict]:
    docs = []
    for path in sorted(MANIFESTS.glob("*.yaml")):
        docs += [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    return docs


DOCS = _documents()


def _one(kind: str) -> dict:
    found = [d for d in DOCS if d["kind"] == kind]
    assert len(found) == 1, f"expected one {kind} in {MANIFESTS}, found {len(found)}"
    return found[0]


def _containers(workload: dict, init: bool = True) -> list[dict]:
    spec = workload["spec"]["template"]["spec"]
    return (spec.get("initContainers", []) if init else []) + spec["containers"]


def _start_container(workload: dict) -> tuple[dict, list[str]]:
    """The one container running ``sluice start``, and the words after ``sluice start``."""
    runs = [(c, (c.get("command", []) + c.get("args", []))[2:]) for c in _containers(workload)
            if (c.get("command", []) + c.get("args", []))[:2] == ["sluice", "start"]]
    assert len(runs) == 1, f"{workload['metadata']['name']}: expected one `sluice start` container"
    return runs[0]


def _parse_flags(argv: list[str], allowed: dict[str, bool]) -> dict[str, str | None]:
    flags: dict[str, str | None] = {}
    words = iter(argv)
    for word in words:
        name, _, inline = word.partition("=")
        assert name in allowed, f"`sluice start` has no flag {word!r} here; allowed: {sorted(allowed)}"
        flags[name] = (inline or next(words)) if allowed[name] else None
    return flags


def _env(container: dict, name: str) -> dict:
    found = [e for e in container.get("env", []) if e["name"] == name]
    assert found, f"container {container['name']!r} has no env {name}"
    return found[0]


def _selects(service: dict, workload: dict) -> bool:
    labels = workload["spec"]["template"]["metadata"]["labels"]
    return service["spec"]["selector"].items() <= labels.items()


def _gibibytes(quantity: str) -> float:
    units = {"Ki": 2**-20, "Mi": 2**-10, "Gi": 1, "Ti": 2**10}
    return float(quantity[:-2]) * units[quantity[-2:]]


def test_every_manifest_parses_into_the_expected_objects() -> None:
    assert sorted(d["kind"] for d in DOCS) == ["Deployment", "Secret", "Service", "Service", "StatefulSet"]
    assert all(d["apiVersion"] and d["metadata"]["name"] for d in DOCS)
    images = {c["image"] for d in DOCS if "template" in d.get("spec", {}) for c in _containers(d)}
    assert images == {IMAGE}  # one placeholder for users to replace


def test_start_commands_use_only_documented_flags() -> None:
    head = _parse_flags(_start_container(_one("Deployment"))[1], HEAD_FLAGS)
    node = _parse_flags(_start_container(_one("StatefulSet"))[1], NODE_FLAGS)
    assert {"--head", "--block"} <= head.keys() and head["--port"] == "6380"
    assert "--block" in node and node["--address"] == "sluice-head:6380"
    with pytest.raises(AssertionError, match="no flag '--gpus'"):
        _parse_flags(["--gpus", "1"], NODE_FLAGS)


def test_head_service_exposes_the_control_port_nodes_join() -> None:
    head = _one("Deployment")
    [service] = [s for s in DOCS if s["kind"] == "Service" and _selects(s, head)]
    [port] = [p for p in service["spec"]["ports"] if p["port"] == 6380]
    container_ports = {p["name"]: p["containerPort"] for p in _start_container(head)[0]["ports"]}
    assert container_ports[port["targetPort"]] == 6380
    node_address = _parse_flags(_start_container(_one("StatefulSet"))[1], NODE_FLAGS)["--address"]
    assert node_address == f"{service['metadata']['name']}:{port['port']}"


def test_statefulset_has_a_headless_service_with_named_ports() -> None:
    nodes = _one("StatefulSet")
    [service] = [s for s in DOCS if s["kind"] == "Service" and s["metadata"]["name"] == nodes["spec"]["serviceName"]]
    assert service["spec"]["clusterIP"] == "None" and _selects(service, nodes)
    container_ports = {p["name"]: p["containerPort"] for p in _start_container(nodes)[0]["ports"]}
    flight_port = _parse_flags(_start_container(nodes)[1], NODE_FLAGS)["--flight-port"]
    assert container_ports == {"flight": int(flight_port)}
    assert [(p["name"], p["targetPort"]) for p in service["spec"]["ports"]] == [("flight", "flight")]


@pytest.mark.parametrize("kind", ["StatefulSet", "Deployment"])
def test_dev_shm_is_a_bounded_memory_emptydir(kind: str) -> None:
    workload = _one(kind)
    container = _start_container(workload)[0]
    [mount] = [m for m in container["volumeMounts"] if m["mountPath"] == "/dev/shm"]
    [volume] = [v for v in workload["spec"]["template"]["spec"]["volumes"] if v["name"] == mount["name"]]
    assert volume["emptyDir"]["medium"] == "Memory"
    # tmpfs pages count against the container's memory limit: the store must fit under it.
    assert 0 < _gibibytes(volume["emptyDir"]["sizeLimit"]) < _gibibytes(container["resources"]["limits"]["memory"])


@pytest.mark.parametrize("kind", ["StatefulSet", "Deployment"])
def test_num_cpus_follows_the_cpu_limit(kind: str) -> None:
    container, argv = _start_container(_one(kind))
    num_cpus = _parse_flags(argv, HEAD_FLAGS | NODE_FLAGS)["--num-cpus"]
    assert num_cpus == "$(SLUICE_NUM_CPUS)"
    source = _env(container, "SLUICE_NUM_CPUS")["valueFrom"]["resourceFieldRef"]
    assert (source["containerName"], source["resource"]) == (container["name"], "limits.cpu")
    resources = container["resources"]
    assert resources["requests"]["cpu"] == resources["limits"]["cpu"]
    assert float(resources["limits"]["cpu"]).is_integer()  # whole CPUs: no silent rounding up


@pytest.mark.parametrize("kind", ["StatefulSet", "Deployment"])
def test_advertised_address_is_the_pod_ip(kind: str) -> None:
    container, argv = _start_container(_one(kind))
    assert _parse_flags(argv, HEAD_FLAGS | NODE_FLAGS)["--advertise"] == "$(POD_IP)"
    assert _env(container, "POD_IP")["valueFrom"]["fieldRef"]["fieldPath"] == "status.podIP"


def test_every_sluice_container_reads_the_token_from_the_secret() -> None:
    secret = _one("Secret")
    containers = [c for d in DOCS if "template" in d.get("spec", {}) for c in _containers(d)]
    assert len(containers) == 3  # head, node, and the node's wait-for-head init container
    for container in containers:
        ref = _env(container, "SLUICE_TOKEN")["valueFrom"]["secretKeyRef"]
        assert ref["name"] == secret["metadata"]["name"] and ref["key"] in secret["stringData"]
        assert not any("--token" in word for word in container["command"])  # never in `ps` output


def test_head_is_ready_when_sluice_status_answers() -> None:
    probe = _start_container(_one("Deployment"))[0]["readinessProbe"]
    assert probe["exec"]["command"] == ["sluice", "status", "--address", "127.0.0.1:6380"]
