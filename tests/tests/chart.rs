//! The Helm chart (`charts/suyun`) and the kustomize deploy (`deploy/kustomize`): lint, schema,
//! what the rendered objects promise (restricted security context, probes, spread, Secrets
//! mounted where the flags point, no Kubernetes credentials for the REST API), the flags
//! accepted by the binaries' own parsers, the monitoring objects against the Services and
//! promtool, and every rendering accepted by the real kube-apiserver (`--dry-run=server`).
//! Member cluster mode (`memberCluster.enabled`, `deploy/member`): only the member's
//! ServiceAccount and RBAC, least privilege, the committed manifests up to date, and applied to
//! a real member control plane, a kubeconfig from `deploy/member/kubeconfig-secret` that the
//! operator accepts and that reaches the member.
//!
//! ServiceMonitor, PrometheusRule and cert-manager's Certificate are not sent to the test
//! apiserver: it does not serve those groups, and a permissive stand-in CRD would accept
//! anything. They are checked here for what they are for instead: the ServiceMonitor selects
//! the metrics Services and yields the job names the alerts use, the rules pass `promtool`,
//! the Certificate fills the Secret the apiserver mounts.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use clap::Parser as _;
use serde_yaml::Value;
use suyun_tests::helm::{self, chart_dir, documents, find, kind, name};
use suyun_tests::{cluster, repo_root};

const NAMESPACE: &str = "suyun-chart";

fn render(values: &[PathBuf], set: &[&str]) -> Vec<Value> {
    documents(&helm::template(NAMESPACE, values, set).unwrap_or_else(|e| panic!("{e:#}"))).unwrap()
}

/// Every rendering the tests look at: the chart with each value set and each kustomize
/// directory, with the namespace their objects live in.
fn renderings() -> Vec<(String, Vec<Value>)> {
    let mut out = Vec::new();
    for (label, values) in helm::value_sets() {
        out.push((format!("chart ({label} values)"), render(&values, &[])));
    }
    for dir in ["base", "overlays/dev", "overlays/production"] {
        let yaml = helm::kustomize(dir).unwrap_or_else(|e| panic!("{e:#}"));
        out.push((format!("kustomize {dir}"), documents(&yaml).unwrap()));
    }
    out
}

fn str_list(v: &Value) -> Vec<String> {
    v.as_sequence().map(|s| s.iter().filter_map(|x| x.as_str().map(str::to_owned)).collect()).unwrap_or_default()
}

fn labels(v: &Value) -> BTreeMap<String, String> {
    serde_yaml::from_value(v.clone()).unwrap_or_default()
}

fn selects(selector: &Value, pod_labels: &BTreeMap<String, String>) -> bool {
    let wanted = labels(selector);
    !wanted.is_empty() && wanted.iter().all(|(k, v)| pod_labels.get(k) == Some(v))
}

#[test]
fn the_charts_crds_are_the_generated_ones() {
    let dir = chart_dir().join("crds");
    let mut expected = BTreeSet::new();
    for (file, crd) in suyun_crds::crds() {
        expected.insert(file.to_owned());
        let shipped = std::fs::read_to_string(dir.join(file)).unwrap_or_else(|e| {
            panic!("charts/suyun/crds/{file} missing ({e}); run `cargo run -p suyun-crds --bin crdgen`")
        });
        assert!(
            shipped == suyun_crds::render_crd(&crd),
            "charts/suyun/crds/{file} differs from the types; run `cargo run -p suyun-crds --bin crdgen`"
        );
    }
    let present: BTreeSet<String> =
        std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert_eq!(present, expected, "charts/suyun/crds holds exactly the generated CRDs");
}

#[test]
fn the_chart_ships_the_workspace_version() {
    let chart: Value = serde_yaml::from_str(&std::fs::read_to_string(chart_dir().join("Chart.yaml")).unwrap()).unwrap();
    assert_eq!(chart["appVersion"].as_str(), Some(env!("CARGO_PKG_VERSION")), "Chart.yaml appVersion");
    assert_eq!(chart["apiVersion"].as_str(), Some("v2"));
    let dockerfile = std::fs::read_to_string(repo_root().join("Dockerfile")).unwrap();
    assert!(
        dockerfile.contains(&format!("ARG VERSION={}", env!("CARGO_PKG_VERSION"))),
        "the Dockerfile's default VERSION label is the workspace version"
    );
}

#[test]
fn helm_lint_strict_passes_with_default_and_production_values() {
    for (label, values) in helm::value_sets() {
        let chart = chart_dir().display().to_string();
        let mut args = vec!["lint".to_owned(), "--strict".into(), chart];
        for v in &values {
            args.push("--values".into());
            args.push(v.display().to_string());
        }
        let out = helm::helm(&args.iter().map(String::as_str).collect::<Vec<_>>());
        assert!(out.success, "helm lint --strict ({label} values):\n{}", out.text());
        assert!(out.stdout.contains("0 chart(s) failed"), "{}", out.text());
    }
}

