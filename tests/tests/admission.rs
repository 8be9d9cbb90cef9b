//! The generated CRDs against the real kube-apiserver: they install, `kubectl explain` shows
//! their docs, every Jiangsu example is accepted and every invalid example is refused with the
//! message its file expects.

use std::time::Duration;

use kube::discovery::Discovery;
use suyun_tests::{cluster, eventually, install_crds, manifests, repo_root};

#[tokio::test]
async fn crds_install_and_explain_shows_the_field_docs() {
    let cluster = cluster();
    let client = cluster.client().await.unwrap();
    install_crds(&client).await.unwrap();

    // The apiserver publishes a new CRD's OpenAPI and discovery a moment after it is
    // Established: ask again until kubectl sees it.
    let kubectl = |args: &'static [&'static str], want: &'static [&'static str]| async move {
        eventually(Duration::from_secs(60), || async {
            let (ok, out) = cluster.kubectl(args);
            anyhow::ensure!(ok, "kubectl {args:?} failed: {out}");
            for w in want {
                anyhow::ensure!(out.contains(w), "kubectl {args:?}: {w:?} missing from:\n{out}");
            }
            Ok(())
        })
        .await
        .unwrap()
    };
    kubectl(&["explain", "cloudnode.spec.capacity"], &["Declared capacity", "CPU in cores"]).await;
    kubectl(&["explain", "govsystem.spec.classification"], &["Classified (涉密)"]).await;
    kubectl(&["explain", "govsystem.spec.residencyWaiver"], &["grantedBy", "journal"]).await;
    kubectl(&["explain", "citybudget.spec.lending"], &["borrowPercent", "lendPercent", "departments"]).await;
    kubectl(&["explain", "citybudget.spec.nodes"], &["share of the provincial node"]).await;
    kubectl(&["explain", "residencypolicy.spec.rules.region"], &["OwnCity", "OwnProvince", "Anywhere"]).await;
    kubectl(
        &["api-resources", "--categories", "suyun", "-o", "name"],
        &[
            "cloudnodes.suyun.io",
            "tenants.suyun.io",
            "govsystems.suyun.io",
            "migrationwaves.suyun.io",
            "citybudgets.suyun.io",
            "residencypolicies.suyun.io",
        ],
    )
    .await;
    kubectl(&["get", "cnode,gtenant,mwave,cbudget,respol"], &[]).await;
}

/// Applies every example of `dir` (Namespaces for real, the rest as a server-side dry run, so
/// the test leaves no Suyun objects behind for the other tests); returns the refusals.
async fn refusals_of(client: &kube::Client, discovery: &Discovery, all: &[manifests::Manifest]) -> Vec<String> {
    for m in all.iter().filter(|m| m.object.types.as_ref().is_some_and(|t| t.kind == "Namespace")) {
        manifests::apply(client, discovery, m, false).await.unwrap();
    }
    let mut refused = Vec::new();
    for m in all.iter().filter(|m| m.object.types.as_ref().is_some_and(|t| t.kind != "Namespace")) {
        if let Err(e) = manifests::apply(client, discovery, m, true).await {
            refused.push(format!("{} {:?}: {e}", m.file.display(), m.object.metadata.name));
        }
    }
    refused
}

#[tokio::test]
async fn every_zhejiang_example_is_accepted() {
    let client = cluster().client().await.unwrap();
    install_crds(&client).await.unwrap();
    let discovery = Discovery::new(client.clone()).run().await.unwrap();
    let all = manifests::read_dir(&repo_root().join("deploy/examples/zhejiang")).unwrap();
    let count = |kind: &str| all.iter().filter(|m| m.object.types.as_ref().is_some_and(|t| t.kind == kind)).count();
    assert_eq!(count("CloudNode"), 12, "1 + 11 nodes");
    assert!(count("CityBudget") >= 5, "{} city budgets", count("CityBudget"));
    assert_eq!(count("ResidencyPolicy"), 1);
    let refused = refusals_of(&client, &discovery, &all).await;
    assert!(refused.is_empty(), "valid examples refused:\n{}", refused.join("\n"));
}

#[tokio::test]
async fn every_jiangsu_example_is_accepted() {
    let cluster = cluster();
    let client = cluster.client().await.unwrap();
    install_crds(&client).await.unwrap();
    let discovery = Discovery::new(client.clone()).run().await.unwrap();
    let all = manifests::read_dir(&repo_root().join("deploy/examples/jiangsu")).unwrap();
    let count = |kind: &str| all.iter().filter(|m| m.object.types.as_ref().is_some_and(|t| t.kind == kind)).count();
    assert_eq!(count("CloudNode"), 14);
    assert!(count("Tenant") >= 20, "{} tenants", count("Tenant"));
    assert!(count("GovSystem") >= 50, "{} systems", count("GovSystem"));
    assert_eq!(count("MigrationWave"), 2);
    assert_eq!(count("CityBudget"), 13, "one budget per city");
    let refused = refusals_of(&client, &discovery, &all).await;
    assert!(refused.is_empty(), "valid examples refused:\n{}", refused.join("\n"));
}

#[tokio::test]
async fn every_invalid_example_is_refused_with_its_message() {
    let cluster = cluster();
    let client = cluster.client().await.unwrap();
    install_crds(&client).await.unwrap();
    let discovery = Discovery::new(client.clone()).run().await.unwrap();
    let all = manifests::read_dir(&repo_root().join("deploy/examples/invalid")).unwrap();
    assert!(all.len() >= 15, "only {} invalid examples", all.len());
    let mut wrong = Vec::new();
    for m in &all {
        let expect = m.expect.as_deref().unwrap_or_else(|| panic!("{} has no `# expect:` line", m.file.display()));
        match manifests::apply(&client, &discovery, m, true).await {
            Ok(_) => wrong.push(format!("{}: accepted, expected refusal with {expect:?}", m.file.display())),
            Err(kube::Error::Api(status)) => {
                if status.code != 422 || !status.message.contains(expect) {
                    wrong.push(format!(
                        "{}: got {} {:?}, expected {expect:?}",
                        m.file.display(),
                        status.code,
                        status.message
                    ));
                }
            }
            Err(e) => wrong.push(format!("{}: unexpected error {e}", m.file.display())),
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
