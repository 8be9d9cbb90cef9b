//! Writes the CRD YAML of every kind, one file per kind, into `crds/manifests/` and the
//! Helm chart's `charts/suyun/crds/` (or only into the directory given as the first argument).

use std::path::PathBuf;

fn main() -> std::io::Result<()> {
    let crate_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let dirs = match std::env::args_os().nth(1) {
        Some(dir) => vec![PathBuf::from(dir)],
        None => vec![crate_dir.join("manifests"), crate_dir.join("../charts/suyun/crds")],
    };
    for dir in dirs {
        std::fs::create_dir_all(&dir)?;
        for (file, crd) in suyun_crds::crds() {
            let path = dir.join(file);
            std::fs::write(&path, suyun_crds::render_crd(&crd))?;
            println!("wrote {}", path.display());
        }
    }
    Ok(())
}