#[test]
fn the_values_schema_and_the_templates_refuse_what_cannot_work() {
    let cases: &[(&[&str], &str)] = &[
        (&["operator.replica=2"], "additional properties 'replica' not allowed"),
        (&["unknownTopLevel=1"], "additional properties 'unknownTopLevel' not allowed"),
        (&["store.endpoints={ftp://etcd:2379}"], "does not match pattern"),
        (&["operator.logFormat=yaml"], "logFormat"),
        (&["operator.replicas=0"], "replicas"),
        (&["apiserver.service.type=ExternalName"], "type"),
        (&["store.tls.caSecret.name=etcd-ca"], "is not https://"),
        (&["apiserver.tls.certManager.enabled=true"], "issuerRef.name is required"),
        (&["apiserver.auth.clientCRL.secretName=city-crl"], "apiserver.auth.clientCRL needs apiserver.auth.clientCA"),
        (&["apiserver.limits.maxConnections=0"], "maxConnections"),
        (&["memberCluster.enable=true"], "additional properties 'enable' not allowed"),
    ];
    for (set, fragment) in cases {
        match helm::template(NAMESPACE, &[], set) {
            Ok(_) => panic!("helm template --set {set:?} was accepted"),
            Err(e) => assert!(format!("{e:#}").contains(fragment), "--set {set:?}: expected {fragment:?} in {e:#}"),
        }
    }
    // A client CRL is mounted where --client-crl points, and the apiserver accepts the flags.
    let objects =
        render(&[], &["apiserver.auth.clientCA.secretName=city-ca", "apiserver.auth.clientCRL.secretName=city-crl"]);
    let c = &find(&objects, "Deployment", "suyun-apiserver")["spec"]["template"]["spec"]["containers"][0];
    let mut argv = vec!["suyun-apiserver".to_owned()];
    argv.extend(str_list(&c["args"]));
    let config = suyun_apiserver::config::Config::try_parse_from(&argv).unwrap();
    assert_eq!(config.client_crl.as_deref(), Some(std::path::Path::new("/etc/suyun/client-crl/ca.crl")));
    let mounts = c["volumeMounts"].as_sequence().unwrap();
    assert!(mounts.iter().any(|m| m["name"] == "client-crl" && m["mountPath"] == "/etc/suyun/client-crl"));

    // Without endpoints the chart says what to set instead of rendering a broken Deployment.
    let no_endpoints = repo_root().join("target/chart-no-endpoints.yaml");
    std::fs::write(&no_endpoints, "store:\n  endpoints: []\n").unwrap();
    let e = helm::template(NAMESPACE, &[no_endpoints], &[]).expect_err("empty store.endpoints is refused");
    assert!(format!("{e:#}").contains("store.endpoints is empty"), "{e:#}");
}

#[test]
fn every_rendering_runs_restricted_spread_and_probed_pods() {
    for (label, objects) in renderings() {
        let deployments: Vec<&Value> = objects.iter().filter(|o| kind(o) == "Deployment").collect();
        let names: BTreeSet<&str> = deployments.iter().map(|d| name(d)).collect();
        assert_eq!(names, BTreeSet::from(["suyun-apiserver", "suyun-operator"]), "{label}");
        for d in deployments {
            let what = format!("{label}: Deployment {}", name(d));
            let pod = &d["spec"]["template"];
            let spec = &pod["spec"];
            let pod_labels = labels(&pod["metadata"]["labels"]);
            assert!(selects(&d["spec"]["selector"]["matchLabels"], &pod_labels), "{what}: selector");
            let psc = &spec["securityContext"];
            assert_eq!(psc["runAsNonRoot"], Value::Bool(true), "{what}");
            assert_eq!(psc["seccompProfile"]["type"].as_str(), Some("RuntimeDefault"), "{what}");
            let containers = spec["containers"].as_sequence().unwrap();
            assert_eq!(containers.len(), 1, "{what}");
            let c = &containers[0];
            let sc = &c["securityContext"];
            assert_eq!(sc["allowPrivilegeEscalation"], Value::Bool(false), "{what}");
            assert_eq!(sc["readOnlyRootFilesystem"], Value::Bool(true), "{what}");
            assert_eq!(sc["runAsNonRoot"], Value::Bool(true), "{what}");
            assert_eq!(str_list(&sc["capabilities"]["drop"]), ["ALL"], "{what}");
            assert!(sc["runAsUser"].as_u64().is_some_and(|u| u > 0), "{what}: numeric non-root user");
            for probe in ["livenessProbe", "readinessProbe"] {
                let path = c[probe]["httpGet"]["path"].as_str().unwrap_or_default();
                assert!(path == "/healthz" || path == "/readyz", "{what}: {probe} {path:?}");
            }
            assert!(c["resources"]["requests"]["memory"].is_string(), "{what}: memory request");
            assert!(c["resources"]["limits"]["memory"].is_string(), "{what}: memory limit");
            let image = c["image"].as_str().unwrap();
            assert!(image.contains(&format!("/{}:", name(d))), "{what}: image {image}");
            let spread = spec["topologySpreadConstraints"].as_sequence().expect("topologySpreadConstraints");
            assert!(spread.iter().any(|t| t["topologyKey"] == "kubernetes.io/hostname"), "{what}");
            for t in spread {
                assert!(selects(&t["labelSelector"]["matchLabels"], &pod_labels), "{what}: spread selects its pods");
            }
            // Every flag that names a file points into a mounted Secret holding that file.
            for arg in str_list(&c["args"]) {
                let Some(path) = arg.split_once('=').map(|(_, v)| v).filter(|v| v.starts_with("/etc/suyun/")) else {
                    continue;
                };
                let mount = c["volumeMounts"]
                    .as_sequence()
                    .into_iter()
                    .flatten()
                    .find(|m| path.starts_with(&format!("{}/", m["mountPath"].as_str().unwrap())))
                    .unwrap_or_else(|| panic!("{what}: {arg} is not under a volume mount"));
                let file = &path[mount["mountPath"].as_str().unwrap().len() + 1..];
                let volume = spec["volumes"]
                    .as_sequence()
                    .into_iter()
                    .flatten()
                    .find(|v| v["name"] == mount["name"])
                    .unwrap_or_else(|| panic!("{what}: no volume {:?}", mount["name"]));
                let items = volume["secret"]["items"].as_sequence().expect("secret volumes list their items");
                assert!(items.iter().any(|i| i["path"] == file), "{what}: {arg}: the Secret volume has no {file}");
            }
        }
    }
}

