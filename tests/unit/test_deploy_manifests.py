"""deploy/: every Kubernetes manifest is valid against the real schemas (Kubernetes' own, strict,
and the Flink operator's CRD from Maven Central), the FlinkDeployments run wardflow's jobs the
way a production job runs (application mode, HA, checkpoints, savepoint upgrades), the Grafana
ConfigMaps are the generated files, and the job image is Flink 2.2.1 with Python 3.11.

The CRD tests are `integration`: the operator's API jar is downloaded once (then cached under
$WARDFLOW_CACHE/k8s-schemas, so reruns are offline)."""

from __future__ import annotations

import copy
import importlib.util
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from deploy import k8s_schemas
from deploy.k8s_schemas import SchemaError, validate
from schemas.settings import CACHE_ENV, SETTINGS, STATE_ENV

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "deploy" / "docker" / "Dockerfile"
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
VERSION = PYPROJECT["project"]["version"]
JOB_IMAGE = f"wardflow/job:{VERSION}"
VENV_PYTHON = "/opt/wardflow/venv/bin/python"
DOCS = [doc for _, doc in k8s_schemas.documents()]
CUSTOM = [d for d in DOCS if d["apiVersion"].startswith("flink.apache.org/")]
BUILT_IN = [d for d in DOCS if d not in CUSTOM]
FLINK_DEPLOYMENTS = [d for d in CUSTOM if d["kind"] == "FlinkDeployment"]


def _id(doc: dict[str, Any]) -> str:
    return f"{doc['kind']}/{doc['metadata']['name']}"


def _of_kind(kind: str) -> list[dict[str, Any]]:
    return [d for d in DOCS if d["kind"] == kind]


def _pod_specs() -> list[tuple[str, dict[str, Any]]]:
    """(owner, pod spec) of everything that runs pods, FlinkDeployments' pod templates included."""
    out = [(_id(d), d["spec"]["template"]["spec"]) for d in _of_kind("Deployment")]
    out += [(_id(d), d["spec"]["template"]["spec"]) for d in _of_kind("StatefulSet")]
    out += [(_id(d), d["spec"]["podTemplate"]["spec"]) for d in FLINK_DEPLOYMENTS]
    return out


def _containers() -> list[tuple[str, dict[str, Any]]]:
    return [(owner, c) for owner, spec in _pod_specs() for c in spec["containers"]]


def _deployment(name: str) -> dict[str, Any]:
    (found,) = [d for d in _of_kind("Deployment") if d["metadata"]["name"] == name]
    return copy.deepcopy(found)


# The spine job is a benchmark's subject (bench/spine.py), not something a hospital runs.
NOT_DEPLOYED = {"sepsis_news2"}


def test_deploy_k8s_holds_every_job_and_every_service_around_it() -> None:
    kinds = {_id(d) for d in DOCS}
    jobs = {p.stem for p in (REPO / "jobs").glob("*.py") if p.stem != "__init__"} - NOT_DEPLOYED
    deployed = {d["spec"]["job"]["args"][1].removeprefix("jobs.") for d in FLINK_DEPLOYMENTS}
    assert jobs and deployed == jobs
    assert {"StatefulSet/kafka", "StatefulSet/clickhouse", "StatefulSet/redis"} <= kinds
    assert {"Deployment/grafana", "Deployment/wardflow-loader"} <= kinds
    assert "Deployment/wardflow-quarantine-actuator" in kinds
    assert "Deployment/wardflow-feast-demographics" in kinds
    assert {"Deployment/wardflow-hl7-gateway", "Service/hl7-gateway"} <= kinds
    assert "Deployment/wardflow-capacity-forecast" in kinds
    assert all(
        d["metadata"].get("namespace") == "wardflow" for d in DOCS if d["kind"] != "Namespace"
    )


@pytest.mark.parametrize("doc", BUILT_IN, ids=_id)
def test_every_built_in_manifest_validates_strictly_against_the_kubernetes_schema(
    doc: dict[str, Any],
) -> None:
    assert validate(doc) == f"Kubernetes {k8s_schemas.KUBERNETES_VERSION}"


@pytest.mark.integration
@pytest.mark.parametrize("doc", CUSTOM, ids=_id)
def test_every_custom_resource_validates_against_the_operators_crd(doc: dict[str, Any]) -> None:
    assert validate(doc).endswith(f"{k8s_schemas.OPERATOR[2]} CRD")


def test_a_manifest_with_an_unknown_field_or_a_wrong_type_fails_validation() -> None:
    unknown = _deployment("grafana")
    unknown["spec"]["template"]["spec"]["containers"][0]["imagePullPolicyy"] = "Always"
    with pytest.raises(SchemaError, match="imagePullPolicyy"):
        validate(unknown)
    wrong_type = _deployment("grafana")
    wrong_type["spec"]["replicas"] = "one"
    with pytest.raises(SchemaError, match="replicas"):
        validate(wrong_type)
    with pytest.raises(SchemaError, match="Couldn't find schema"):
        validate({"apiVersion": "apps/v1", "kind": "Deploymentt", "metadata": {"name": "x"}})


