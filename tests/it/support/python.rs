//! The Python tools some tests run (an OpenAPI fuzzer and validator), from the checkout's
//! `.venv/`, which `scripts/python-tools` creates with pinned versions
//! (`scripts/python-requirements.txt`); `scripts/test` runs it first.

use std::path::PathBuf;

/// `<checkout>/.venv/bin/<name>`; panics with the command that installs it when missing.
pub fn tool(name: &str) -> PathBuf {
    let checkout = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let path = checkout.join(".venv/bin").join(name);
    assert!(
        path.exists(),
        "{} is missing: run scripts/python-tools (scripts/test does) in {}",
        path.display(),
        checkout.display()
    );
    path
}
