"""The schemas deploy/k8s is checked against, and the one manifest generated from other files.

Built-in kinds are validated with kubernetes-validate's strict schemas (unknown fields rejected)
for KUBERNETES_VERSION. Custom resources (the Flink operator's FlinkDeployment) are validated
against the `openAPIV3Schema` of the operator's own CRD, read from the
`flink-kubernetes-operator-api` jar on Maven Central (checked against the `.sha1` published next
to it, cached under `$WARDFLOW_CACHE/k8s-schemas`, so only the first run needs the network).
The structural schema is made strict the way the API server's strict field validation is: an
object that lists its properties and does not preserve unknown fields takes no others.

    python -m deploy.k8s_schemas validate [deploy/k8s]   # every manifest, against its schema
    python -m deploy.k8s_schemas grafana [--check]       # (re)write the Grafana ConfigMaps
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import os
import sys
import urllib.request
import zipfile
from collections.abc import Iterator, Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import yaml
from referencing import Registry, Resource

from schemas.settings import CACHE_ENV

HERE = Path(__file__).resolve().parent
MANIFESTS = HERE / "k8s"
REPO = HERE.parent
GRAFANA = REPO / "grafana"
KUBERNETES_VERSION = "1.33.0"
MAVEN_CENTRAL = "https://repo1.maven.org/maven2"
# The newest operator API on Maven Central here; its flinkVersion enum ends at v1_20 (README).
OPERATOR = ("org.apache.flink", "flink-kubernetes-operator-api", "1.10.0")
# CRDs (apiextensions.k8s.io/v1) inside the operator's API jar.
OPERATOR_CRDS = (
    "META-INF/fabric8/flinkdeployments.flink.apache.org-v1.yml",
    "META-INF/fabric8/flinksessionjobs.flink.apache.org-v1.yml",
)
KUSTOMIZATION = "kustomization.yaml"
GRAFANA_MANIFEST = MANIFESTS / "grafana-configmaps.yaml"
NAMESPACE = "wardflow"
_DEFINITIONS_ID = "https://kubernetes.io/api/_definitions.json"


class SchemaError(Exception):
    """A manifest that is not valid for its kind, or a kind no schema is known for."""


def cache_dir() -> Path:
    cache = os.environ.get(CACHE_ENV) or str(Path.home() / ".cache" / "wardflow")
    return Path(cache) / "k8s-schemas"


def maven_artifact(group: str, artifact: str, version: str, timeout_s: float = 60.0) -> Path:
    """A jar from Maven Central, downloaded once into cache_dir() and checked against the SHA-1
    Maven Central publishes next to it (on every use: a damaged cache fails loudly)."""
    name = f"{artifact}-{version}.jar"
    jar, sha1_file = cache_dir() / name, cache_dir() / f"{name}.sha1"
    if not (jar.exists() and sha1_file.exists()):
        url = f"{MAVEN_CENTRAL}/{group.replace('.', '/')}/{artifact}/{version}/{name}"
        jar.parent.mkdir(parents=True, exist_ok=True)
        with urllib.request.urlopen(f"{url}.sha1", timeout=timeout_s) as r:
            expected = r.read().decode().split()[0].strip().lower()
        with urllib.request.urlopen(url, timeout=timeout_s) as r:
            data = r.read()
        if hashlib.sha1(data).hexdigest() != expected:
            raise SchemaError(f"{url}: SHA-1 is not the published {expected}")
        staged = jar.with_name(f".{name}.{os.getpid()}")
        staged.write_bytes(data)
        os.replace(staged, jar)  # the jar before its checksum: a checksum means a whole jar
        sha1_file.write_text(expected + "\n")
    expected = sha1_file.read_text().strip()
    if hashlib.sha1(jar.read_bytes()).hexdigest() != expected:
        raise SchemaError(f"{jar} does not match its SHA-1 {expected}: delete both and rerun")
    return jar


@functools.cache
def operator_crds() -> tuple[dict[str, Any], ...]:
    """The operator's CustomResourceDefinitions, as published in its API jar."""
    with zipfile.ZipFile(maven_artifact(*OPERATOR)) as z:
        return tuple(yaml.safe_load(z.read(name)) for name in OPERATOR_CRDS)


