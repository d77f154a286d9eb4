//! Server-side apply of multi-document YAML, through API discovery.

use super::KubeError;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::discovery::{Discovery, Scope};
use kube::{Client, ResourceExt};

const FIELD_MANAGER: &str = "raftcert";

/// Applies every document of `text`; namespaced objects land in `namespace`.
pub async fn apply_all(
    client: &Client,
    text: &str,
    origin: &str,
    namespace: &str,
) -> Result<Vec<String>, KubeError> {
    let discovery = Discovery::new(client.clone()).run().await?;
    let mut applied = Vec::new();
    for (index, document) in documents(text, origin)?.into_iter().enumerate() {
        let object: DynamicObject =
            serde_json::from_value(document).map_err(|e| KubeError::Manifest {
                path: origin.to_string(),
                message: format!("document {}: {e}", index + 1),
            })?;
        let types = object.types.clone().ok_or_else(|| KubeError::Manifest {
            path: origin.to_string(),
            message: format!("document {} has no apiVersion/kind", index + 1),
        })?;
        let gvk =
            kube::core::GroupVersionKind::try_from(&types).map_err(|e| KubeError::Manifest {
                path: origin.to_string(),
                message: format!("document {}: {e}", index + 1),
            })?;
        let (resource, capabilities) =
            discovery
                .resolve_gvk(&gvk)
                .ok_or_else(|| KubeError::Manifest {
                    path: origin.to_string(),
                    message: format!(
                        "the cluster does not serve {}/{}",
                        types.api_version, types.kind
                    ),
                })?;
        let api: Api<DynamicObject> = match capabilities.scope {
            // An object that names its namespace keeps it (operator installs).
            Scope::Namespaced => Api::namespaced_with(
                client.clone(),
                object.metadata.namespace.as_deref().unwrap_or(namespace),
                &resource,
            ),
            Scope::Cluster => Api::all_with(client.clone(), &resource),
        };
        let name = object.name_any();
        api.patch(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&object),
        )
        .await?;
        applied.push(format!("{}/{name}", types.kind));
    }
    Ok(applied)
}

/// Splits YAML into JSON documents, skipping empty ones.
fn documents(text: &str, origin: &str) -> Result<Vec<serde_json::Value>, KubeError> {
    let values: Vec<serde_json::Value> =
        serde_saphyr::from_multiple(text).map_err(|e| KubeError::Manifest {
            path: origin.to_string(),
            message: crate::util::yaml_error_text(&e),
        })?;
    Ok(values.into_iter().filter(|v| !v.is_null()).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multi_document_yaml_splits_and_skips_empty_documents() {
        let docs = documents(
            "apiVersion: v1\nkind: Service\nmetadata: {name: a}\n---\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: b}\n",
            "x.yaml",
        )
        .expect("parses");
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[1]["kind"], "Pod");
    }

    #[test]
    fn bad_yaml_names_its_position() {
        let err = documents("a: [1,\n", "x.yaml").expect_err("bad yaml");
        assert!(err.to_string().starts_with("x.yaml: "), "{err}");
    }
}
