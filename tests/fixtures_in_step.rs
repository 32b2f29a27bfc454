//! The fixtures kept in the repository (`tests/fixtures/github`) are the shared ones
//! (`../shared/fixtures/github`, beside the checkout where the team keeps them): a file that
//! differs or is missing here is reported. Skipped when the shared folder is absent (a clone).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn files_under(root: &Path) -> BTreeSet<PathBuf> {
    let mut found = BTreeSet::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else {
                found.insert(path.strip_prefix(root).unwrap().to_path_buf());
            }
        }
    }
    found
}

#[test]
fn repository_fixtures_match_the_shared_ones() {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let shared = manifest.join("../shared/fixtures/github");
    if !shared.is_dir() {
        eprintln!("skipped: {} is absent", shared.display());
        return;
    }
    let ours = manifest.join("tests/fixtures/github");
    let mut differences = Vec::new();
    let theirs_all = files_under(&shared);
    for extra in files_under(&ours).difference(&theirs_all) {
        differences.push(format!("only here: {}", extra.display()));
    }
    for file in theirs_all {
        let theirs = std::fs::read(shared.join(&file)).unwrap();
        match std::fs::read(ours.join(&file)) {
            Ok(mine) if mine == theirs => {}
            Ok(_) => differences.push(format!("differs: {}", file.display())),
            Err(_) => differences.push(format!("missing here: {}", file.display())),
        }
    }
    assert!(
        differences.is_empty(),
        "tests/fixtures/github is out of step with {}:\n  {}\n\
         take the change with `rm -r tests/fixtures/github && cp -r ../shared/fixtures/github tests/fixtures/`",
        shared.display(),
        differences.join("\n  ")
    );
}
