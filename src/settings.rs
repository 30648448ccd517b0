//! What every group of settings shares. A group (`AccessSettings`, `AnnealerSettings`, ...)
//! is a set of command-line flags with environment variables; its `Default` is what those
//! flags give when none is passed, so a default is written once, on its flag, and tests and
//! embedders that build settings in code get the same values as `crowbar serve`.

/// The values a group of flags takes when none is passed (environment variables apply, as
/// for the daemon).
pub fn from_flag_defaults<T: clap::Args + clap::FromArgMatches>() -> T {
    let command = T::augment_args(clap::Command::new("crowbar"));
    let matches = command
        .try_get_matches_from(["crowbar"])
        .unwrap_or_else(|e| panic!("the defaults of a settings group do not parse: {e}"));
    T::from_arg_matches(&matches)
        .unwrap_or_else(|e| panic!("the defaults of a settings group do not parse: {e}"))
}
