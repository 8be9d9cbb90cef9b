//! The committed CRD YAML must be exactly what the types generate.

#[test]
fn committed_crds_match_the_types() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("manifests");
    for (file, crd) in suyun_crds::crds() {
        let committed = std::fs::read_to_string(dir.join(file)).unwrap_or_else(|e| {
            panic!("crds/manifests/{file} missing ({e}); run `cargo run -p suyun-crds --bin crdgen`")
        });
        assert!(
            committed == suyun_crds::render_crd(&crd),
            "crds/manifests/{file} is stale; run `cargo run -p suyun-crds --bin crdgen` and commit"
        );
    }
}
