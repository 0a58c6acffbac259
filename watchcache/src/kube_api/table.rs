//! `Accept: application/json;as=Table;v=v1;g=meta.k8s.io`: the rows and columns the API server's printers give
//! kubectl for the kinds a cache commonly holds (priority 1 columns are `-o wide`), and Name/Age for the rest.

use std::time::SystemTime;

use serde_json::{Value, json};

use super::printers::{config_map, default, deployment, namespace, node, pod, secret, service};

/// What each row carries besides its cells (`?includeObject=`), as the API server defaults it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IncludeObject {
    None,
    #[default]
    Metadata,
    Object,
}

impl IncludeObject {
    pub fn parse(v: Option<&str>) -> Result<Self, String> {
        match v.unwrap_or("") {
            "" | "Metadata" => Ok(Self::Metadata),
            "None" => Ok(Self::None),
            "Object" => Ok(Self::Object),
            other => Err(format!(
                "includeObject: Unsupported value: \"{other}\": supported values: \"None\", \"Metadata\", \"Object\""
            )),
        }
    }
}

/// Whether an Accept header asks for a Table (kubectl's human output does; JSON and YAML output do not).
pub fn wants_table(accept: &str) -> bool {
    accept.split(',').any(|media| {
        let params: Vec<&str> = media.split(';').map(str::trim).collect();
        params.contains(&"as=Table") && params.contains(&"g=meta.k8s.io") && params.contains(&"v=v1")
    })
}

struct Column {
    name: &'static str,
    ty: &'static str,
    priority: u8,
    description: &'static str,
}

const fn col(name: &'static str, ty: &'static str, priority: u8, description: &'static str) -> Column {
    Column { name, ty, priority, description }
}

const NAME: Column = col("Name", "string", 0, "Name must be unique within a namespace.");
const AGE: Column = col(
    "Age",
    "string",
    0,
    "CreationTimestamp is a timestamp representing the server time when this object was created.",
);

const POD: &[Column] = &[
    NAME,
    col("Ready", "string", 0, "The aggregate readiness state of this pod for accepting traffic."),
    col("Status", "string", 0, "The aggregate status of the containers in this pod."),
    col("Restarts", "string", 0, "The number of times the containers in this pod have been restarted."),
    AGE,
    col("IP", "string", 1, "IP address allocated to the pod. Routable at least within the cluster."),
    col("Node", "string", 1, "Name of the Node this pod runs on."),
    col("Nominated Node", "string", 1, "Name of the node where the pod may be scheduled when preemption is done."),
    col("Readiness Gates", "string", 1, "Conditions evaluated for pod readiness."),
];
const CONFIG_MAP: &[Column] = &[NAME, col("Data", "integer", 0, "Number of keys."), AGE];
const SECRET: &[Column] =
    &[NAME, col("Type", "string", 0, "The type of secret"), col("Data", "integer", 0, "Number of keys."), AGE];
const NAMESPACE: &[Column] = &[NAME, col("Status", "string", 0, "The status of the namespace"), AGE];
const NODE: &[Column] = &[
    NAME,
    col("Status", "string", 0, "The status of the node"),
    col("Roles", "string", 0, "The roles of the node"),
    AGE,
    col("Version", "string", 0, "Kubelet Version reported by the node."),
    col(
        "Internal-IP",
        "string",
        1,
        "List of addresses reachable to the node. Queried from cloud provider, if available.",
    ),
    col(
        "External-IP",
        "string",
        1,
        "List of addresses reachable to the node. Queried from cloud provider, if available.",
    ),
    col(
        "OS-Image",
        "string",
        1,
        "OS Image reported by the node from /etc/os-release (e.g. Debian GNU/Linux 7 (wheezy)).",
    ),
    col(
        "Kernel-Version",
        "string",
        1,
        "Kernel Version reported by the node from 'uname -r' (e.g. 3.16.0-0.bpo.4-amd64).",
    ),
    col("Container-Runtime", "string", 1, "ContainerRuntime Version reported by the node through runtime remote API."),
];
const SERVICE: &[Column] = &[
    NAME,
    col("Type", "string", 0, "type determines how the Service is exposed."),
    col("Cluster-IP", "string", 0, "clusterIP is the IP address of the service."),
    col("External-IP", "string", 0, "externalIPs is a list of IP addresses for which nodes will also accept traffic."),
    col("Port(s)", "string", 0, "The list of ports that are exposed by this service."),
    AGE,
    col("Selector", "string", 1, "Route service traffic to pods with label keys and values matching this selector."),
];
const DEPLOYMENT: &[Column] = &[
    NAME,
    col("Ready", "string", 0, "Number of the pod with ready state"),
    col(
        "Up-to-date",
        "integer",
        0,
        "Total number of non-terminated pods targeted by this deployment that have the desired template spec.",
    ),
    col(
        "Available",
        "integer",
        0,
        "Total number of available pods (ready for at least minReadySeconds) targeted by this deployment.",
    ),
    AGE,
    col("Containers", "string", 1, "Names of each container in the template."),
    col("Images", "string", 1, "Images referenced by each container in the template."),
    col(
        "Selector",
        "string",
        1,
        "Label selector for pods. Existing ReplicaSets whose pods are selected by this will be the ones affected by this deployment.",
    ),
];
const DEFAULT: &[Column] = &[NAME, AGE];

