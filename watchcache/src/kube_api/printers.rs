//! The cells of one row per kind, as the API server's printers compute them (`pkg/printers/internalversion`).

use std::time::SystemTime;

use serde_json::{Value, json};

use super::age::{age, since};

fn s<'a>(v: &'a Value, path: &[&str]) -> &'a str {
    path.iter().try_fold(v, |v, k| v.get(*k)).and_then(Value::as_str).unwrap_or("")
}

fn arr<'a>(v: &'a Value, path: &[&str]) -> &'a [Value] {
    path.iter().try_fold(v, |v, k| v.get(*k)).and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[])
}

fn or_none(s: &str) -> String {
    if s.is_empty() { "<none>".into() } else { s.to_owned() }
}

fn name_age(o: &Value, now: SystemTime) -> (Value, Value) {
    (json!(s(o, &["metadata", "name"])), json!(age(o["metadata"]["creationTimestamp"].as_str(), now)))
}

pub(super) fn default(o: &Value, now: SystemTime) -> (Vec<Value>, Option<Value>) {
    let (n, a) = name_age(o, now);
    (vec![n, a], None)
}

fn count(v: &Value) -> usize {
    v.as_object().map_or(0, |m| m.len())
}

pub(super) fn config_map(o: &Value, now: SystemTime) -> (Vec<Value>, Option<Value>) {
    let (n, a) = name_age(o, now);
    (vec![n, json!(count(&o["data"]) + count(&o["binaryData"])), a], None)
}

pub(super) fn secret(o: &Value, now: SystemTime) -> (Vec<Value>, Option<Value>) {
    let (n, a) = name_age(o, now);
    (vec![n, json!(s(o, &["type"])), json!(count(&o["data"])), a], None)
}

pub(super) fn namespace(o: &Value, now: SystemTime) -> (Vec<Value>, Option<Value>) {
    let (n, a) = name_age(o, now);
    (vec![n, json!(s(o, &["status", "phase"])), a], None)
}

fn condition_true(o: &Value, ty: &str) -> Option<bool> {
    arr(o, &["status", "conditions"]).iter().find(|c| c["type"] == ty).map(|c| c["status"] == "True")
}

/// The latest `lastState.terminated.finishedAt` of `statuses`, as seconds ago.
fn last_restart(statuses: &[&Value], now: SystemTime) -> Option<(i64, String)> {
    statuses
        .iter()
        .filter_map(|c| c["lastState"]["terminated"]["finishedAt"].as_str())
        .filter_map(|t| since(Some(t), now).map(|s| (s, t.to_owned())))
        .min_by_key(|(s, _)| *s)
}

fn terminated_reason(t: &Value, prefix: &str) -> String {
    match t["reason"].as_str().filter(|r| !r.is_empty()) {
        Some(r) => format!("{prefix}{r}"),
        None => match t["signal"].as_i64().filter(|s| *s != 0) {
            Some(sig) => format!("{prefix}Signal:{sig}"),
            None => format!("{prefix}ExitCode:{}", t["exitCode"].as_i64().unwrap_or(0)),
        },
    }
}

