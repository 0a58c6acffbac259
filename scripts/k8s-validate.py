#!/usr/bin/env python3
"""Validates Kubernetes objects offline: built-in kinds against the Kubernetes 1.33 schemas (kubernetes-validate,
strict: unknown fields are errors), SqliteDatabase objects against the openAPIV3Schema of the CRD given with --crd
(unknown fields are errors there too, as the API server would prune them silently).

  k8s-validate.py --crd CRD.yaml FILE.yaml...   YAML streams
  k8s-validate.py --crd CRD.yaml --json -       one JSON object per line on stdin

Prints one line per problem (file, document, kind/name, field, message) and exits 1 if there was any.
"""
import argparse
import copy
import json
import re
import sys

import jsonschema
import kubernetes_validate
import yaml

K8S_VERSION = "1.33.0"


CEL_ENABLED_HAS = re.compile(r"^!self\.enabled \|\| has\(self\.(\w+)\)$")


def strict(schema):
    """The CRD schema with additionalProperties: false wherever properties are listed, and its CEL rules of the
    form `!self.enabled || has(self.X)` as JSON Schema (other rules are reported, not silently skipped)."""
    schema = copy.deepcopy(schema)
    schema.setdefault("properties", {}).update(
        {"apiVersion": {"type": "string"}, "kind": {"type": "string"}, "metadata": {"type": "object"}}
    )

    def walk(s):
        if not isinstance(s, dict):
            return
        conditions = []
        for rule in s.get("x-kubernetes-validations") or []:
            m = CEL_ENABLED_HAS.match(rule["rule"])
            if not m:
                sys.exit(f"CRD rule {rule['rule']!r} has no JSON Schema translation in {__file__}")
            conditions.append({
                "if": {"properties": {"enabled": {"const": True}}, "required": ["enabled"]},
                "then": {"required": [m.group(1)]},
            })
        if conditions:
            s["allOf"] = s.get("allOf", []) + conditions
        if "properties" in s and "additionalProperties" not in s and not s.get("x-kubernetes-preserve-unknown-fields"):
            s["additionalProperties"] = False
        for key in ("properties", "patternProperties"):
            for sub in (s.get(key) or {}).values():
                walk(sub)
        for key in ("items", "additionalProperties"):
            walk(s.get(key))
        for key in ("anyOf", "oneOf", "allOf"):
            for sub in s.get(key) or []:
                walk(sub)

    walk(schema)
    return schema


def crd_validators(path):
    out = {}
    with open(path) as f:
        for crd in yaml.safe_load_all(f):
            if not crd:
                continue
            group = crd["spec"]["group"]
            kind = crd["spec"]["names"]["kind"]
            for v in crd["spec"]["versions"]:
                schema = strict(v["schema"]["openAPIV3Schema"])
                out[(f"{group}/{v['name']}", kind)] = jsonschema.Draft7Validator(schema)
    return out


def check(obj, where, crds):
    if not isinstance(obj, dict):
        return [f"{where}: not a mapping"]
    kind = obj.get("kind", "")
    name = (obj.get("metadata") or {}).get("name", "<unnamed>")
    where = f"{where} ({kind} {name})"
    key = (obj.get("apiVersion", ""), kind)
    if key in crds:
        return [
            f"{where}: {'.'.join(str(p) for p in e.absolute_path) or '<root>'}: {e.message}"
            for e in crds[key].iter_errors(obj)
        ]
    if obj.get("apiVersion", "").endswith(".sqlite.io/v1alpha1"):
        return [f"{where}: no CRD given for {key}"]
    try:
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
    except kubernetes_validate.ValidationError as e:
        path = ".".join(str(p) for p in e.path)
        return [f"{where}: {path or '<root>'}: {e.message}"]
    except Exception as e:  # kinds without a schema (e.g. ServiceMonitor) raise with an empty message
        if str(e).strip():
            return [f"{where}: {e}"]
        print(f"{where}: no Kubernetes schema for this kind; skipped", file=sys.stderr)
    return []


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--crd", action="append", default=[])
    ap.add_argument("--json", action="store_true", help="inputs hold one JSON object per line")
    ap.add_argument("files", nargs="+")
    args = ap.parse_args()
    crds = {}
    for c in args.crd:
        crds.update(crd_validators(c))
    problems = []
    count = 0
    for path in args.files:
        f = sys.stdin if path == "-" else open(path)
        with f:
            if args.json:
                docs = [json.loads(line) for line in f if line.strip()]
            else:
                docs = list(yaml.safe_load_all(f))
        for i, doc in enumerate(docs, 1):
            if doc is None:
                continue
            count += 1
            problems += check(doc, f"{path}: document {i}", crds)
    for p in problems:
        print(p)
    print(f"{count} object(s) checked, {len(problems)} problem(s)", file=sys.stderr)
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