@pytest.mark.integration
def test_a_flink_deployment_outside_the_operators_crd_fails_validation() -> None:
    broken = copy.deepcopy(FLINK_DEPLOYMENTS[0])
    broken["spec"]["job"]["upgradeModee"] = "savepoint"
    with pytest.raises(SchemaError, match="upgradeModee"):
        validate(broken)
    broken = copy.deepcopy(FLINK_DEPLOYMENTS[0])
    broken["spec"]["job"]["upgradeMode"] = "on-a-whim"
    with pytest.raises(SchemaError, match=r"spec\.job\.upgradeMode"):
        validate(broken)
    broken = copy.deepcopy(FLINK_DEPLOYMENTS[0])
    broken["spec"]["podTemplate"]["spec"]["containers"][0]["envv"] = []
    with pytest.raises(SchemaError, match="envv"):
        validate(broken)
    broken = copy.deepcopy(FLINK_DEPLOYMENTS[0])
    broken["metadata"]["labels"] = {"replicas": 2}  # ObjectMeta from the Kubernetes schema
    with pytest.raises(SchemaError, match=r"metadata\.labels\.replicas"):
        validate(broken)


def test_a_crd_schema_is_made_as_strict_as_the_api_servers_field_validation() -> None:
    openapi = {
        "type": "object",
        "properties": {
            "port": {"x-kubernetes-int-or-string": True},
            "note": {"type": "string", "nullable": True},
            "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
            "map": {"type": "object", "additionalProperties": {"type": "string"}},
            "pod": {"type": "object", "x-kubernetes-embedded-resource": True, "properties": {}},
        },
    }
    schema = k8s_schemas.strict(openapi)
    assert schema["additionalProperties"] is False
    assert schema["properties"]["port"] == {"anyOf": [{"type": "integer"}, {"type": "string"}]}
    assert schema["properties"]["note"]["type"] == ["string", "null"]
    assert "additionalProperties" not in schema["properties"]["free"]
    assert schema["properties"]["map"]["additionalProperties"] == {"type": "string"}
    assert set(schema["properties"]["pod"]["properties"]) == {"apiVersion", "kind", "metadata"}
    assert not any(k.startswith("x-kubernetes") for k in str(schema).split("'"))


def test_a_cached_operator_jar_that_does_not_match_its_published_sha1_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(CACHE_ENV, str(tmp_path))
    group, artifact, version = k8s_schemas.OPERATOR
    jar = k8s_schemas.cache_dir() / f"{artifact}-{version}.jar"
    jar.parent.mkdir(parents=True)
    jar.write_bytes(b"not the jar")
    jar.with_name(jar.name + ".sha1").write_text("0" * 40 + "\n")
    with pytest.raises(SchemaError, match="does not match its SHA-1"):
        k8s_schemas.maven_artifact(group, artifact, version)


def _flink_conf(d: dict[str, Any]) -> dict[str, str]:
    return dict(d["spec"]["flinkConfiguration"])


@pytest.mark.parametrize("d", FLINK_DEPLOYMENTS, ids=_id)
def test_every_flink_deployment_runs_a_wardflow_job_in_application_mode_with_ha_and_savepoints(
    d: dict[str, Any],
) -> None:
    spec, job, conf = d["spec"], d["spec"]["job"], _flink_conf(d)
    # Application mode: the deployment carries its job (a session cluster has none).
    assert spec["mode"] == "native" and job["state"] == "running"
    assert (
        job["jarURI"]
        == f"local:///opt/flink/opt/flink-python-{_dockerfile_args()['FLINK_VERSION']}.jar"
    )
    assert job["entryClass"] == "org.apache.flink.client.python.PythonDriver"
    assert job["args"][0] == "-pym" and job["args"][1].startswith("jobs.")
    assert importlib.util.find_spec(job["args"][1]) is not None, job["args"][1]
    assert (REPO / (job["args"][1].replace(".", "/") + ".py")).is_file()
    assert job["upgradeMode"] == "savepoint" and job["parallelism"] >= 1
    assert spec["image"] == JOB_IMAGE
    assert conf["high-availability.type"] == "kubernetes"
    for key in (
        "high-availability.storageDir",
        "execution.checkpointing.dir",
        "execution.checkpointing.savepoint-dir",
    ):
        assert re.fullmatch(r"(s3|gs|abfss|hdfs)://[^/]+/.+", conf[key]), (key, conf[key])
    assert conf["state.backend.type"] == "rocksdb"
    assert conf["python.executable"] == conf["python.client.executable"] == VENV_PYTHON
    assert conf["kubernetes.rest-service.exposed.type"] == "ClusterIP" and "ingress" not in spec
    for role in ("jobManager", "taskManager"):
        assert spec[role]["resource"]["cpu"] > 0 and spec[role]["resource"]["memory"]
    accounts = {a["metadata"]["name"] for a in _of_kind("ServiceAccount")}
    assert spec["serviceAccount"] in accounts
    (container,) = spec["podTemplate"]["spec"]["containers"]
    assert container["name"] == "flink-main-container"  # the operator merges by this name


