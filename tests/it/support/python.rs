//! The Python tools some tests run (an OpenAPI fuzzer and validator) and the browser tests'
//! assets (axe-core), from the checkout's `.venv/`, which `scripts/python-tools` creates with
//! pinned versions (`scripts/python-requirements.txt`, `scripts/browser-test-assets.txt`);
//! `scripts/test` runs it first.

use std::path::PathBuf;

/// `<checkout>/.venv/bin/<name>`; panics with the command that installs it when missing.
pub fn tool(name: &str) -> PathBuf {
    installed(&format!(".venv/bin/{name}"))
}

/// `<checkout>/.venv/share/crowbar-test/<name>`, a browser-test asset; panics with the
/// command that installs it when missing.
pub fn share(name: &str) -> PathBuf {
    installed(&format!(".venv/share/crowbar-test/{name}"))
}

fn installed(relative: &str) -> PathBuf {
    let checkout = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let path = checkout.join(relative);
    assert!(
        path.exists(),
        "{} is missing: run scripts/python-tools (scripts/test does) in {}",
        path.display(),
        checkout.display()
    );
    path
}