#[test]
fn the_binaries_accept_every_rendered_flag() {
    for (label, objects) in renderings() {
        let operator = find(&objects, "Deployment", "suyun-operator");
        let c = &operator["spec"]["template"]["spec"]["containers"][0];
        let mut argv = vec!["suyun-operator".to_owned()];
        argv.extend(str_list(&c["args"]));
        let config = suyun_operator::config::Config::try_parse_from(&argv)
            .unwrap_or_else(|e| panic!("{label}: suyun-operator refuses {argv:?}: {e}"));
        let endpoints: Vec<String> = str_list(&c["args"])
            .iter()
            .find_map(|a| a.strip_prefix("--store-endpoints="))
            .map(|e| e.split(',').map(str::to_owned).collect())
            .unwrap_or_else(|| panic!("{label}: the operator publishes to the status store"));
        assert_eq!(config.store.endpoints, endpoints, "{label}");
        assert_eq!(config.metrics_listen.port(), 8080, "{label}");
        // The Lease identity and namespace come from the downward API.
        let env = c["env"].as_sequence().unwrap();
        for (var, field) in [("POD_NAME", "metadata.name"), ("POD_NAMESPACE", "metadata.namespace")] {
            let e = env.iter().find(|e| e["name"] == var).unwrap_or_else(|| panic!("{label}: {var}"));
            assert_eq!(e["valueFrom"]["fieldRef"]["fieldPath"].as_str(), Some(field), "{label}: {var}");
        }
        let lease = str_list(&c["args"]).iter().find_map(|a| a.strip_prefix("--lease-name=").map(str::to_owned));
        assert_eq!(lease.as_deref(), Some(config.lease_name.as_str()), "{label}");

        let apiserver = find(&objects, "Deployment", "suyun-apiserver");
        let c = &apiserver["spec"]["template"]["spec"]["containers"][0];
        let mut argv = vec!["suyun-apiserver".to_owned()];
        argv.extend(str_list(&c["args"]));
        let config = suyun_apiserver::config::Config::try_parse_from(&argv)
            .unwrap_or_else(|e| panic!("{label}: suyun-apiserver refuses {argv:?}: {e}"));
        assert_eq!(config.listen.port(), 8443, "{label}");
        assert_eq!(config.etcd.endpoints, endpoints, "{label}: both components use the same status store");
        assert!(config.token_file.is_some() || config.client_ca.is_some(), "{label}: someone can authenticate");
        let ports: BTreeMap<String, u64> = c["ports"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|p| (p["name"].as_str().unwrap().to_owned(), p["containerPort"].as_u64().unwrap()))
            .collect();
        assert_eq!(ports.get("https"), Some(&u64::from(config.listen.port())), "{label}");
        assert_eq!(ports.get("metrics"), Some(&u64::from(config.metrics_listen.port())), "{label}");
    }
}

#[test]
fn the_rest_api_holds_no_kubernetes_credentials() {
    for (label, objects) in renderings() {
        let apiserver = find(&objects, "Deployment", "suyun-apiserver");
        let spec = &apiserver["spec"]["template"]["spec"];
        assert_eq!(spec["automountServiceAccountToken"], Value::Bool(false), "{label}");
        let account = spec["serviceAccountName"].as_str().unwrap();
        let sa = find(&objects, "ServiceAccount", account);
        assert_eq!(sa["automountServiceAccountToken"], Value::Bool(false), "{label}");
        for binding in objects.iter().filter(|o| kind(o).ends_with("Binding")) {
            for subject in binding["subjects"].as_sequence().into_iter().flatten() {
                assert_ne!(subject["name"].as_str(), Some(account), "{label}: {} binds the apiserver", name(binding));
            }
        }
        // Its network policy lets it reach DNS and etcd only.
        let policy = find(&objects, "NetworkPolicy", "suyun-apiserver");
        let ports: BTreeSet<u64> = policy["spec"]["egress"]
            .as_sequence()
            .unwrap()
            .iter()
            .flat_map(|rule| rule["ports"].as_sequence().cloned().unwrap_or_default())
            .filter_map(|p| p["port"].as_u64())
            .collect();
        assert_eq!(ports, BTreeSet::from([53, 2379]), "{label}: apiserver egress ports");
    }
}

#[test]
fn the_operator_role_is_least_privilege() {
    let objects = render(&[], &[]);
    let role = find(&objects, "ClusterRole", "suyun-operator");
    for rule in role["rules"].as_sequence().unwrap() {
        let verbs = str_list(&rule["verbs"]);
        let resources = str_list(&rule["resources"]);
        assert!(!verbs.iter().chain(&resources).any(|v| v.contains('*')), "no wildcards: {rule:?}");
        for forbidden in ["secrets", "pods", "serviceaccounts", "clusterrolebindings", "customresourcedefinitions"] {
            assert!(!resources.iter().any(|r| r == forbidden), "the operator needs no {forbidden}: {rule:?}");
        }
        for forbidden in ["escalate", "impersonate", "delete", "deletecollection", "update", "get"] {
            assert!(!verbs.iter().any(|v| v == forbidden), "the operator never uses {forbidden}: {rule:?}");
        }
        if verbs.iter().any(|v| v == "bind") {
            assert_eq!(verbs, ["bind"], "{rule:?}");
            assert_eq!(str_list(&rule["resourceNames"]), ["suyun-tenant-admin"], "bind only the tenant role");
        }
    }
    // The tenant children's RoleBinding references the ClusterRole the chart ships.
    assert_eq!(name(find(&objects, "ClusterRole", "suyun-tenant-admin")), "suyun-tenant-admin");
    let lease_role = find(&objects, "Role", "suyun-operator-leader-election");
    let named: Vec<&Value> =
        lease_role["rules"].as_sequence().unwrap().iter().filter(|r| !r["resourceNames"].is_null()).collect();
    assert_eq!(str_list(&named[0]["resourceNames"]), ["suyun-operator"], "the Lease by name");
}

