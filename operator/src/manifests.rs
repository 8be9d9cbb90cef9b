//! Reads the YAML that kubectl applies — files or directories, multi-document — into the
//! objects a plan is made from. Other kinds are ignored. Every error names the file, the
//! document (1-based) and the field.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::plan_input::Objects;

/// Why a manifest could not be read.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file or directory could not be read.
    #[error("{path}: {source}")]
    Io {
        /// What was being read.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A document is not YAML, or a field has the wrong type or value.
    #[error("{path}: document {document}{object}: {message}")]
    Document {
        /// File.
        path: PathBuf,
        /// 1-based document number within the file.
        document: usize,
        /// ` (Kind name)` when known.
        object: String,
        /// What is wrong, starting with the field path when there is one.
        message: String,
    },
}

/// Loads every `.yaml`/`.yml` file under the given paths (directories recursively, in name
/// order).
pub fn load(paths: &[PathBuf]) -> Result<Objects, LoadError> {
    let mut files = Vec::new();
    for path in paths {
        collect(path, &mut files)?;
    }
    let mut objects = Objects::default();
    for file in files {
        let text = std::fs::read_to_string(&file).map_err(|source| LoadError::Io { path: file.clone(), source })?;
        load_text(&file, &text, &mut objects)?;
    }
    Ok(objects)
}

fn collect(path: &Path, files: &mut Vec<PathBuf>) -> Result<(), LoadError> {
    let io = |source| LoadError::Io { path: path.to_path_buf(), source };
    if path.is_dir() {
        let mut entries: Vec<PathBuf> =
            std::fs::read_dir(path).map_err(io)?.map(|e| e.map(|e| e.path())).collect::<Result<_, _>>().map_err(io)?;
        entries.sort();
        for entry in entries {
            if entry.is_dir() || entry.extension().is_some_and(|e| e == "yaml" || e == "yml") {
                collect(&entry, files)?;
            }
        }
    } else {
        std::fs::metadata(path).map_err(io)?;
        files.push(path.to_path_buf());
    }
    Ok(())
}

/// Loads the documents of one file's text into `objects`.
pub fn load_text(path: &Path, text: &str, objects: &mut Objects) -> Result<(), LoadError> {
    for (i, doc) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let document = i + 1;
        let fail = |object: String, message: String| LoadError::Document {
            path: path.to_path_buf(),
            document,
            object,
            message,
        };
        let value = serde_yaml::Value::deserialize(doc).map_err(|e| fail(String::new(), e.to_string()))?;
        if value.is_null() {
            continue;
        }
        let field = |key: &str| value.get(key).and_then(|v| v.as_str()).unwrap_or_default().to_owned();
        let (api_version, kind) = (field("apiVersion"), field("kind"));
        let name = value.get("metadata").and_then(|m| m.get("name")).and_then(|n| n.as_str()).unwrap_or("?");
        let object = format!(" ({kind} {name})");
        if api_version != "suyun.io/v1alpha1" {
            continue;
        }
        match kind.as_str() {
            "CloudNode" => objects.cloud_nodes.push(Arc::new(typed(value).map_err(|m| fail(object, m))?)),
            "Tenant" => objects.tenants.push(Arc::new(typed(value).map_err(|m| fail(object, m))?)),
            "GovSystem" => objects.systems.push(Arc::new(typed(value).map_err(|m| fail(object, m))?)),
            "MigrationWave" => objects.waves.push(Arc::new(typed(value).map_err(|m| fail(object, m))?)),
            "CityBudget" => objects.city_budgets.push(Arc::new(typed(value).map_err(|m| fail(object, m))?)),
            "ResidencyPolicy" => objects.residency_policies.push(Arc::new(typed(value).map_err(|m| fail(object, m))?)),
            _ => return Err(fail(object, format!("kind: unknown suyun.io/v1alpha1 kind {kind:?}"))),
        }
    }
    Ok(())
}

/// Deserialises with the path of the failing field in the message (`spec.securityLevel: …`).
fn typed<T: DeserializeOwned>(value: serde_yaml::Value) -> Result<T, String> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        if path == "." { e.inner().to_string() } else { format!("{path}: {}", e.inner()) }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_str(text: &str) -> Result<Objects, LoadError> {
        let mut objects = Objects::default();
        load_text(Path::new("in.yaml"), text, &mut objects).map(|()| objects)
    }

    #[test]
    fn reads_multi_document_files_and_ignores_other_kinds() {
        let objects = load_str(
            "apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n---\n\
             apiVersion: suyun.io/v1alpha1\nkind: MigrationWave\nmetadata: {name: w}\n\
             spec: {selector: {}, executor: Simulated}\n---\n",
        )
        .unwrap();
        assert_eq!(objects.waves.len(), 1);
        assert!(objects.cloud_nodes.is_empty());
    }

    #[test]
    fn a_wrong_type_names_file_document_object_and_field() {
        let err = load_str(
            "apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n---\n\
             apiVersion: suyun.io/v1alpha1\nkind: CloudNode\nmetadata: {name: nanjing}\n\
             spec: {tier: City, regionCode: '320100', displayName: x, securityLevel: high}\n",
        )
        .unwrap_err()
        .to_string();
        assert!(err.starts_with("in.yaml: document 2 (CloudNode nanjing): spec.securityLevel: "), "{err}");
    }

    #[test]
    fn malformed_yaml_names_the_document() {
        let err = load_str("a: [1, 2\n").unwrap_err().to_string();
        assert!(err.starts_with("in.yaml: document 1: "), "{err}");
    }

    #[test]
    fn an_unknown_enum_value_names_the_field() {
        let err = load_str(
            "apiVersion: suyun.io/v1alpha1\nkind: CloudNode\nmetadata: {name: n}\n\
             spec: {tier: County, regionCode: '320100', displayName: x, securityLevel: 2}\n",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("spec.tier: unknown variant `County`"), "{err}");
    }
}
