//! YAML manifests from `deploy/examples/`, applied through the dynamic API exactly as kubectl
//! would send them.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use kube::Client;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::discovery::{ApiResource, Discovery, Scope};

/// One document of a manifest file.
#[derive(Clone, Debug)]
pub struct Manifest {
    /// File it came from.
    pub file: PathBuf,
    /// The object.
    pub object: DynamicObject,
    /// Comment lines `# expect: …` at the top of the file (for invalid examples).
    pub expect: Option<String>,
}

/// Reads every `.yaml` file of `dir` (sorted), every document in each.
pub fn read_dir(dir: &Path) -> anyhow::Result<Vec<Manifest>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    files.retain(|p| p.extension().is_some_and(|e| e == "yaml"));
    files.sort();
    let mut out = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file)?;
        let expect = text.lines().find_map(|l| l.strip_prefix("# expect: ")).map(str::to_owned);
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let value = serde_yaml::Value::deserialize(doc).with_context(|| format!("parsing {}", file.display()))?;
            if value.is_null() {
                continue;
            }
            let object: DynamicObject =
                serde_yaml::from_value(value).with_context(|| format!("reading an object in {}", file.display()))?;
            out.push(Manifest { file: file.clone(), object, expect: expect.clone() });
        }
    }
    Ok(out)
}

use serde::Deserialize as _;

/// The dynamic API for an object's kind, namespaced when the kind is.
pub fn api_for(client: &Client, discovery: &Discovery, object: &DynamicObject) -> anyhow::Result<Api<DynamicObject>> {
    let types = object.types.as_ref().context("object without apiVersion/kind")?;
    let (group, version) = types.api_version.rsplit_once('/').unwrap_or(("", &types.api_version));
    let (resource, caps) = discovery
        .groups()
        .flat_map(|g| g.recommended_resources())
        .find(|(r, _)| r.group == group && r.version == version && r.kind == types.kind)
        .with_context(|| format!("kind {}/{} not served", types.api_version, types.kind))?;
    let ar: ApiResource = resource;
    Ok(match caps.scope {
        Scope::Cluster => Api::all_with(client.clone(), &ar),
        Scope::Namespaced => {
            Api::namespaced_with(client.clone(), object.metadata.namespace.as_deref().unwrap_or("default"), &ar)
        }
    })
}

/// Server-side applies a manifest, or with `dry_run` only asks admission about it (whether
/// or not the object exists) without storing anything.
pub async fn apply(
    client: &Client,
    discovery: &Discovery,
    m: &Manifest,
    dry_run: bool,
) -> Result<DynamicObject, kube::Error> {
    let api = api_for(client, discovery, &m.object).map_err(|e| kube::Error::Service(e.into()))?;
    let name = m.object.metadata.name.clone().unwrap_or_default();
    let mut params = PatchParams::apply("suyun-tests").force();
    params.dry_run = dry_run;
    api.patch(&name, &params, &Patch::Apply(&m.object)).await
}
