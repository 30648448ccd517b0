//! SQL lives in `db` (and in `pg`, the private PostgreSQL bootstrap, for its own
//! statements). Everything else calls db functions, so a statement is found, reviewed and
//! tuned in one place, and a jig, the probe or the web edge cannot write SQL of its own.
//! This test reads the source tree and names every statement outside those folders.

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    /// The ways sqlx runs a statement.
    const STATEMENT_CALLS: &[&str] = &[
        "sqlx::query",
        "sqlx::raw_sql",
        "query!(",
        "query_as!(",
        "query_scalar!(",
    ];

    /// Folders (under `src/`) where statements belong.
    const SQL_HOMES: &[&str] = &["db", "pg"];

    fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).expect("read the source tree") {
            let path = entry.expect("a directory entry").path();
            if path.is_dir() {
                rust_files(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }

    /// A `use sqlx::...` that imports a statement function by name counts as a statement.
    fn imports_a_statement(line: &str) -> bool {
        let line = line.trim_start();
        line.starts_with("use sqlx")
            && ["query", "raw_sql"].iter().any(|f| {
                line.split(|c: char| !c.is_alphanumeric() && c != '_')
                    .any(|word| word.starts_with(f))
            })
    }

    #[test]
    fn sql_statements_live_in_db_and_pg_only() {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut files = Vec::new();
        rust_files(&src, &mut files);
        assert!(files.len() > 50, "the source tree was not found at {src:?}");
        let mut found = Vec::new();
        for file in files {
            let relative = file.strip_prefix(&src).unwrap();
            let home = relative.components().next().unwrap().as_os_str();
            if SQL_HOMES.iter().any(|h| home == *h) {
                continue;
            }
            let text = std::fs::read_to_string(&file).unwrap();
            for (n, line) in text.lines().enumerate() {
                if STATEMENT_CALLS.iter().any(|call| line.contains(call))
                    || imports_a_statement(line)
                {
                    found.push(format!(
                        "src/{}:{}: {}",
                        relative.display(),
                        n + 1,
                        line.trim()
                    ));
                }
            }
        }
        assert!(
            found.is_empty(),
            "SQL belongs in src/db (a function there, called from here):\n{}",
            found.join("\n")
        );
    }

    #[test]
    fn the_check_sees_statements_and_their_imports() {
        assert!(imports_a_statement("use sqlx::{query, PgPool};"));
        assert!(imports_a_statement("use sqlx::query_as;"));
        assert!(!imports_a_statement("use sqlx::{PgConnection, PgPool};"));
        assert!(
            STATEMENT_CALLS
                .iter()
                .any(|c| "let x = sqlx::query_scalar(".contains(c))
        );
    }
}