/// `(apiGroup/resource, verbs)` of every rule of a role, one entry per resource, resource names
/// appended to the resource (`clusterroles/suyun-tenant-admin`).
fn grants(role: &Value) -> BTreeMap<String, Vec<String>> {
    let mut out = BTreeMap::new();
    for rule in role["rules"].as_sequence().unwrap() {
        let names = str_list(&rule["resourceNames"]);
        for group in str_list(&rule["apiGroups"]) {
            for resource in str_list(&rule["resources"]) {
                let mut key = if group.is_empty() { resource.clone() } else { format!("{group}/{resource}") };
                if !names.is_empty() {
                    key = format!("{key}/{}", names.join(","));
                }
                let previous = out.insert(key.clone(), str_list(&rule["verbs"]));
                assert!(previous.is_none(), "{key} is granted by two rules of {}", name(role));
            }
        }
    }
    out
}

#[test]
fn the_operator_reads_secrets_only_in_its_own_namespace() {
    // Member kubeconfigs are Secrets in the release namespace: a Role there, not a ClusterRole.
    for (label, values) in helm::value_sets() {
        let objects = render(&values, &[]);
        let role = find(&objects, "Role", "suyun-operator-member-kubeconfigs");
        assert_eq!(role["metadata"]["namespace"].as_str(), Some(NAMESPACE), "{label}");
        let want: BTreeMap<String, Vec<String>> =
            [("secrets".to_owned(), vec!["get".to_owned(), "list".to_owned(), "watch".to_owned()])].into();
        assert_eq!(grants(role), want, "{label}: the kubeconfig Role");
        let binding = find(&objects, "RoleBinding", "suyun-operator-member-kubeconfigs");
        assert_eq!(binding["metadata"]["namespace"].as_str(), Some(NAMESPACE), "{label}");
        assert_eq!(binding["roleRef"]["kind"].as_str(), Some("Role"), "{label}");
        assert_eq!(binding["roleRef"]["name"].as_str(), Some(name(role)), "{label}");
        let subjects = binding["subjects"].as_sequence().unwrap();
        assert_eq!(subjects.len(), 1, "{label}");
        assert_eq!(subjects[0]["name"].as_str(), Some("suyun-operator"), "{label}");
        assert_eq!(subjects[0]["namespace"].as_str(), Some(NAMESPACE), "{label}");
        // No cluster-wide grant of Secrets to the operator.
        for b in objects.iter().filter(|o| kind(o) == "ClusterRoleBinding") {
            let role = find(&objects, "ClusterRole", b["roleRef"]["name"].as_str().unwrap());
            assert!(
                !grants(role).keys().any(|k| k == "secrets" || k.starts_with("secrets/") || k.contains('*')),
                "{label}: ClusterRoleBinding {} grants Secrets cluster-wide",
                name(b)
            );
        }
    }
}

/// The chart in member cluster mode, with the default or production values.
fn member_renderings(extra: &[&str]) -> Vec<(String, Vec<Value>)> {
    let mut set = vec!["memberCluster.enabled=true"];
    set.extend_from_slice(extra);
    helm::value_sets().into_iter().map(|(label, values)| (format!("{label} values"), render(&values, &set))).collect()
}

#[test]
fn member_mode_renders_only_the_members_service_account_and_rbac() {
    let normal = render(&[], &[]);
    for (extra, token) in [(&[][..], false), (&["memberCluster.tokenSecret.create=true"][..], true)] {
        for (label, objects) in member_renderings(extra) {
            let label = format!("member mode, {label}, token Secret {token}");
            let mut want = BTreeSet::from([
                ("ClusterRole", "suyun-member"),
                ("ClusterRole", "suyun-tenant-admin"),
                ("ClusterRoleBinding", "suyun-member"),
                ("ServiceAccount", "suyun-operator"),
            ]);
            if token {
                want.insert(("Secret", "suyun-operator-token"));
            }
            let got: BTreeSet<(&str, &str)> = objects.iter().map(|o| (kind(o), name(o))).collect();
            assert_eq!(got, want, "{label}: exactly the member's objects, no workload, Service or policy");
            let sa = find(&objects, "ServiceAccount", "suyun-operator");
            assert_eq!(sa["metadata"]["namespace"].as_str(), Some(NAMESPACE), "{label}");
            assert_eq!(sa["automountServiceAccountToken"], Value::Bool(false), "{label}: nothing runs as it");
            let binding = find(&objects, "ClusterRoleBinding", "suyun-member");
            assert_eq!(binding["roleRef"]["kind"].as_str(), Some("ClusterRole"), "{label}");
            assert_eq!(binding["roleRef"]["name"].as_str(), Some("suyun-member"), "{label}");
            let subjects = binding["subjects"].as_sequence().unwrap();
            assert_eq!(subjects.len(), 1, "{label}");
            assert_eq!(subjects[0]["kind"].as_str(), Some("ServiceAccount"), "{label}");
            assert_eq!(subjects[0]["name"].as_str(), Some("suyun-operator"), "{label}");
            assert_eq!(subjects[0]["namespace"].as_str(), Some(NAMESPACE), "{label}");
            // The same tenant-admin ClusterRole as the management cluster's (one template).
            assert_eq!(
                find(&objects, "ClusterRole", "suyun-tenant-admin")["rules"],
                find(&normal, "ClusterRole", "suyun-tenant-admin")["rules"],
                "{label}"
            );
            if token {
                let secret = find(&objects, "Secret", "suyun-operator-token");
                assert_eq!(secret["type"].as_str(), Some("kubernetes.io/service-account-token"), "{label}");
                assert_eq!(secret["metadata"]["namespace"].as_str(), Some(NAMESPACE), "{label}");
                assert_eq!(
                    secret["metadata"]["annotations"]["kubernetes.io/service-account.name"].as_str(),
                    Some("suyun-operator"),
                    "{label}"
                );
                assert!(secret["data"].is_null() && secret["stringData"].is_null(), "{label}: no token in the chart");
            }
        }
    }
    let chart = chart_dir().display().to_string();
    let set = "memberCluster.enabled=true,memberCluster.tokenSecret.create=true";
    let out = helm::helm(&["lint", "--strict", &chart, "--set", set]);
    assert!(
        out.success && out.stdout.contains("0 chart(s) failed"),
        "helm lint --strict in member mode:\n{}",
        out.text()
    );
    // Without rbac.tenantAdmin.create the member gets no tenant-admin ClusterRole (another
    // release ships it).
    let objects = render(&[], &["memberCluster.enabled=true", "rbac.tenantAdmin.create=false"]);
    assert!(!objects.iter().any(|o| name(o) == "suyun-tenant-admin"));
}