@pytest.mark.parametrize("d", FLINK_DEPLOYMENTS, ids=_id)
def test_no_flink_deployment_lets_an_upgrade_drop_state_it_cannot_place(d: dict[str, Any]) -> None:
    """`allowNonRestoredState` left on drops silently, at every later upgrade, the state of any
    operator whose id the new plan moved (the sources' offsets, the quality monitor's open
    quarantines): an upgrade that needs it patches it on for once (README)."""
    assert d["spec"]["job"].get("allowNonRestoredState", False) is False
    assert "execution.savepoint.ignore-unclaimed-state" not in _flink_conf(d)


def test_each_job_keeps_its_own_checkpoints_savepoints_and_ha_metadata() -> None:
    for key in (
        "high-availability.storageDir",
        "execution.checkpointing.dir",
        "execution.checkpointing.savepoint-dir",
    ):
        dirs = [_flink_conf(d)[key] for d in FLINK_DEPLOYMENTS]
        assert len(set(dirs)) == len(dirs), key
    assert not _of_kind("FlinkSessionJob")


def test_every_wardflow_container_runs_the_job_image() -> None:
    images = [c["image"] for _, c in _containers() if "image" in c]  # the operator sets Flink's
    ours = [i for i in images if i.startswith("wardflow/")]
    ours += [d["spec"]["image"] for d in FLINK_DEPLOYMENTS]
    assert ours and set(ours) == {JOB_IMAGE}
    # Everything else at a fixed release, never a moving `latest`.
    assert all(re.fullmatch(r"[\w./-]+:\d[\w.-]*", i) for i in images), images


def test_every_wardflow_variable_in_the_manifests_is_a_setting() -> None:
    known = {s.env for s in SETTINGS} | {CACHE_ENV, STATE_ENV}
    names = set()
    for cm in _of_kind("ConfigMap"):
        names |= {k for k in cm.get("data", {}) if k.startswith("WARDFLOW_")}
    for _, c in _containers():
        names |= {e["name"] for e in c.get("env", []) if e["name"].startswith("WARDFLOW_")}
    assert names and names - known == set()


def test_nothing_is_exposed_beyond_the_cluster() -> None:
    assert not _of_kind("Ingress")
    for svc in _of_kind("Service"):
        assert svc["spec"].get("type", "ClusterIP") == "ClusterIP", _id(svc)
    for owner, spec in _pod_specs():
        assert not spec.get("hostNetwork"), owner
        for c in spec["containers"]:
            assert all("hostPort" not in p for p in c.get("ports", [])), owner


def test_everything_a_pod_refers_to_is_deployed_or_a_secret_the_readme_says_to_create() -> None:
    readme = (k8s_schemas.MANIFESTS / "README.md").read_text()
    config_maps = {d["metadata"]["name"] for d in _of_kind("ConfigMap")}
    claims = {d["metadata"]["name"] for d in _of_kind("PersistentVolumeClaim")}
    secrets = set()
    for owner, spec in _pod_specs():
        for v in spec.get("volumes", []):
            if "configMap" in v:
                assert v["configMap"]["name"] in config_maps, owner
            if "persistentVolumeClaim" in v:
                assert v["persistentVolumeClaim"]["claimName"] in claims, owner
        for c in spec["containers"]:
            for src in c.get("envFrom", []):
                if "configMapRef" in src:
                    assert src["configMapRef"]["name"] in config_maps, owner
                if "secretRef" in src:
                    secrets.add(src["secretRef"]["name"])
            for e in c.get("env", []):
                ref = e.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    secrets.add(ref["name"])
                    assert f"{ref['name']}" in readme and ref["key"] in readme, (owner, ref)
    assert secrets and all(s in readme for s in secrets)
    assert not _of_kind("Secret")  # secret values never live in the repository


