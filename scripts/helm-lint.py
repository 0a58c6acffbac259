#!/usr/bin/env python3
"""helm lint with the real Helm library (helm-sdkpy, Python >= 3.12): the chart as shipped, and a copy with every
optional template switched on, so template errors in toggled parts fail too. Exits 1 on any error-level message."""
import asyncio
import shutil
import sys
import tempfile

import helm_sdkpy
import yaml

ERROR = 3
TOGGLES = {
    "metrics": {"serviceMonitor": {"enabled": True}},
    "dashboards": {"enabled": True},
    "alerts": {"enabled": True, "prometheusRule": True},
    "operator": {"watchNamespace": "apps", "litecarImage": "registry.example/litecar:1"},
    "podAnnotations": {"example.com/a": "b"},
    "nodeSelector": {"kubernetes.io/os": "linux"},
}


def merge(a, b):
    for k, v in b.items():
        a[k] = merge(a.get(k, {}), v) if isinstance(v, dict) and isinstance(a.get(k), dict) else v
    return a


def lint(path, label):
    result = asyncio.run(helm_sdkpy.Lint(helm_sdkpy.Configuration()).run(path))
    errors = [m for m in result.get("Messages") or [] if m.get("Severity", 0) >= ERROR]
    for m in result.get("Messages") or []:
        print(f"{label}: severity {m.get('Severity')} {m.get('Path')} {m.get('Err') or ''}")
    if result.get("Errors") or errors:
        print(f"{label}: helm lint failed: {result}", file=sys.stderr)
        return False
    return True


def main():
    chart = sys.argv[1]
    ok = lint(chart, "defaults")
    with tempfile.TemporaryDirectory() as tmp:
        for variant, values in [("all-toggles", TOGGLES), ("alerts-configmap", {"alerts": {"enabled": True}})]:
            copy = f"{tmp}/{variant}/litecar"
            shutil.copytree(chart, copy)
            with open(f"{copy}/values.yaml") as f:
                v = yaml.safe_load(f)
            with open(f"{copy}/values.yaml", "w") as f:
                yaml.safe_dump(merge(v, values), f)
            ok = lint(copy, variant) and ok
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
