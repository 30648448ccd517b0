//! Files only crowbar's own user may read (its SSH key, the BMC credential key): created in
//! a directory of mode 0700, and refused when their mode lets others read them, as OpenSSH
//! refuses such a key. A leaf: it imports nothing of crowbar.

use std::{
    fs::{self, DirBuilder},
    io,
    os::unix::fs::{DirBuilderExt, PermissionsExt},
    path::Path,
};

/// Creates `dir` (and its parents) with mode 0700 when it does not exist.
pub fn create_dir(dir: &Path) -> io::Result<()> {
    DirBuilder::new().recursive(true).mode(0o700).create(dir)
}

/// Whether the file at `path` is closed to group and others: `Err` says what is wrong and
/// how to fix it.
pub fn check_mode(mode: u32, what: &str) -> Result<(), String> {
    let mode = mode & 0o777;
    if mode & 0o077 != 0 {
        return Err(format!(
            "permissions {mode:04o} are too open: others may read the {what} (chmod 600 it)"
        ));
    }
    Ok(())
}

/// [`check_mode`] of the file at `path`.
pub fn check_file(path: &Path, what: &str) -> Result<(), String> {
    let meta = fs::metadata(path).map_err(|e| e.to_string())?;
    check_mode(meta.permissions().mode(), what)
}
