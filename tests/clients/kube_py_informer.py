"""The Python `kubernetes` client as an informer uses it against litecar: list, then `watch.Watch().stream`
from the list's resourceVersion, watching again from the last event's resourceVersion when a stream ends or the
server is unreachable, and listing again on a 410. After every list and event it prints its view (key ->
labels) as one JSON line, so the caller can compare it with the source at any point.

usage: kube_py_informer.py URL SECONDS
"""

import json
import sys
import time

import urllib3
from kubernetes import client, watch
from kubernetes.client.rest import ApiException

url, seconds = sys.argv[1], float(sys.argv[2])
cfg = client.Configuration()
cfg.host = url
cfg.retries = False
api = client.CoreV1Api(client.ApiClient(cfg))
view = {}


def emit(what):
    print(json.dumps({"event": what, "view": dict(sorted(view.items()))}), flush=True)


def key(o):
    return f"{o.metadata.namespace}/{o.metadata.name}"


def relist(deadline):
    while True:
        try:
            pods = api.list_pod_for_all_namespaces(_request_timeout=5)
            break
        except (ApiException, urllib3.exceptions.HTTPError) as e:
            # litecar restarting (refused) or warming up (503): try again
            if isinstance(e, ApiException) and e.status not in (503,):
                raise
            if time.time() > deadline:
                raise
            time.sleep(0.1)
    view.clear()
    for p in pods.items:
        view[key(p)] = p.metadata.labels or {}
    emit("LIST")
    return pods.metadata.resource_version


deadline = time.time() + seconds
rv = relist(deadline)
while time.time() < deadline:
    try:
        # with timeout_seconds the client raises on an ERROR event instead of retrying it
        stream = watch.Watch().stream(api.list_pod_for_all_namespaces, resource_version=rv, timeout_seconds=3,
                                      _request_timeout=10)
        for ev in stream:
            o = ev["object"]
            rv = o.metadata.resource_version
            if ev["type"] == "DELETED":
                view.pop(key(o), None)
            else:
                view[key(o)] = o.metadata.labels or {}
            emit(ev["type"])
    except ApiException as e:
        if e.status == 410:
            emit("EXPIRED")
            rv = relist(deadline)
        elif e.status == 503:
            time.sleep(0.1)
        else:
            raise
    except urllib3.exceptions.HTTPError:
        emit("DISCONNECTED")
        time.sleep(0.1)