/// One row's cells, and its conditions (pods that ran to completion carry one).
type Printer = fn(&Value, SystemTime) -> (Vec<Value>, Option<Value>);

fn printer(group: &str, kind: &str) -> (&'static [Column], Printer) {
    match (group, kind) {
        ("", "Pod") => (POD, pod),
        ("", "ConfigMap") => (CONFIG_MAP, config_map),
        ("", "Secret") => (SECRET, secret),
        ("", "Namespace") => (NAMESPACE, namespace),
        ("", "Node") => (NODE, node),
        ("", "Service") => (SERVICE, service),
        ("apps", "Deployment") => (DEPLOYMENT, deployment),
        _ => (DEFAULT, default),
    }
}

/// A Table of `items` (all of `group`'s `kind`), with `metadata` (resourceVersion, continue) as the list's.
pub fn to_table(group: &str, kind: &str, items: &[Value], include: IncludeObject, metadata: Value) -> Value {
    let (columns, print) = printer(group, kind);
    let now = SystemTime::now();
    let defs: Vec<Value> = columns
        .iter()
        .map(|c| {
            let format = if c.name == "Name" { "name" } else { "" };
            json!({"name": c.name, "type": c.ty, "format": format, "description": c.description, "priority": c.priority})
        })
        .collect();
    let rows: Vec<Value> = items
        .iter()
        .map(|o| {
            let (cells, conditions) = print(o, now);
            let mut row = json!({"cells": cells});
            if let Some(c) = conditions {
                row["conditions"] = c;
            }
            match include {
                IncludeObject::None => {}
                IncludeObject::Metadata => {
                    row["object"] = json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                                           "metadata": o["metadata"]})
                }
                IncludeObject::Object => row["object"] = o.clone(),
            }
            row
        })
        .collect();
    json!({"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": metadata, "columnDefinitions": defs, "rows": rows})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cells(kind: &str, o: Value) -> Vec<Value> {
        let t =
            to_table(if kind == "Deployment" { "apps" } else { "" }, kind, &[o], IncludeObject::Metadata, json!({}));
        t["rows"][0]["cells"].as_array().unwrap().clone()
    }

    #[test]
    fn pod_rows_word_status_as_the_api_server_does() {
        let base = json!({"metadata": {"name": "p", "namespace": "a", "creationTimestamp": "2020-01-01T00:00:00Z"},
                          "spec": {"containers": [{"name": "a"}, {"name": "b"}], "nodeName": "n1"}});
        let c = cells("Pod", base.clone());
        assert_eq!(c[0], "p");
        assert_eq!(c[1], "0/2");
        assert_eq!(c[2], "");
        assert_eq!(c[3], "0");
        assert_eq!(&c[5..], &[json!("<none>"), json!("n1"), json!("<none>"), json!("<none>")]);
        let mut running = base.clone();
        running["status"] = json!({"phase": "Running", "podIPs": [{"ip": "10.0.0.5"}], "containerStatuses": [
            {"name": "a", "ready": true, "restartCount": 2, "state": {"running": {}},
             "lastState": {"terminated": {"finishedAt": "2020-01-01T00:00:00Z"}}},
            {"name": "b", "ready": false, "restartCount": 1, "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]});
        let c = cells("Pod", running.clone());
        assert_eq!(c[1], "1/2");
        assert_eq!(c[2], "CrashLoopBackOff");
        assert!(c[3].as_str().unwrap().starts_with("3 ("), "{}", c[3]);
        assert_eq!(c[5], "10.0.0.5");
        running["metadata"]["deletionTimestamp"] = json!("2020-01-01T00:00:00Z");
        assert_eq!(cells("Pod", running)[2], "Terminating");
        let mut init = base.clone();
        init["spec"]["initContainers"] = json!([{"name": "i1"}, {"name": "i2"}]);
        init["status"] = json!({"phase": "Pending", "initContainerStatuses": [
            {"name": "i1", "state": {"terminated": {"exitCode": 0}}},
            {"name": "i2", "state": {"running": {}}}]});
        assert_eq!(cells("Pod", init)[2], "Init:1/2");
        let mut done = base;
        done["status"] = json!({"phase": "Succeeded", "containerStatuses": [
            {"name": "a", "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}]});
        let t = to_table("", "Pod", &[done], IncludeObject::Metadata, json!({}));
        assert_eq!(t["rows"][0]["cells"][2], "Completed");
        assert_eq!(t["rows"][0]["conditions"][0]["type"], "Completed");
        assert_eq!(t["rows"][0]["object"]["kind"], "PartialObjectMetadata");
        assert_eq!(t["rows"][0]["object"]["metadata"]["namespace"], "a");
        let wide: Vec<&str> = t["columnDefinitions"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["priority"] == 1)
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(wide, ["IP", "Node", "Nominated Node", "Readiness Gates"]);
    }

    #[test]
    fn other_kinds_print_their_columns_and_unknown_kinds_name_and_age() {
        let meta = json!({"name": "x", "creationTimestamp": "2020-01-01T00:00:00Z"});
        let c = cells("ConfigMap", json!({"metadata": meta, "data": {"a": "1", "b": "2"}, "binaryData": {"c": ""}}));
        assert_eq!(c[1], 3);
        let c = cells("Secret", json!({"metadata": meta, "type": "Opaque", "data": {"a": ""}}));
        assert_eq!((&c[1], &c[2]), (&json!("Opaque"), &json!(1)));
        let c = cells("Namespace", json!({"metadata": meta, "status": {"phase": "Active"}}));
        assert_eq!(c[1], "Active");
        let c = cells(
            "Service",
            json!({"metadata": meta, "spec": {"clusterIP": "10.0.0.1", "selector": {"app": "w"},
            "ports": [{"port": 80, "protocol": "TCP"}, {"port": 443, "nodePort": 30443, "protocol": "TCP"}]}}),
        );
        assert_eq!(&c[1..5], &[json!("ClusterIP"), json!("10.0.0.1"), json!("<none>"), json!("80/TCP,443:30443/TCP")]);
        assert_eq!(c[6], "app=w");
        let c = cells(
            "Deployment",
            json!({"metadata": meta, "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "w"}},
            "template": {"spec": {"containers": [{"name": "c", "image": "nginx"}]}}},
            "status": {"readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2}}),
        );
        assert_eq!(&c[1..4], &[json!("2/3"), json!(3), json!(2)]);
        assert_eq!(&c[5..], &[json!("c"), json!("nginx"), json!("app=w")]);
        let c = cells(
            "Node",
            json!({"metadata": {"name": "n", "labels": {"node-role.kubernetes.io/control-plane": ""}},
            "spec": {"unschedulable": true}, "status": {"conditions": [{"type": "Ready", "status": "True"}],
            "nodeInfo": {"kubeletVersion": "v1.33.0"}, "addresses": [{"type": "InternalIP", "address": "10.1.1.1"}]}}),
        );
        assert_eq!(&c[1..3], &[json!("Ready,SchedulingDisabled"), json!("control-plane")]);
        assert_eq!(c[3], "<unknown>");
        assert_eq!(&c[4..6], &[json!("v1.33.0"), json!("10.1.1.1")]);
        let c = cells("Widget", json!({"metadata": meta}));
        assert_eq!(c.len(), 2);
        assert_eq!(c[0], "x");
        assert!(wants_table(
            "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json"
        ));
        assert!(!wants_table("application/json"));
        assert_eq!(IncludeObject::parse(Some("Object")), Ok(IncludeObject::Object));
        assert!(IncludeObject::parse(Some("All")).is_err());
    }
}
