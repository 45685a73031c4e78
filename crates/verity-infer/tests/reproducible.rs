//! `models/make_models.py` regenerates every bundled model and sample byte for byte: the files
//! committed are the ones the script makes, so anyone can check what the bundled models are.

use std::path::{Path, PathBuf};
use std::process::Command;

fn files(root: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
            } else {
                found.push(path.strip_prefix(root).unwrap().to_path_buf());
            }
        }
    }
    found.sort();
    found
}

#[test]
#[ignore = "needs VERITY_PYTHON (with numpy, scikit-learn, onnx); scripts/test runs it"]
fn make_models_regenerates_the_bundled_files_byte_for_byte() {
    let python = std::env::var_os("VERITY_PYTHON")
        .expect("VERITY_PYTHON is not set: scripts/test points it at .venv/bin/python");
    let models = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models");
    let out = tempfile::tempdir().unwrap();
    let run = Command::new(&python)
        .arg(models.join("make_models.py"))
        .arg("--out")
        .arg(out.path())
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "make_models.py failed:\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let made = files(out.path());
    assert!(made.len() >= 14, "{made:?}");
    for file in &made {
        let ours = std::fs::read(models.join(file))
            .unwrap_or_else(|e| panic!("{} is made but not committed: {e}", file.display()));
        assert!(
            ours == std::fs::read(out.path().join(file)).unwrap(),
            "models/{} differs from what make_models.py makes now",
            file.display()
        );
    }
}