#[test]
fn the_member_role_is_least_privilege() {
    for (label, objects) in member_renderings(&[]) {
        let role = find(&objects, "ClusterRole", "suyun-member");
        for rule in role["rules"].as_sequence().unwrap() {
            for field in ["apiGroups", "resources", "verbs", "resourceNames"] {
                assert!(!str_list(&rule[field]).iter().any(|v| v.contains('*')), "{label}: no wildcard: {rule:?}");
            }
            assert!(rule["nonResourceURLs"].is_null(), "{label}: /version is public: {rule:?}");
        }
        let grants = grants(role);
        for key in grants.keys() {
            assert!(
                !key.split('/').any(|part| part == "secrets"),
                "{label}: the member role grants {:?} on {key}",
                grants[key]
            );
        }
        // Exactly what the operator does in a member (docs/multi-cluster.md, "Least privilege").
        let rw = ["list", "watch", "create", "patch"];
        let want: BTreeMap<String, Vec<String>> = [
            ("nodes", &["list", "watch"][..]),
            ("pods", &["list", "watch"]),
            ("namespaces", &["list", "watch", "create", "patch", "delete"]),
            ("resourcequotas", &rw),
            ("limitranges", &rw),
            ("networking.k8s.io/networkpolicies", &rw),
            ("rbac.authorization.k8s.io/rolebindings", &rw),
            ("rbac.authorization.k8s.io/clusterroles/suyun-tenant-admin", &["bind"]),
            ("batch/jobs", &["list", "watch", "create"]),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.iter().map(|s| (*s).to_owned()).collect()))
        .collect();
        assert_eq!(grants, want, "{label}: the member ClusterRole");
    }
}

#[test]
fn the_member_manifests_are_the_chart_in_member_mode() {
    let out_dir = repo_root().join("target/member-generate");
    let _ = std::fs::remove_dir_all(&out_dir);
    let script = repo_root().join("deploy/member/generate");
    let out = helm::run("bash", &[&script.display().to_string(), &out_dir.display().to_string()], None, None);
    assert!(out.success, "deploy/member/generate: {}", out.text());
    let fresh = std::fs::read_to_string(out_dir.join("suyun-member.yaml")).unwrap();
    let committed = std::fs::read_to_string(repo_root().join("deploy/member/suyun-member.yaml")).unwrap_or_default();
    assert!(fresh == committed, "deploy/member/suyun-member.yaml is stale: run deploy/member/generate and commit");

    // The kustomization adds the namespace and nothing else.
    let chart = documents(&helm::template("suyun-system", &[], &["memberCluster.enabled=true"]).unwrap()).unwrap();
    let rendered = documents(&helm::kustomize("../member").unwrap()).unwrap();
    let key = |o: &Value| (kind(o).to_owned(), name(o).to_owned());
    let namespaces: Vec<&Value> = rendered.iter().filter(|o| kind(o) == "Namespace").collect();
    assert_eq!(namespaces.len(), 1);
    assert_eq!(name(namespaces[0]), "suyun-system");
    let rendered: BTreeMap<_, _> =
        rendered.iter().filter(|o| kind(o) != "Namespace").map(|o| (key(o), normalised(o))).collect();
    let chart: BTreeMap<_, _> = chart.iter().map(|o| (key(o), normalised(o))).collect();
    assert!(rendered == chart, "kustomize deploy/member differs from the chart in member mode");
}

/// The kubeconfig of the Secret `deploy/member/kubeconfig-secret` prints for CloudNode `suzhou`,
/// checking the Secret's name, namespace and key.
fn member_kubeconfig_secret(member: &suyun_tests::Cluster, args: &[&str]) -> Result<String, String> {
    let secret = helm::member_kubeconfig_secret(member, "suzhou", args)?;
    assert_eq!(secret.metadata.name.as_deref(), Some("suzhou-kubeconfig"), "Cluster API's name");
    assert_eq!(secret.metadata.namespace.as_deref(), Some("suyun-system"));
    let data = secret.data.expect("data");
    assert_eq!(data.keys().collect::<Vec<_>>(), ["value"], "Cluster API's key");
    Ok(String::from_utf8(data["value"].0.clone()).unwrap())
}

