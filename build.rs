//! Rebuilds the crate when embedded data changes. `sqlx::migrate!` and rust-embed track the
//! files they embedded, but not files added to their folders.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
    println!("cargo:rerun-if-changed=barclamps");
}