/// The API server's pod printer: READY, STATUS (the most telling container state) and RESTARTS.
pub(super) fn pod(o: &Value, now: SystemTime) -> (Vec<Value>, Option<Value>) {
    let phase = s(o, &["status", "phase"]);
    let mut reason = match s(o, &["status", "reason"]) {
        "" => phase.to_owned(),
        r => r.to_owned(),
    };
    if arr(o, &["status", "conditions"]).iter().any(|c| c["type"] == "PodScheduled" && c["reason"] == "SchedulingGated")
    {
        reason = "SchedulingGated".into();
    }
    let init_specs = arr(o, &["spec", "initContainers"]);
    let sidecar = |name: &Value| init_specs.iter().any(|c| c["name"] == *name && c["restartPolicy"] == "Always");
    let total =
        arr(o, &["spec", "containers"]).len() + init_specs.iter().filter(|c| c["restartPolicy"] == "Always").count();
    let mut ready = 0usize;
    let init_statuses = arr(o, &["status", "initContainerStatuses"]);
    let mut restarts: i64 = 0;
    let mut sidecar_restarts: i64 = 0;
    let mut initializing = false;
    for (i, c) in init_statuses.iter().enumerate() {
        let n = c["restartCount"].as_i64().unwrap_or(0);
        restarts += n;
        if sidecar(&c["name"]) {
            sidecar_restarts += n;
        }
        let term = &c["state"]["terminated"];
        let waiting = s(c, &["state", "waiting", "reason"]);
        if term.is_object() && term["exitCode"].as_i64() == Some(0) {
            continue;
        }
        if sidecar(&c["name"]) && c["started"] == true {
            if c["ready"] == true {
                ready += 1;
            }
            continue;
        }
        reason = if term.is_object() {
            terminated_reason(term, "Init:")
        } else if !waiting.is_empty() && waiting != "PodInitializing" {
            format!("Init:{waiting}")
        } else {
            format!("Init:{i}/{}", init_specs.len())
        };
        initializing = true;
        break;
    }
    let mut restart_from: Vec<&Value> = init_statuses.iter().collect();
    if !initializing || condition_true(o, "Initialized") == Some(true) {
        restarts = sidecar_restarts;
        restart_from = init_statuses.iter().filter(|c| sidecar(&c["name"])).collect();
        let statuses = arr(o, &["status", "containerStatuses"]);
        let mut running = false;
        for c in statuses.iter().rev() {
            restarts += c["restartCount"].as_i64().unwrap_or(0);
            let waiting = s(c, &["state", "waiting", "reason"]);
            let term = &c["state"]["terminated"];
            if !waiting.is_empty() {
                reason = waiting.to_owned();
            } else if term.is_object() {
                reason = terminated_reason(term, "");
            } else if c["ready"] == true && c["state"]["running"].is_object() {
                running = true;
                ready += 1;
            }
        }
        restart_from.extend(statuses.iter());
        if reason == "Completed" && running {
            reason = if condition_true(o, "Ready") == Some(true) { "Running" } else { "NotReady" }.into();
        }
    }
    let deleting = o["metadata"]["deletionTimestamp"].is_string();
    if deleting && s(o, &["status", "reason"]) == "NodeLost" {
        reason = "Unknown".into();
    } else if deleting && phase != "Succeeded" && phase != "Failed" {
        reason = "Terminating".into();
    }
    let restarts_cell = match last_restart(&restart_from, now) {
        Some((_, at)) if restarts != 0 => format!("{restarts} ({} ago)", age(Some(&at), now)),
        _ => restarts.to_string(),
    };
    let ip = arr(o, &["status", "podIPs"]).first().map(|p| s(p, &["ip"])).unwrap_or("");
    let gates = arr(o, &["spec", "readinessGates"]);
    let gates_cell = if gates.is_empty() {
        "<none>".to_owned()
    } else {
        let ok = gates.iter().filter(|g| condition_true(o, s(g, &["conditionType"])) == Some(true)).count();
        format!("{ok}/{}", gates.len())
    };
    let (n, a) = name_age(o, now);
    let cells = vec![
        n,
        json!(format!("{ready}/{total}")),
        json!(reason),
        json!(restarts_cell),
        a,
        json!(or_none(ip)),
        json!(or_none(s(o, &["spec", "nodeName"]))),
        json!(or_none(s(o, &["status", "nominatedNodeName"]))),
        json!(gates_cell),
    ];
    let conditions = match phase {
        "Succeeded" => Some(json!([{"type": "Completed", "status": "True", "reason": "Succeeded",
                                    "message": "The pod has completed successfully."}])),
        "Failed" => {
            Some(json!([{"type": "Completed", "status": "True", "reason": "Failed", "message": "The pod failed."}]))
        }
        _ => None,
    };
    (cells, conditions)
}

pub(super) fn node(o: &Value, now: SystemTime) -> (Vec<Value>, Option<Value>) {
    let mut status: Vec<String> = match condition_true(o, "Ready") {
        Some(true) => vec!["Ready".into()],
        Some(false) => vec!["NotReady".into()],
        None => vec!["Unknown".into()],
    };
    if o["spec"]["unschedulable"] == true {
        status.push("SchedulingDisabled".into());
    }
    let mut roles: Vec<String> = o["metadata"]["labels"]
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| match k.strip_prefix("node-role.kubernetes.io/") {
            Some(r) if !r.is_empty() => Some(r.to_owned()),
            _ if k == "kubernetes.io/role" => v.as_str().filter(|r| !r.is_empty()).map(str::to_owned),
            _ => None,
        })
        .collect();
    roles.sort();
    roles.dedup();
    let addr = |ty: &str| {
        arr(o, &["status", "addresses"]).iter().find(|a| a["type"] == ty).map(|a| s(a, &["address"]).to_owned())
    };
    let info = |k: &str| or_none(s(o, &["status", "nodeInfo", k]));
    let (n, a) = name_age(o, now);
    let cells = vec![
        n,
        json!(status.join(",")),
        json!(if roles.is_empty() { "<none>".into() } else { roles.join(",") }),
        a,
        json!(s(o, &["status", "nodeInfo", "kubeletVersion"])),
        json!(or_none(&addr("InternalIP").unwrap_or_default())),
        json!(or_none(&addr("ExternalIP").unwrap_or_default())),
        json!(info("osImage")),
        json!(info("kernelVersion")),
        json!(info("containerRuntimeVersion")),
    ];
    (cells, None)
}

