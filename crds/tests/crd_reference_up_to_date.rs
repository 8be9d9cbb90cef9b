//! The committed `docs/crd-reference.md` must be exactly what `crddoc` renders from the CRDs.

#[test]
fn committed_crd_reference_matches_the_crds() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_crddoc")).arg("-").output().expect("crddoc runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/crd-reference.md");
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == String::from_utf8_lossy(&out.stdout),
        "docs/crd-reference.md is stale; run `cargo run -p suyun-crds --bin crddoc` and commit"
    );
}