#[tokio::test]
async fn a_member_with_the_member_manifests_gives_the_operator_a_kubeconfig_it_accepts() {
    use suyun_operator::members::kubeconfig;
    // (The member the member_clusters test uses too: test binaries run one after the other.)
    let member = suyun_tests::member("wuxi").unwrap();
    let kubectl = |args: &[&str], stdin: Option<&str>| helm::run("kubectl", args, stdin, Some(&member.kubeconfig));
    helm::install_member_rbac(&member).unwrap_or_else(|e| panic!("applying deploy/member to the member: {e}"));

    // A bounded token (TokenRequest), and the long-lived token of the chart's token Secret.
    let yaml =
        helm::template("suyun-system", &[], &["memberCluster.enabled=true", "memberCluster.tokenSecret.create=true"])
            .unwrap();
    let objects = documents(&yaml).unwrap();
    let token_secret = helm::to_stream(&[find(&objects, "Secret", "suyun-operator-token")]);
    let out = kubectl(&["apply", "--server-side", "--field-manager=suyun-tests", "-f", "-"], Some(&token_secret));
    assert!(out.success, "{}", out.text());
    for args in [&[][..], &["--token-secret", "suyun-operator-token"][..]] {
        // The script itself checks the kubeconfig reaches the member with the member role and no Secrets.
        let config = member_kubeconfig_secret(&member, args).unwrap_or_else(|e| panic!("{args:?}: {e}"));
        let parsed = kubeconfig::parse(&config).unwrap_or_else(|e| panic!("{args:?}: the operator refuses it: {e}"));
        let user = parsed.auth_infos[0].auth_info.as_ref().unwrap();
        assert!(user.token.is_some() && user.client_key_data.is_none(), "{args:?}: a ServiceAccount token");
        let client = kubeconfig::client(&config).await.unwrap();
        let version = client.apiserver_version().await.unwrap();
        assert!(version.git_version.starts_with("v1."), "{version:?}");
        // What the operator does there works; Secrets do not.
        let nodes: kube::Api<k8s_openapi::api::core::v1::Node> = kube::Api::all(client.clone());
        nodes.list(&Default::default()).await.unwrap_or_else(|e| panic!("{args:?}: list nodes: {e}"));
        let pods: kube::Api<k8s_openapi::api::core::v1::Pod> = kube::Api::all(client.clone());
        pods.list(&Default::default()).await.unwrap_or_else(|e| panic!("{args:?}: list pods: {e}"));
        let secrets: kube::Api<k8s_openapi::api::core::v1::Secret> = kube::Api::all(client.clone());
        let refused = secrets.list(&Default::default()).await;
        assert!(
            matches!(&refused, Err(kube::Error::Api(e)) if e.code == 403),
            "{args:?}: the member's Secrets are readable: {:?}",
            refused.map(|l| l.items.len())
        );
    }

    // A member without the binding: the script says what is missing instead of printing a
    // kubeconfig that would fail later.
    let out = kubectl(&["delete", "clusterrolebinding", "suyun-member"], None);
    assert!(out.success, "{}", out.text());
    let refused = member_kubeconfig_secret(&member, &[]);
    helm::install_member_rbac(&member).unwrap();
    let e = refused.expect_err("a kubeconfig without the member role");
    assert!(e.contains("may not list nodes in the member"), "{e}");
}

#[test]
fn services_pdbs_and_policies_select_the_pods() {
    for (label, objects) in renderings() {
        let pods: Vec<(String, BTreeMap<String, String>, BTreeSet<String>)> = objects
            .iter()
            .filter(|o| kind(o) == "Deployment")
            .map(|d| {
                let t = &d["spec"]["template"];
                let ports = t["spec"]["containers"][0]["ports"]
                    .as_sequence()
                    .unwrap()
                    .iter()
                    .map(|p| p["name"].as_str().unwrap().to_owned())
                    .collect();
                (name(d).to_owned(), labels(&t["metadata"]["labels"]), ports)
            })
            .collect();
        for o in &objects {
            let selector = match kind(o) {
                "Service" => &o["spec"]["selector"],
                "PodDisruptionBudget" | "NetworkPolicy" => {
                    &o["spec"][if kind(o) == "NetworkPolicy" { "podSelector" } else { "selector" }]["matchLabels"]
                }
                _ => continue,
            };
            let matched: Vec<_> = pods.iter().filter(|(_, l, _)| selects(selector, l)).collect();
            assert_eq!(matched.len(), 1, "{label}: {} {} selects one Deployment's pods", kind(o), name(o));
            if kind(o) == "Service" {
                for port in o["spec"]["ports"].as_sequence().unwrap() {
                    let target = port["targetPort"].as_str().unwrap();
                    assert!(matched[0].2.contains(target), "{label}: Service {} targets {target}", name(o));
                }
            }
        }
    }
}

