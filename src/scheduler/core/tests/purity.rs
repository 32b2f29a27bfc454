//! The core stays pure: no IO crate, no clock, no spawning, no awaiting (DESIGN §11). Read
//! from the source, so that a change that breaks the rule fails here and not in review.

use std::path::Path;

const FORBIDDEN: &[&str] = &[
    "tokio",
    "sqlx",
    "bollard",
    "reqwest",
    "axum",
    "hyper",
    "Utc::now",
    "Instant::now",
    "SystemTime",
    ".await",
    "async ",
    "spawn",
    "std::fs",
    "std::net",
    "std::thread",
    "rand::",
];

#[test]
fn the_core_reads_no_clock_and_does_no_io() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/scheduler/core");
    let mut checked = 0;
    for file in rust_files(&dir) {
        let is_test = file.components().any(|c| c.as_os_str() == "tests")
            || file.file_name().is_some_and(|n| n == "tests.rs");
        if is_test {
            continue;
        }
        let text = std::fs::read_to_string(&file).unwrap();
        for (n, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            for word in FORBIDDEN {
                assert!(
                    !code.contains(word),
                    "{}:{}: `{word}` in the decision core: {line}",
                    file.display(),
                    n + 1
                );
            }
        }
        checked += 1;
    }
    assert!(
        checked >= 10,
        "only {checked} files found under {}",
        dir.display()
    );
}

fn rust_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
    files
}