def crd_schemas(crds: tuple[dict[str, Any], ...]) -> dict[tuple[str, str], dict[str, Any]]:
    """(apiVersion, kind) → strict JSON Schema, for every served version of every CRD."""
    out = {}
    for crd in crds:
        spec = crd["spec"]
        kind = spec["names"]["kind"]
        for v in spec["versions"]:
            if v.get("served", True):
                api_version = f"{spec['group']}/{v['name']}"
                out[api_version, kind] = custom_resource_schema(
                    api_version, kind, v["schema"]["openAPIV3Schema"]
                )
    return out


def custom_resource_schema(api_version: str, kind: str, openapi: dict[str, Any]) -> dict[str, Any]:
    """A custom resource's JSON Schema: its CRD's structural schema, strict, with the fields
    the API server adds to every resource (apiVersion, kind, and metadata as ObjectMeta)."""
    schema: dict[str, Any] = strict(openapi)
    props = schema.setdefault("properties", {})
    props["apiVersion"] = {"type": "string", "const": api_version}
    props["kind"] = {"type": "string", "const": kind}
    props["metadata"] = {
        "$ref": f"{_DEFINITIONS_ID}#/$defs/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
    }
    schema["required"] = sorted({*schema.get("required", ()), "apiVersion", "kind", "metadata"})
    schema["additionalProperties"] = False
    return schema


