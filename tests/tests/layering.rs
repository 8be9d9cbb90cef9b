//! The crates' layers, read from `cargo metadata` (normal and build dependencies, followed
//! transitively; dev-dependencies do not ship and are not followed):
//!
//! * the planner is pure: no kube crate, no tokio, no `suyun-crds`;
//! * `suyun-store` (the status-store contract) holds no kube crate;
//! * the apiserver holds no Kubernetes client: no `kube-client`, no `kube-runtime`, no operator;
//! * `suyun-crds` depends on neither the operator nor the apiserver, and asks kube only for its
//!   derive (declared features; the resolved graph unifies features across the workspace).
//!
//! No cluster needed.

use std::collections::{BTreeMap, VecDeque};
use std::process::Command;

use serde_json::Value;

struct Graph {
    /// Package id → name.
    names: BTreeMap<String, String>,
    /// Package id → ids of its normal and build dependencies.
    edges: BTreeMap<String, Vec<String>>,
    metadata: Value,
}

fn metadata() -> Graph {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/../Cargo.toml");
    let output = Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--locked", "--manifest-path", manifest])
        .output()
        .expect("running cargo metadata");
    assert!(output.status.success(), "cargo metadata failed: {}", String::from_utf8_lossy(&output.stderr));
    let metadata: Value = serde_json::from_slice(&output.stdout).expect("cargo metadata's JSON");
    let names = metadata["packages"]
        .as_array()
        .expect("packages")
        .iter()
        .map(|p| (p["id"].as_str().unwrap().to_owned(), p["name"].as_str().unwrap().to_owned()))
        .collect();
    let mut edges = BTreeMap::new();
    for node in metadata["resolve"]["nodes"].as_array().expect("resolve.nodes") {
        let shipped = node["deps"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|dep| dep["dep_kinds"].as_array().unwrap().iter().any(|k| k["kind"].as_str() != Some("dev")))
            .map(|dep| dep["pkg"].as_str().unwrap().to_owned())
            .collect();
        edges.insert(node["id"].as_str().unwrap().to_owned(), shipped);
    }
    Graph { names, edges, metadata }
}

impl Graph {
    fn id(&self, name: &str) -> &str {
        self.names
            .iter()
            .find(|(_, n)| *n == name)
            .map(|(id, _)| id.as_str())
            .unwrap_or_else(|| panic!("no package {name}"))
    }

    /// Every crate `name` depends on, transitively, each with the chain that leads to it.
    fn closure(&self, name: &str) -> BTreeMap<String, Vec<String>> {
        let root = self.id(name).to_owned();
        let mut chains: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let mut queue = VecDeque::from([(root, vec![name.to_owned()])]);
        while let Some((id, chain)) = queue.pop_front() {
            for dep in self.edges.get(&id).into_iter().flatten() {
                let dep_name = self.names[dep].clone();
                if chains.contains_key(&dep_name) {
                    continue;
                }
                let mut next = chain.clone();
                next.push(dep_name.clone());
                chains.insert(dep_name, next.clone());
                queue.push_back((dep.clone(), next));
            }
        }
        chains
    }

    /// The forbidden crates `name` reaches, each as its chain (`a → b → c`).
    fn violations(&self, name: &str, forbidden: impl Fn(&str) -> bool) -> Vec<String> {
        self.closure(name).into_iter().filter(|(dep, _)| forbidden(dep)).map(|(_, chain)| chain.join(" → ")).collect()
    }
}

fn is_kube(name: &str) -> bool {
    name == "kube" || name.starts_with("kube-")
}

#[test]
fn the_planner_is_pure() {
    let graph = metadata();
    let bad = graph.violations("suyun-planner", |d| is_kube(d) || d == "tokio" || d == "suyun-crds");
    assert!(bad.is_empty(), "the planner must not depend on kube, tokio or suyun-crds:\n{}", bad.join("\n"));
}

#[test]
fn the_status_store_contract_is_kube_free() {
    let graph = metadata();
    let bad = graph.violations("suyun-store", |d| is_kube(d) || d.starts_with("suyun-"));
    assert!(bad.is_empty(), "suyun-store must depend on no kube crate and no other Suyun crate:\n{}", bad.join("\n"));
}

#[test]
fn the_apiserver_holds_no_kubernetes_client() {
    let graph = metadata();
    let bad = graph.violations("suyun-apiserver", |d| matches!(d, "kube-client" | "kube-runtime" | "suyun-operator"));
    assert!(
        bad.is_empty(),
        "the apiserver must not reach kube-client, kube-runtime or the operator:\n{}",
        bad.join("\n")
    );
}

#[test]
fn the_api_types_stand_below_operator_and_apiserver_and_only_derive() {
    let graph = metadata();
    let bad = graph.violations("suyun-crds", |d| matches!(d, "suyun-operator" | "suyun-apiserver"));
    assert!(bad.is_empty(), "suyun-crds must not depend on the operator or the apiserver:\n{}", bad.join("\n"));

    let crds = graph.metadata["packages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "suyun-crds")
        .expect("suyun-crds in the metadata");
    for dep in crds["dependencies"].as_array().unwrap().iter().filter(|d| d["kind"].is_null()) {
        if dep["name"] == "kube" {
            let features: Vec<&str> = dep["features"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
            assert_eq!(features, ["derive"], "suyun-crds asks kube only for its derive");
            assert_eq!(dep["uses_default_features"], false, "suyun-crds takes no default kube features");
        }
    }
}