#[test]
fn monitoring_objects_scrape_the_metrics_services_and_the_rules_pass_promtool() {
    let production = chart_dir().join("values-production.yaml");
    let objects = render(std::slice::from_ref(&production), &[]);
    let monitor = find(&objects, "ServiceMonitor", "suyun");
    let job_label = monitor["spec"]["jobLabel"].as_str().expect("jobLabel");
    let mut jobs = BTreeSet::new();
    let metrics: Vec<&Value> =
        objects.iter().filter(|o| kind(o) == "Service" && name(o).ends_with("-metrics")).collect();
    assert_eq!(metrics.len(), 2);
    for service in metrics {
        let service_labels = labels(&service["metadata"]["labels"]);
        assert!(selects(&monitor["spec"]["selector"]["matchLabels"], &service_labels), "selects {}", name(service));
        for endpoint in monitor["spec"]["endpoints"].as_sequence().unwrap() {
            let port = endpoint["port"].as_str().unwrap();
            assert!(
                service["spec"]["ports"].as_sequence().unwrap().iter().any(|p| p["name"] == port),
                "{} has a port {port}",
                name(service)
            );
        }
        jobs.insert(service_labels.get(job_label).cloned().expect("each metrics Service names its job"));
    }
    assert_eq!(jobs, BTreeSet::from(["suyun-apiserver".to_owned(), "suyun-operator".to_owned()]));
    let files = chart_dir().join("files");
    let alerts = std::fs::read_to_string(files.join("suyun-alerts.yaml")).unwrap();
    let dashboard = std::fs::read_to_string(files.join("suyun-dashboard.json")).unwrap();
    for text in [&alerts, &dashboard] {
        for (i, _) in text.match_indices("job=") {
            let used: String =
                text[i + 4..].trim_start_matches(['\\', '"']).chars().take_while(|c| *c != '"' && *c != '\\').collect();
            assert!(jobs.contains(&used), "job {used:?} used by the alerts or dashboard is not scraped as such");
        }
    }

    let rule = find(&objects, "PrometheusRule", "suyun");
    let file: Value = serde_yaml::from_str(&alerts).unwrap();
    assert_eq!(rule["spec"]["groups"], file["groups"], "the PrometheusRule carries the rules file unchanged");
    let rules_file = repo_root().join("target/chart-rules.yaml");
    std::fs::write(&rules_file, serde_yaml::to_string(&rule["spec"]).unwrap()).unwrap();
    let out = helm::run("promtool", &["check", "rules", &rules_file.display().to_string()], None, None);
    assert!(out.success, "promtool check rules on the PrometheusRule's spec:\n{}", out.text());

    let config_map = find(&objects, "ConfigMap", "suyun-dashboard");
    let data = config_map["data"]["suyun-dashboard.json"].as_str().unwrap();
    assert_eq!(data.trim_end(), dashboard.trim_end(), "the dashboard ConfigMap holds the file");
    serde_json::from_str::<serde_json::Value>(data).expect("the dashboard is JSON");
    assert_eq!(config_map["metadata"]["labels"]["grafana_dashboard"].as_str(), Some("1"));

    let certificate = find(&objects, "Certificate", "suyun-apiserver");
    let apiserver = find(&objects, "Deployment", "suyun-apiserver");
    let tls = apiserver["spec"]["template"]["spec"]["volumes"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "tls")
        .unwrap();
    assert_eq!(certificate["spec"]["secretName"], tls["secret"]["secretName"], "cert-manager fills the mounted Secret");
    let dns = str_list(&certificate["spec"]["dnsNames"]);
    assert!(dns.contains(&format!("suyun-apiserver.{NAMESPACE}.svc")), "{dns:?}");
    assert!(dns.contains(&"suyun-api.example.gov.cn".to_owned()), "{dns:?}");
    assert_eq!(certificate["spec"]["issuerRef"]["name"].as_str(), Some("suyun-gov-ca"));
}

#[test]
fn the_kustomize_base_is_the_chart_rendered_with_default_values() {
    let out_dir = repo_root().join("target/kustomize-generate");
    let _ = std::fs::remove_dir_all(&out_dir);
    let script = helm::kustomize_dir().join("generate");
    let out = helm::run("bash", &[&script.display().to_string(), &out_dir.display().to_string()], None, None);
    assert!(out.success, "deploy/kustomize/generate: {}", out.text());
    let fresh = std::fs::read_to_string(out_dir.join("suyun.yaml")).unwrap();
    let committed = std::fs::read_to_string(helm::kustomize_dir().join("base/suyun.yaml")).unwrap_or_default();
    assert!(fresh == committed, "deploy/kustomize/base/suyun.yaml is stale: run deploy/kustomize/generate and commit");
}

/// An object with what legitimately differs between Helm and kustomize removed: the
/// managed-by and chart labels, and the order of volumes and mounts (kustomize appends).
fn normalised(object: &Value) -> Value {
    let mut o = object.clone();
    fn drop_labels(meta: &mut Value) {
        if let Some(l) = meta.get_mut("labels").and_then(Value::as_mapping_mut) {
            l.remove("app.kubernetes.io/managed-by");
            l.remove("helm.sh/chart");
        }
    }
    drop_labels(&mut o["metadata"]);
    if kind(object) == "Deployment" {
        drop_labels(&mut o["spec"]["template"]["metadata"]);
        let spec = &mut o["spec"]["template"]["spec"];
        let sort = |v: &mut Value| {
            if let Some(s) = v.as_sequence_mut() {
                s.sort_by_key(|x| x["name"].as_str().unwrap_or_default().to_owned());
            }
        };
        sort(&mut spec["volumes"]);
        sort(&mut spec["containers"][0]["volumeMounts"]);
    }
    o
}

/// Each overlay and the chart values it stands for.
fn overlay_equivalents() -> Vec<(&'static str, Vec<PathBuf>, Vec<&'static str>)> {
    vec![
        (
            "overlays/dev",
            vec![],
            vec![
                "image.registry=localhost:5000",
                "image.tag=dev",
                "image.pullPolicy=Always",
                "operator.image.repository=suyun-operator",
                "apiserver.image.repository=suyun-apiserver",
                "operator.replicas=1",
                "apiserver.replicas=1",
                "operator.logFormat=text",
                "operator.resources.requests.cpu=50m",
                "operator.resources.requests.memory=128Mi",
                "operator.resources.limits.memory=512Mi",
                "apiserver.resources.requests.cpu=50m",
                "apiserver.resources.requests.memory=64Mi",
                "apiserver.resources.limits.memory=256Mi",
            ],
        ),
        (
            // The overlay takes the API's certificate from a Secret and ships no monitoring
            // objects.
            "overlays/production",
            vec![chart_dir().join("values-production.yaml")],
            vec![
                "apiserver.tls.certManager.enabled=false",
                "monitoring.serviceMonitor.enabled=false",
                "monitoring.prometheusRule.enabled=false",
                "monitoring.grafanaDashboard.enabled=false",
            ],
        ),
    ]
}