def test_the_grafana_config_maps_carry_exactly_the_generated_files() -> None:
    assert k8s_schemas.GRAFANA_MANIFEST.read_text() == k8s_schemas.grafana_manifest(), (
        "stale: run python -m deploy.k8s_schemas grafana"
    )
    maps = {d["metadata"]["name"]: d["data"] for d in _of_kind("ConfigMap")}
    for name, pattern in k8s_schemas.GRAFANA_CONFIGMAPS.items():
        files = {f.name: f.read_text() for f in (REPO / "grafana").glob(pattern)}
        assert files and maps[name] == files, name
    # Grafana mounts each where the provisioning expects it.
    provider = yaml.safe_load(maps["grafana-provisioning-dashboards"]["wardflow.yaml"])
    grafana = _deployment("grafana")["spec"]["template"]["spec"]
    volumes = {v["name"]: v["configMap"]["name"] for v in grafana["volumes"] if "configMap" in v}
    mounts = {
        volumes[m["name"]]: m["mountPath"]
        for m in grafana["containers"][0]["volumeMounts"]
        if m["name"] in volumes
    }
    assert mounts == {
        "grafana-dashboards": provider["providers"][0]["options"]["path"],
        "grafana-provisioning-dashboards": "/etc/grafana/provisioning/dashboards",
        "grafana-provisioning-datasources": "/etc/grafana/provisioning/datasources",
    }


def test_the_kustomization_lists_every_manifest_file() -> None:
    kustomization = yaml.safe_load((k8s_schemas.MANIFESTS / k8s_schemas.KUSTOMIZATION).read_text())
    listed = sorted(kustomization["resources"])
    assert listed == sorted(p.name for p in k8s_schemas.manifest_files())
    assert kustomization["namespace"] == "wardflow"


def _dockerfile() -> tuple[dict[str, str], list[tuple[str, str]], str]:
    """(global ARG defaults, [(stage name, base image)], instructions text) of the Dockerfile."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    lines = [
        ln.strip() for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")
    ]
    args: dict[str, str] = {}
    stages: list[tuple[str, str]] = []
    for ln in lines:
        word, _, rest = ln.partition(" ")
        if word == "ARG" and not stages and "=" in rest:
            name, _, default = rest.partition("=")
            args[name] = default
        elif word == "FROM":
            parts = rest.split()
            image = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], parts[0])
            stages.append((parts[2] if len(parts) > 2 else f"#{len(stages)}", image))
    return args, stages, "\n".join(lines)


def _dockerfile_args() -> dict[str, str]:
    return _dockerfile()[0]


def test_the_job_image_is_flink_2_2_1_with_python_3_11_and_the_projects_pins() -> None:
    args, stages, text = _dockerfile()
    names = dict(stages)
    base = stages[-1][1]
    while base in names:  # follow the final stage down to the image it starts from
        base = names[base]
    assert base == "flink:2.2.1-java17"
    assert f"apache-flink=={args['FLINK_VERSION']}" in PYPROJECT["project"]["dependencies"]
    assert args["PYTHON_VERSION"] == "3.11"
    assert PYPROJECT["project"]["requires-python"] == ">=3.11,<3.12"
    assert names["wheel"] == "python:3.11-slim-bookworm"
    assert (
        "pip wheel --no-deps" in text and "pip install --no-cache-dir /tmp/wheels/wardflow-" in text
    )
    assert "-f /build/flink-pom.xml dependency:copy-dependencies" in text
    assert "COPY deploy/local/maven/flink-pom.xml" in text
    # The decode functions are built in the image with the function the jobs call.
    from udfs import java_decode

    assert "from udfs.java_decode import decoder_jar" in text and callable(java_decode.decoder_jar)
    env = dict(re.findall(r"(WARDFLOW_\w+)=(\S+)", text))
    assert env == {
        "WARDFLOW_FLINK_JARS": "/opt/wardflow/flink-jars",
        "WARDFLOW_UDF_JAR_DIR": "/opt/wardflow/udf-jars",
    }
    assert "/opt/wardflow/venv" in text and text.rstrip().endswith("USER flink")
    assert VENV_PYTHON.startswith("/opt/wardflow/venv/")


def test_only_the_hl7_gateway_holds_the_phi_key_and_it_listens_where_its_service_points() -> None:
    holders = {
        owner
        for owner, c in _containers()
        for e in c.get("env", [])
        if e.get("valueFrom", {}).get("secretKeyRef", {}).get("name") == "wardflow-phi"
    }
    assert holders == {"Deployment/wardflow-hl7-gateway"}
    gateway = _deployment("wardflow-hl7-gateway")
    [c] = gateway["spec"]["template"]["spec"]["containers"]
    args = c["command"][c["command"].index("jobs.feeds.hl7_gateway") + 1 :]
    assert args[args.index("--port") + 1] == "2575"
    assert args[args.index("--host") + 1] == "0.0.0.0"  # the Service reaches the pod's address
    [service] = [d for d in _of_kind("Service") if d["metadata"]["name"] == "hl7-gateway"]
    assert service["spec"]["selector"] == gateway["spec"]["selector"]["matchLabels"]
    assert [p["port"] for p in service["spec"]["ports"]] == [2575]
