//! Writes the CRD YAML of the four kinds into `crds/manifests/` (or the directory given as the
//! first argument), one file per kind.

use std::path::PathBuf;

fn main() -> std::io::Result<()> {
    let dir = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("manifests"));
    std::fs::create_dir_all(&dir)?;
    for (file, crd) in suyun_crds::crds() {
        let path = dir.join(file);
        std::fs::write(&path, suyun_crds::render_crd(&crd))?;
        println!("wrote {}", path.display());
    }
    Ok(())
}
