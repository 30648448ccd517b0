//! Importing barclamps: the one path every caller uses (start-up, the REST API, the CLI).
//!
//! An import is a batch of documents applied in **one transaction**, under an advisory lock
//! that serializes imports across daemons: parse every file, load what is stored, validate
//! the batch against it, write. Any problem anywhere refuses the whole batch and writes
//! nothing. A barclamp whose normalized content is already stored writes nothing at all.

pub mod source;

use std::path::PathBuf;

use serde::Serialize;
use sqlx::PgPool;

use crate::{
    db::{self, audit::Who, barclamps as store},
    domain::barclamp::{self, ImportPlan, Problem, Problems, RoleInUse, SourcedDoc},
};

pub use crate::domain::barclamp::Change as ImportStatus;
pub use source::{
    ANSIBLE_JIG, ReadError, ScriptFile, SourceFile, ansible_tree, role_scripts,
    shipped_role_scripts,
};

/// What an import did to one barclamp.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImportOutcome {
    pub barclamp: String,
    /// Where it was read from (a path, `shipped:barclamps/<file>`, or the caller's label).
    pub source: String,
    pub status: ImportStatus,
    /// What the barclamp declares.
    pub jigs: usize,
    pub roles: usize,
    pub attribs: usize,
    /// What the import deleted because the barclamp no longer declares it.
    pub removed_jigs: usize,
    pub removed_roles: usize,
    pub removed_attribs: usize,
}

