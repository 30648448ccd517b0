//! The `crowbar` binary: everything lives in the library.
fn main() -> std::process::ExitCode {
    crowbar::cli::main()
}