#[test]
fn each_overlay_is_the_chart_with_the_matching_values() {
    for (overlay, values, set) in overlay_equivalents() {
        let chart = documents(&helm::template("suyun-system", &values, &set).unwrap()).unwrap();
        let rendered = documents(&helm::kustomize(overlay).unwrap()).unwrap();
        let key = |o: &Value| (kind(o).to_owned(), name(o).to_owned());
        let rendered: BTreeMap<_, _> = rendered
            .iter()
            .filter(|o| !matches!(kind(o), "CustomResourceDefinition" | "Namespace"))
            .map(|o| (key(o), normalised(o)))
            .collect();
        let chart: BTreeMap<_, _> = chart.iter().map(|o| (key(o), normalised(o))).collect();
        assert_eq!(
            rendered.keys().collect::<Vec<_>>(),
            chart.keys().collect::<Vec<_>>(),
            "{overlay}: the same objects"
        );
        for (k, want) in &chart {
            assert!(
                &rendered[k] == want,
                "{overlay}: {k:?} differs:\nchart:\n{}\noverlay:\n{}",
                serde_yaml::to_string(want).unwrap(),
                serde_yaml::to_string(&rendered[k]).unwrap()
            );
        }
    }
}

#[test]
fn the_kube_apiserver_accepts_every_rendering() {
    let cluster = cluster();
    helm::install_chart_crds(cluster);
    helm::restricted_namespace(cluster, NAMESPACE);
    helm::restricted_namespace(cluster, "suyun-system");
    // The production values put the Grafana dashboard next to Grafana.
    helm::restricted_namespace(cluster, "monitoring");
    for (label, objects) in renderings() {
        let (checkable, foreign) = helm::split_foreign(&objects);
        let kinds: BTreeSet<&str> = foreign.iter().map(|o| kind(o)).collect();
        assert!(
            kinds.is_subset(&BTreeSet::from(["ServiceMonitor", "PrometheusRule", "Certificate"])),
            "{label}: unexpected foreign kinds {kinds:?}"
        );
        let out = helm::dry_run(cluster, &helm::to_stream(&checkable));
        assert!(out.success, "{label}: kubectl apply --dry-run=server refused:\n{}", out.text());
        // The namespaces warn on anything outside Pod Security "restricted".
        assert!(!out.stderr.contains("Warning"), "{label}: warnings from the apiserver:\n{}", out.stderr);
        let applied = out.stdout.lines().filter(|l| l.contains("(server dry run)")).count();
        assert_eq!(applied, checkable.len(), "{label}: every object went through:\n{}", out.stdout);
    }
}

/// The value of environment variable `name` of the apiserver's container in `objects`.
fn apiserver_env(objects: &[Value], name_wanted: &str) -> Option<String> {
    let deployment = objects.iter().find(|o| kind(o) == "Deployment" && name(o).ends_with("apiserver"))?;
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    container["env"]
        .as_sequence()?
        .iter()
        .find(|e| e["name"].as_str() == Some(name_wanted))
        .and_then(|e| e["value"].as_str().map(str::to_owned))
}

#[test]
fn the_console_is_on_by_default_and_each_deploy_can_switch_it_off() {
    for (label, objects) in renderings() {
        assert_eq!(apiserver_env(&objects, "SUYUN_APISERVER_CONSOLE").as_deref(), Some("true"), "{label}");
        assert_eq!(
            apiserver_env(&objects, "SUYUN_APISERVER_CONSOLE_SESSION_MINUTES").as_deref(),
            Some("480"),
            "{label}"
        );
    }
    let off = render(&[], &["apiserver.console.enabled=false", "apiserver.console.sessionMinutes=60"]);
    assert_eq!(apiserver_env(&off, "SUYUN_APISERVER_CONSOLE").as_deref(), Some("false"));
    assert_eq!(apiserver_env(&off, "SUYUN_APISERVER_CONSOLE_SESSION_MINUTES").as_deref(), Some("60"));
    // The schema bounds the session's life as the binary does.
    assert!(helm::template(NAMESPACE, &[], &["apiserver.console.sessionMinutes=0"]).is_err());
    // kustomize: the component, added to an overlay of the base, switches it off and changes
    // nothing else.
    let overlay = repo_root().join("target/kustomize-console-off");
    std::fs::create_dir_all(&overlay).unwrap();
    std::fs::write(
        overlay.join("kustomization.yaml"),
        "resources: [../../deploy/kustomize/base]\ncomponents: [../../deploy/kustomize/components/console-off]\n",
    )
    .unwrap();
    let out = helm::run("kubectl", &["kustomize", &overlay.display().to_string()], None, None);
    assert!(out.success, "{}", out.stderr);
    let rendered = documents(&out.stdout).unwrap();
    assert_eq!(apiserver_env(&rendered, "SUYUN_APISERVER_CONSOLE").as_deref(), Some("false"));
    let base = documents(&helm::kustomize("base").unwrap()).unwrap();
    assert_eq!(rendered.len(), base.len());
    let changed: Vec<String> =
        rendered.iter().zip(&base).filter(|(a, b)| a != b).map(|(a, _)| format!("{} {}", kind(a), name(a))).collect();
    assert_eq!(changed, ["Deployment suyun-apiserver"], "the component changes only the apiserver");
}