impl std::fmt::Display for ImportOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "barclamp {} {} ({} jigs, {} roles, {} attribs",
            self.barclamp, self.status, self.jigs, self.roles, self.attribs
        )?;
        let removed = self.removed_jigs + self.removed_roles + self.removed_attribs;
        if removed > 0 {
            write!(
                f,
                "; removed {} jigs, {} roles, {} attribs",
                self.removed_jigs, self.removed_roles, self.removed_attribs
            )?;
        }
        write!(f, ") from {}", self.source)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BarclampError {
    /// The documents are wrong: syntax, structure or validation. Each problem names its file,
    /// its role (or jig, or barclamp) and the reason.
    #[error(transparent)]
    Invalid(Problems),
    /// The import would delete roles that are still bound.
    #[error("{}", in_use(.0))]
    InUse(Vec<RoleInUse>),
    #[error(transparent)]
    Read(#[from] ReadError),
    /// A constraint refused a write (e.g. a concurrent binding of a role being removed).
    #[error("barclamp import refused: {0}")]
    Conflict(String),
    #[error("database error while importing barclamps")]
    Db(#[source] db::Error),
}

fn in_use(roles: &[RoleInUse]) -> String {
    let lines: Vec<String> = roles.iter().map(ToString::to_string).collect();
    format!("barclamp refused: {}", lines.join("\n  "))
}

impl From<Problems> for BarclampError {
    fn from(problems: Problems) -> Self {
        BarclampError::Invalid(problems)
    }
}

impl From<db::Error> for BarclampError {
    fn from(error: db::Error) -> Self {
        match error {
            db::Error::RolesInUse(roles) => BarclampError::InUse(roles),
            e @ db::Error::Constraint { .. } => BarclampError::Conflict(e.to_string()),
            e => BarclampError::Db(e),
        }
    }
}

impl From<sqlx::Error> for BarclampError {
    fn from(error: sqlx::Error) -> Self {
        BarclampError::Db(error.into())
    }
}

/// Imports one document (YAML, or the same document as JSON). `source` names it in messages
/// and is stored with the barclamp (e.g. `api`). No file-name rule applies.
pub async fn import_document(
    pool: &PgPool,
    source: &str,
    text: &str,
) -> Result<ImportOutcome, BarclampError> {
    import_document_by(pool, source, text, None).await
}

/// [`import_document`], recorded in the audit trail as done by `who` (in the import's
/// transaction).
pub async fn import_document_by(
    pool: &PgPool,
    source: &str,
    text: &str,
    who: Option<&Who>,
) -> Result<ImportOutcome, BarclampError> {
    let doc = barclamp::parse(source, text).map_err(one_problem)?;
    let mut outcomes = import_docs(
        pool,
        vec![SourcedDoc {
            source: source.to_owned(),
            doc,
        }],
        who,
    )
    .await?;
    outcomes.pop().ok_or_else(|| {
        one_problem(Problem::new(
            source,
            barclamp::Subject::Document,
            "the document declares no barclamp",
        ))
    })
}

/// Imports every `<name>.yml` in `dir` as one batch: files may use each other's roles and
/// jigs in any order, and when any file is refused nothing from the directory is applied.
pub async fn import_dir(
    pool: &PgPool,
    dir: &std::path::Path,
) -> Result<Vec<ImportOutcome>, BarclampError> {
    import_files(pool, source::read_dir(dir)?).await
}

/// Imports the barclamps shipped inside the binary (`core`, `test`, ...) as one batch.
pub async fn import_shipped(pool: &PgPool) -> Result<Vec<ImportOutcome>, BarclampError> {
    import_files(pool, source::shipped()).await
}

/// What `crowbar serve` runs at start: the shipped barclamps and those of every directory,
/// as **one** batch (so a site barclamp may require shipped roles, and a bad file anywhere
/// applies nothing). Logs one line per barclamp.
pub async fn import_at_start(
    pool: &PgPool,
    dirs: &[PathBuf],
) -> Result<Vec<ImportOutcome>, BarclampError> {
    let mut files = source::shipped();
    for dir in dirs {
        files.extend(source::read_dir(dir)?);
    }
    let outcomes = import_files(pool, files).await?;
    for outcome in &outcomes {
        tracing::info!(
            barclamp = %outcome.barclamp,
            status = %outcome.status,
            source = %outcome.source,
            "{outcome}"
        );
    }
    Ok(outcomes)
}

/// Imports files as one batch. Each file `<stem>.yml` must hold barclamp `<stem>`.
pub async fn import_files(
    pool: &PgPool,
    files: Vec<SourceFile>,
) -> Result<Vec<ImportOutcome>, BarclampError> {
    let mut problems = Vec::new();
    let mut docs = Vec::with_capacity(files.len());
    for file in files {
        match barclamp::parse(&file.label, &file.text) {
            Ok(doc) => {
                problems.extend(barclamp::check_file_name(&file.label, &file.stem, &doc));
                docs.push(SourcedDoc {
                    source: file.label,
                    doc,
                });
            }
            Err(problem) => problems.push(problem),
        }
    }
    if let Some(problems) = Problems::from_vec(problems) {
        return Err(problems.into());
    }
    import_docs(pool, docs, None).await
}

async fn import_docs(
    pool: &PgPool,
    docs: Vec<SourcedDoc>,
    who: Option<&Who>,
) -> Result<Vec<ImportOutcome>, BarclampError> {
    if docs.is_empty() {
        return Ok(Vec::new());
    }
    // a few small files, read once per import
    if let Some(problems) = Problems::from_vec(playbook_problems(&docs)) {
        return Err(problems.into());
    }
    let mut tx = pool.begin().await?;
    store::lock_imports(&mut tx).await?;
    let catalog = store::load_catalog(&mut tx).await?;
    let plan = barclamp::plan(&docs, &catalog)?;
    store::apply(&mut tx, &plan).await?;
    let outcomes = outcomes(&plan);
    if let Some(who) = who {
        for outcome in &outcomes {
            let summary = serde_json::to_value(outcome).unwrap_or_default();
            let object = crate::db::audit::Object::named("barclamp", outcome.barclamp.clone());
            crate::db::audit::record(&mut tx, who, &object, &summary)
                .await
                .map_err(BarclampError::Db)?;
        }
    }
    tx.commit().await?;
    Ok(outcomes)
}

/// Every role on the `ansible` jig needs its playbook, `<barclamp>/ansible/<role>.yml`
/// beside the barclamp file (SEMANTICS.md §1): a document that comes without files (from
/// the API) cannot have one.
fn playbook_problems(docs: &[SourcedDoc]) -> Vec<Problem> {
    let mut problems = Vec::new();
    for sourced in docs {
        let barclamp = &sourced.doc.barclamp.name;
        let roles: Vec<&str> = sourced
            .doc
            .roles
            .iter()
            .filter(|r| r.jig == source::ANSIBLE_JIG)
            .map(|r| r.name.as_str())
            .collect();
        if roles.is_empty() {
            continue;
        }
        let tree = match source::ansible_tree(&sourced.source, barclamp) {
            Ok(tree) => tree,
            Err(e) => {
                problems.push(Problem::new(
                    &sourced.source,
                    barclamp::Subject::Barclamp(barclamp.clone()),
                    format!("cannot read its ansible/ folder: {e}"),
                ));
                continue;
            }
        };
        for role in roles {
            let playbook = format!("{role}.yml");
            if !tree.iter().any(|f| f.name == playbook) {
                problems.push(Problem::new(
                    &sourced.source,
                    barclamp::Subject::Role(role.to_string()),
                    format!(
                        "jig ansible runs the playbook {barclamp}/ansible/{playbook} beside the \
                         barclamp file, and there is none (a barclamp with ansible roles is \
                         imported from a directory, --barclamp-dir)"
                    ),
                ));
            }
        }
    }
    problems
}

fn outcomes(plan: &ImportPlan) -> Vec<ImportOutcome> {
    plan.barclamps
        .iter()
        .map(|planned| {
            let b = &planned.barclamp;
            let (removed_jigs, removed_roles, removed_attribs) = plan.removed_from(&b.name);
            ImportOutcome {
                barclamp: b.name.clone(),
                source: b.source.clone(),
                status: planned.change,
                jigs: b.jigs.len(),
                roles: b.roles.len(),
                attribs: b.attrib_count(),
                removed_jigs,
                removed_roles,
                removed_attribs,
            }
        })
        .collect()
}

fn one_problem(problem: Problem) -> BarclampError {
    BarclampError::Invalid(Problems::one(problem))
}