def strict(node: Any) -> Any:
    """A Kubernetes structural schema (OpenAPI v3 with x-kubernetes extensions) as JSON Schema:
    int-or-string and nullable spelled out, embedded resources given their implicit fields, and
    unknown fields rejected wherever the schema does not preserve them."""
    if isinstance(node, list):
        return [strict(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: strict(v) for k, v in node.items() if not k.startswith("x-kubernetes-")}
    if node.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if node.get("x-kubernetes-embedded-resource"):
        props = out.setdefault("properties", {})
        for field, shape in (("apiVersion", "string"), ("kind", "string"), ("metadata", "object")):
            props.setdefault(field, {"type": shape})
    if out.pop("nullable", False) and isinstance(out.get("type"), str):
        out["type"] = [out["type"], "null"]
    if (
        "properties" in out
        and "additionalProperties" not in out
        and not node.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


def _kubernetes_definitions() -> dict[str, Any]:
    folder = f"v{KUBERNETES_VERSION}-local-strict"
    ref = resources.files("kubernetes_validate") / "kubernetes-json-schema" / folder
    return dict(json.loads((ref / "_definitions.json").read_text()))


@functools.cache
def _crd_validators() -> dict[tuple[str, str], jsonschema.protocols.Validator]:
    registry: Registry[Any] = Registry().with_resource(
        _DEFINITIONS_ID, Resource.from_contents(_kubernetes_definitions())
    )
    return {
        key: jsonschema.Draft202012Validator(schema, registry=registry)
        for key, schema in crd_schemas(operator_crds()).items()
    }


def custom_kinds() -> set[tuple[str, str]]:
    """(apiVersion, kind) of every custom resource validate() knows (fetches the CRDs)."""
    return set(_crd_validators())


def validate(doc: Mapping[str, Any]) -> str:
    """Raise SchemaError unless `doc` is valid for its apiVersion and kind; returns what it was
    validated against. Custom kinds need the operator's CRDs (the network, once)."""
    import kubernetes_validate  # a dev dependency: only the checks need it

    key = (str(doc.get("apiVersion")), str(doc.get("kind")))
    where = f"{key[1]} {doc.get('metadata', {}).get('name')!r}"
    if key[0].startswith("flink.apache.org/"):
        validator = _crd_validators().get(key)
        if validator is None:
            raise SchemaError(f"{where}: the operator {OPERATOR[2]} CRDs have no {key}")
        errors = sorted(validator.iter_errors(dict(doc)), key=lambda e: list(e.absolute_path))
        if errors:
            raise SchemaError(f"{where}: " + "; ".join(_describe(e) for e in errors))
        return f"{OPERATOR[1]} {OPERATOR[2]} CRD"
    try:
        kubernetes_validate.validate(dict(doc), KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as e:
        raise SchemaError(f"{where}: {_describe(e)}") from e
    except kubernetes_validate.SchemaNotFoundError as e:
        raise SchemaError(f"{where}: {e.message}") from e
    return f"Kubernetes {KUBERNETES_VERSION}"


def _describe(e: jsonschema.ValidationError) -> str:
    path = ".".join(str(p) for p in e.absolute_path) or "(document)"
    return f"{path}: {e.message}"


def manifest_files(folder: Path = MANIFESTS) -> list[Path]:
    """Every manifest file under `folder`, the kustomization excepted."""
    return sorted(p for p in folder.rglob("*.yaml") if p.name != KUSTOMIZATION)


def documents(folder: Path = MANIFESTS) -> Iterator[tuple[Path, dict[str, Any]]]:
    """(file, document) for every non-empty YAML document under `folder`."""
    for path in manifest_files(folder):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                yield path, doc


# The generated Grafana files (python -m grafana.build) as ConfigMaps: name → files in it.
GRAFANA_CONFIGMAPS = {
    "grafana-dashboards": "dashboards/*.json",
    "grafana-provisioning-dashboards": "provisioning/dashboards/*.yaml",
    "grafana-provisioning-datasources": "provisioning/datasources/*.yaml",
}


def grafana_configmaps(grafana: Path = GRAFANA) -> list[dict[str, Any]]:
    """One ConfigMap per group of generated Grafana files, each file's text under its name."""
    out = []
    for name, pattern in GRAFANA_CONFIGMAPS.items():
        files = sorted(grafana.glob(pattern))
        if not files:
            raise FileNotFoundError(f"no {pattern} under {grafana}: run python -m grafana.build")
        out.append(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {
                    "name": name,
                    "namespace": NAMESPACE,
                    "labels": {
                        "app.kubernetes.io/name": "grafana",
                        "app.kubernetes.io/part-of": "wardflow",
                    },
                },
                "data": {f.name: f.read_text() for f in files},
            }
        )
    return out


def _str(dumper: Any, text: str) -> Any:
    style = "|" if "\n" in text else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", text, style=style)


# Multi-line strings as literal blocks, so the files read as themselves in the manifest.
_BlockDumper: Any = type("_BlockDumper", (yaml.SafeDumper,), {})
_BlockDumper.add_representer(str, _str)


def grafana_manifest(grafana: Path = GRAFANA) -> str:
    """The text of deploy/k8s/grafana-configmaps.yaml."""
    head = (
        "# Generated by python -m deploy.k8s_schemas grafana from the files that\n"
        "# python -m grafana.build writes; tests/unit/test_deploy_manifests.py fails when stale.\n"
    )
    body: str = yaml.dump_all(
        grafana_configmaps(grafana),
        Dumper=_BlockDumper,
        sort_keys=False,
        explicit_start=True,
        width=10_000,
    )
    return head + body


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)
    v = sub.add_parser("validate", help="validate every manifest against its schema")
    v.add_argument("folder", nargs="?", type=Path, default=MANIFESTS)
    g = sub.add_parser("grafana", help="write the Grafana ConfigMaps manifest")
    g.add_argument("--check", action="store_true", help="exit 1 if the manifest is stale")
    a = ap.parse_args(argv)
    if a.command == "grafana":
        text = grafana_manifest()
        if a.check:
            fresh = GRAFANA_MANIFEST.exists() and GRAFANA_MANIFEST.read_text() == text
            if not fresh:
                print(f"stale: {GRAFANA_MANIFEST} (run python -m deploy.k8s_schemas grafana)")
            return 0 if fresh else 1
        GRAFANA_MANIFEST.write_text(text)
        print(f"wrote {GRAFANA_MANIFEST}")
        return 0
    failed = 0
    for path, doc in documents(a.folder):
        try:
            against = validate(doc)
            print(f"ok    {path.name}: {doc['kind']} {doc['metadata']['name']} ({against})")
        except SchemaError as e:
            failed += 1
            print(f"FAIL  {path.name}: {e}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
