//! The built-in admin token (API.md "Serving"): given with `--admin-token`, or generated on
//! first start into `<data-dir>/admin.token` (mode 0600) and printed once. Its hash is stored
//! in `api_tokens` under the name `admin` at every start, so the token that works is always
//! the one this daemon was started with.

use std::{
    fs,
    io::Write,
    os::unix::fs::{OpenOptionsExt, PermissionsExt},
    path::{Path, PathBuf},
};

use sqlx::PgPool;

use crate::{
    db::{self, keys},
    secret::Secret,
};

/// The name the built-in admin token has in `api_tokens` and in the audit trail.
pub const ADMIN_TOKEN_NAME: &str = "admin";

/// Where the built-in admin token came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminTokenSource {
    /// `--admin-token` / `CROWBAR_ADMIN_TOKEN`.
    Setting,
    /// Read from the token file a previous start generated.
    File(PathBuf),
    /// Generated now into this file (and printed once).
    Generated(PathBuf),
}

#[derive(Debug, thiserror::Error)]
pub enum AdminTokenError {
    #[error("the admin token given with --admin-token / CROWBAR_ADMIN_TOKEN is empty")]
    EmptySetting,
    #[error("{0} is empty; delete it to have a new admin token generated")]
    EmptyFile(PathBuf),
    #[error("cannot read or write the admin token file {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot store the admin token: {0}")]
    Store(#[from] db::Error),
}

impl From<sqlx::Error> for AdminTokenError {
    fn from(e: sqlx::Error) -> Self {
        AdminTokenError::Store(e.into())
    }
}

/// The file a generated admin token is kept in.
pub fn admin_token_path(data_dir: &Path) -> PathBuf {
    data_dir.join("admin.token")
}

/// Makes the built-in admin token work: takes `setting` when given, else the token in
/// `<data_dir>/admin.token`, else generates one there (mode 0600) and prints it once to
/// stdout. Its hash replaces the stored `admin` token.
pub async fn ensure_admin_token(
    pool: &PgPool,
    data_dir: &Path,
    setting: Option<&Secret>,
) -> Result<AdminTokenSource, AdminTokenError> {
    let (token, source) = match setting {
        Some(secret) => {
            let token = secret.expose().trim();
            if token.is_empty() {
                return Err(AdminTokenError::EmptySetting);
            }
            (Secret::new(token), AdminTokenSource::Setting)
        }
        None => from_file(&admin_token_path(data_dir))?,
    };
    let mut tx = pool.begin().await?;
    db::tokens::upsert(&mut tx, ADMIN_TOKEN_NAME, &keys::token_hash(token.expose())).await?;
    tx.commit().await?;
    match &source {
        AdminTokenSource::Setting => tracing::info!("admin token taken from the settings"),
        AdminTokenSource::File(path) => {
            tracing::info!(path = %path.display(), "admin token read from its file")
        }
        AdminTokenSource::Generated(path) => {
            tracing::info!(path = %path.display(), "admin token generated");
            println!(
                "Generated the admin token (kept in {}; it is not printed again):\n\n    {}\n",
                path.display(),
                token.expose()
            );
        }
    }
    Ok(source)
}

fn from_file(path: &Path) -> Result<(Secret, AdminTokenSource), AdminTokenError> {
    let io = |source| AdminTokenError::Io {
        path: path.to_path_buf(),
        source,
    };
    match fs::read_to_string(path) {
        Ok(text) => {
            let token = text.trim();
            if token.is_empty() {
                return Err(AdminTokenError::EmptyFile(path.to_path_buf()));
            }
            let mode = fs::metadata(path).map_err(io)?.permissions().mode();
            if mode & 0o077 != 0 {
                tracing::warn!(
                    path = %path.display(),
                    "the admin token file is readable by others; making it 0600"
                );
                fs::set_permissions(path, fs::Permissions::from_mode(0o600)).map_err(io)?;
            }
            Ok((
                Secret::new(token),
                AdminTokenSource::File(path.to_path_buf()),
            ))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if let Some(dir) = path.parent() {
                fs::create_dir_all(dir).map_err(io)?;
            }
            let token = keys::new_token();
            // create_new: a token file is never overwritten, even by a daemon starting at
            // the same moment (the loser reads the winner's token)
            let mut file = match fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
            {
                Ok(file) => file,
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    std::thread::sleep(std::time::Duration::from_millis(100));
                    return from_file(path);
                }
                Err(e) => return Err(io(e)),
            };
            file.write_all(format!("{token}\n").as_bytes())
                .and_then(|()| file.sync_all())
                .map_err(io)?;
            Ok((
                Secret::new(token),
                AdminTokenSource::Generated(path.to_path_buf()),
            ))
        }
        Err(e) => Err(io(e)),
    }
}