fn labels_text(v: &Value) -> String {
    let m = v.as_object().into_iter().flatten();
    let pairs: Vec<String> = m.map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default())).collect();
    if pairs.is_empty() { "<none>".into() } else { pairs.join(",") }
}

pub(super) fn service(o: &Value, now: SystemTime) -> (Vec<Value>, Option<Value>) {
    let ty = s(o, &["spec", "type"]);
    let ty = if ty.is_empty() { "ClusterIP" } else { ty };
    let external_ips: Vec<String> =
        arr(o, &["spec", "externalIPs"]).iter().filter_map(Value::as_str).map(str::to_owned).collect();
    let ingress: Vec<String> = arr(o, &["status", "loadBalancer", "ingress"])
        .iter()
        .map(|i| if s(i, &["ip"]).is_empty() { s(i, &["hostname"]) } else { s(i, &["ip"]) }.to_owned())
        .filter(|s| !s.is_empty())
        .collect();
    let external = match ty {
        "ClusterIP" | "NodePort" if external_ips.is_empty() => "<none>".to_owned(),
        "ClusterIP" | "NodePort" => external_ips.join(","),
        "LoadBalancer" => {
            let all: Vec<String> = ingress.into_iter().chain(external_ips).collect();
            if all.is_empty() { "<pending>".to_owned() } else { all.join(",") }
        }
        "ExternalName" => s(o, &["spec", "externalName"]).to_owned(),
        _ => "<unknown>".to_owned(),
    };
    let ports: Vec<String> = arr(o, &["spec", "ports"])
        .iter()
        .map(|p| {
            let proto = p["protocol"].as_str().unwrap_or("TCP");
            match p["nodePort"].as_i64().filter(|n| *n != 0) {
                Some(np) => format!("{}:{np}/{proto}", p["port"]),
                None => format!("{}/{proto}", p["port"]),
            }
        })
        .collect();
    let (n, a) = name_age(o, now);
    let cells = vec![
        n,
        json!(ty),
        json!(or_none(s(o, &["spec", "clusterIP"]))),
        json!(external),
        json!(if ports.is_empty() { "<none>".into() } else { ports.join(",") }),
        a,
        json!(labels_text(&o["spec"]["selector"])),
    ];
    (cells, None)
}

pub(super) fn deployment(o: &Value, now: SystemTime) -> (Vec<Value>, Option<Value>) {
    let n_of = |k: &str| o["status"][k].as_i64().unwrap_or(0);
    let desired = o["spec"]["replicas"].as_i64().unwrap_or(0);
    let containers = arr(o, &["spec", "template", "spec", "containers"]);
    let join = |k: &str| containers.iter().map(|c| s(c, &[k])).collect::<Vec<_>>().join(",");
    let selector = &o["spec"]["selector"];
    let mut terms: Vec<String> = labels_text(&selector["matchLabels"]).split(',').map(str::to_owned).collect();
    terms.retain(|t| t != "<none>");
    for e in arr(selector, &["matchExpressions"]) {
        let values: Vec<&str> = arr(e, &["values"]).iter().filter_map(Value::as_str).collect();
        let key = s(e, &["key"]);
        terms.push(match s(e, &["operator"]) {
            "In" => format!("{key} in ({})", values.join(",")),
            "NotIn" => format!("{key} notin ({})", values.join(",")),
            "Exists" => key.to_owned(),
            "DoesNotExist" => format!("!{key}"),
            _ => continue,
        });
    }
    let (n, a) = name_age(o, now);
    let cells = vec![
        n,
        json!(format!("{}/{desired}", n_of("readyReplicas"))),
        json!(n_of("updatedReplicas")),
        json!(n_of("availableReplicas")),
        a,
        json!(join("name")),
        json!(join("image")),
        json!(if terms.is_empty() { "<none>".into() } else { terms.join(",") }),
    ];
    (cells, None)
}
