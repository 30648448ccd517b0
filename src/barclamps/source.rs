//! Where barclamp files come from: the ones shipped inside the binary (the repository's
//! `barclamps/` folder), and directories on disk. Also the role scripts next to them.
//!
//! A barclamp `<name>` is the file `<name>.yml` (or `.yaml`); the scripts of its role `<role>`
//! are the files in `<name>/roles/<role>/`, run in file-name order.

use std::{
    borrow::Cow,
    io,
    path::{Path, PathBuf},
};

use rust_embed::Embed;

/// The repository's `barclamps/` folder, embedded at build time.
#[derive(Embed)]
#[folder = "barclamps/"]
struct Shipped;

/// Prefix of the source label of shipped barclamps: `shipped:barclamps/core.yml`.
pub const SHIPPED_PREFIX: &str = "shipped:barclamps/";

/// One barclamp file to import.
#[derive(Debug, Clone)]
pub struct SourceFile {
    /// Names the file in messages and is stored as the barclamp's `source`: an absolute
    /// path, or `shipped:barclamps/<file>`.
    pub label: String,
    /// The file name without extension, which must equal the barclamp's name.
    pub stem: String,
    pub text: String,
}

/// A script a role ships to nodes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScriptFile {
    /// The file name, e.g. `10-hostname.sh`.
    pub name: String,
    pub contents: Cow<'static, [u8]>,
}

/// The barclamp files shipped with crowbar, in file-name order.
pub fn shipped() -> Vec<SourceFile> {
    let mut files: Vec<SourceFile> = Shipped::iter()
        .filter_map(|path| {
            let stem = barclamp_stem(Path::new(path.as_ref()))?;
            if path.contains('/') {
                return None;
            }
            let file = Shipped::get(&path)?;
            Some(SourceFile {
                label: format!("{SHIPPED_PREFIX}{path}"),
                stem,
                text: String::from_utf8_lossy(&file.data).into_owned(),
            })
        })
        .collect();
    files.sort_by(|a, b| a.label.cmp(&b.label));
    files
}

/// A file or directory that could not be read.
#[derive(Debug, thiserror::Error)]
#[error("cannot read {}: {error}", .path.display())]
pub struct ReadError {
    pub path: PathBuf,
    pub error: io::Error,
}

/// The barclamp files (`*.yml`, `*.yaml`) directly in `dir`, in file-name order, labelled by
/// their absolute path.
pub fn read_dir(dir: &Path) -> Result<Vec<SourceFile>, ReadError> {
    let failed = |path: &Path| {
        let path = path.to_owned();
        move |error| ReadError { path, error }
    };
    let dir = dir.canonicalize().map_err(failed(dir))?;
    let mut paths: Vec<PathBuf> = Vec::new();
    for entry in std::fs::read_dir(&dir).map_err(failed(&dir))? {
        let path = entry.map_err(failed(&dir))?.path();
        if path.is_file() && barclamp_stem(&path).is_some() {
            paths.push(path);
        }
    }
    paths.sort();
    paths
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path).map_err(failed(&path))?;
            Ok(SourceFile {
                label: path.display().to_string(),
                stem: barclamp_stem(&path).unwrap_or_default(),
                text,
            })
        })
        .collect()
}

fn barclamp_stem(path: &Path) -> Option<String> {
    let extension = path.extension()?.to_str()?;
    matches!(extension, "yml" | "yaml").then_some(())?;
    path.file_stem()?.to_str().map(str::to_owned)
}

/// The scripts of `role` in barclamp `barclamp`, read from where the barclamp was imported
/// from (`source`, as stored with the barclamp), in file-name order. None for barclamps that
/// came through the API, or roles without a script folder.
pub fn role_scripts(source: &str, barclamp: &str, role: &str) -> io::Result<Vec<ScriptFile>> {
    if source.starts_with(SHIPPED_PREFIX) {
        return Ok(shipped_role_scripts(barclamp, role));
    }
    let path = Path::new(source);
    if !path.is_absolute() {
        return Ok(Vec::new());
    }
    let Some(dir) = path.parent() else {
        return Ok(Vec::new());
    };
    let folder = dir.join(barclamp).join("roles").join(role);
    let entries = match std::fs::read_dir(&folder) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut scripts = Vec::new();
    for entry in entries {
        let entry = entry?;
        if !entry.file_type()?.is_file() {
            continue;
        }
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        let contents = std::fs::read(entry.path())?;
        scripts.push(ScriptFile {
            name,
            contents: Cow::Owned(contents),
        });
    }
    scripts.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(scripts)
}

/// The scripts of a shipped role, in file-name order.
pub fn shipped_role_scripts(barclamp: &str, role: &str) -> Vec<ScriptFile> {
    let prefix = format!("{barclamp}/roles/{role}/");
    let mut scripts: Vec<ScriptFile> = Shipped::iter()
        .filter_map(|path| {
            let name = path.strip_prefix(&prefix)?;
            if name.contains('/') {
                return None;
            }
            let file = Shipped::get(&path)?;
            Some(ScriptFile {
                name: name.to_owned(),
                contents: file.data,
            })
        })
        .collect();
    scripts.sort_by(|a, b| a.name.cmp(&b.name));
    scripts
}

/// The jig whose roles run the playbooks of a barclamp's `ansible/` folder.
pub const ANSIBLE_JIG: &str = "ansible";

/// The most files an `ansible/` folder may hold.
pub const MAX_ANSIBLE_FILES: usize = 2000;

/// The files of a barclamp's `ansible/` folder (`<barclamp>/ansible/` beside its file): the
/// playbooks of its roles on the `ansible` jig and whatever they use, as paths relative to
/// the folder (`web.yml`, `templates/site.conf.j2`), sorted. Symbolic links are left out:
/// nothing outside the folder comes along. Empty when there is no such folder.
pub fn ansible_tree(source: &str, barclamp: &str) -> io::Result<Vec<ScriptFile>> {
    if source.starts_with(SHIPPED_PREFIX) {
        let prefix = format!("{barclamp}/ansible/");
        let mut files: Vec<ScriptFile> = Shipped::iter()
            .filter_map(|path| {
                let name = path.strip_prefix(&prefix)?.to_owned();
                let file = Shipped::get(&path)?;
                Some(ScriptFile {
                    name,
                    contents: file.data,
                })
            })
            .collect();
        files.sort_by(|a, b| a.name.cmp(&b.name));
        return Ok(files);
    }
    let path = Path::new(source);
    let Some(dir) = path.parent().filter(|_| path.is_absolute()) else {
        return Ok(Vec::new());
    };
    let root = dir.join(barclamp).join("ansible");
    let mut files = Vec::new();
    let mut pending = vec![String::new()];
    while let Some(relative) = pending.pop() {
        let entries = match std::fs::read_dir(root.join(&relative)) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound && relative.is_empty() => {
                return Ok(Vec::new());
            }
            Err(e) => return Err(e),
        };
        for entry in entries {
            let entry = entry?;
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            let name = if relative.is_empty() {
                name
            } else {
                format!("{relative}/{name}")
            };
            let kind = entry.file_type()?;
            if kind.is_dir() {
                pending.push(name);
            } else if kind.is_file() {
                if files.len() == MAX_ANSIBLE_FILES {
                    return Err(io::Error::other(format!(
                        "{} holds more than {MAX_ANSIBLE_FILES} files",
                        root.display()
                    )));
                }
                files.push(ScriptFile {
                    name,
                    contents: Cow::Owned(std::fs::read(entry.path())?),
                });
            }
        }
    }
    files.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(files)
}
