//! Barclamp import against a real database: shipped barclamps, refusals that leave the
//! database exactly as it was, re-imports, removals and concurrent imports.

use std::path::Path;

use crowbar::barclamps::{
    self, BarclampError, ImportStatus, import_dir, import_document, import_shipped,
};
use serde_json::{Value, json};
use sqlx::PgPool;

use crate::support::db::test_db;

/// Every row of the barclamp tables (and of the tables that reference roles), updated_at
/// included: two equal dumps mean nothing was written.
async fn dump(pool: &PgPool) -> Value {
    let mut all = serde_json::Map::new();
    for table in [
        "barclamps",
        "jigs",
        "roles",
        "attribs",
        "noderoles",
        "deployment_roles",
    ] {
        let rows: Vec<Value> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT to_jsonb(t) FROM {table} t ORDER BY id"
        )))
        .fetch_all(pool)
        .await
        .unwrap();
        all.insert(table.to_owned(), Value::Array(rows));
    }
    Value::Object(all)
}

fn statuses(outcomes: &[barclamps::ImportOutcome]) -> Vec<(String, ImportStatus)> {
    outcomes
        .iter()
        .map(|o| (o.barclamp.clone(), o.status))
        .collect()
}

fn write(dir: &Path, file: &str, text: &str) {
    std::fs::write(dir.join(file), text).unwrap();
}

#[derive(Debug, sqlx::FromRow)]
struct RoleRow {
    jig: String,
    barclamp: String,
    implicit: bool,
    bootstrap: bool,
    discovery: bool,
    cluster: bool,
    destructive: bool,
    milestone: bool,
    requires: Vec<String>,
    template: Value,
}

async fn role(pool: &PgPool, name: &str) -> RoleRow {
    sqlx::query_as(
        "SELECT j.name AS jig, b.name AS barclamp, r.implicit, r.bootstrap, r.discovery,
                r.cluster, r.destructive, r.milestone, r.requires, r.template
           FROM roles r JOIN jigs j ON j.id = r.jig_id JOIN barclamps b ON b.id = r.barclamp_id
          WHERE r.name = $1",
    )
    .bind(name)
    .fetch_one(pool)
    .await
    .unwrap_or_else(|e| panic!("role {name}: {e}"))
}

#[tokio::test]
async fn shipped_barclamps_import_and_a_second_import_changes_nothing() {
    let db = test_db().await;
    let outcomes = import_shipped(&db.pool).await.unwrap();
    assert_eq!(
        statuses(&outcomes),
        [
            ("core".to_owned(), ImportStatus::Created),
            ("provisioner".to_owned(), ImportStatus::Created),
            ("base".to_owned(), ImportStatus::Created),
            ("demo".to_owned(), ImportStatus::Created),
            ("test".to_owned(), ImportStatus::Created)
        ]
    );
    assert_eq!(outcomes[0].source, "shipped:barclamps/core.yml");

    let jigs: Vec<String> = sqlx::query_scalar("SELECT name FROM jigs ORDER BY name")
        .fetch_all(&db.pool)
        .await
        .unwrap();
    assert_eq!(
        jigs,
        [
            "ansible",
            "bmc",
            "dnsmasq",
            "noop",
            "os-install",
            "script",
            "test"
        ]
    );

    let bmc = role(&db.pool, "bmc").await;
    assert_eq!(
        (bmc.jig.as_str(), bmc.barclamp.as_str()),
        ("bmc", "provisioner")
    );
    assert!(!bmc.implicit);
    assert_eq!(bmc.requires, ["crowbar-managed-node"]);
    let admin = role(&db.pool, "crowbar-admin-node").await;
    assert!(admin.bootstrap && !admin.implicit);
    assert_eq!(admin.requires, ["crowbar-installed-node"]);
    let managed = role(&db.pool, "crowbar-managed-node").await;
    assert!(managed.discovery && managed.implicit);
    assert_eq!(managed.requires, ["crowbar-access"]);
    let installed = role(&db.pool, "crowbar-installed-node").await;
    assert!(installed.implicit && installed.milestone);
    assert_eq!(installed.requires, ["crowbar-managed-node"]);
    let access = role(&db.pool, "crowbar-access").await;
    assert!(access.implicit);
    assert_eq!(access.jig, "script");

    let client = role(&db.pool, "test-client").await;
    assert_eq!(client.barclamp, "test");
    assert_eq!(client.jig, "test");
    assert!(client.implicit);
    assert_eq!(client.requires, ["test-server", "test-library"]);
    assert_eq!(role(&db.pool, "test-server").await.requires, ["test-admin"]);
    assert!(role(&db.pool, "test-library").await.implicit);
    assert_eq!(
        role(&db.pool, "test-client-client").await.requires,
        ["test-client"]
    );
    assert!(role(&db.pool, "test-cluster").await.cluster);
    assert!(role(&db.pool, "test-destructive").await.destructive);
    assert_eq!(
        role(&db.pool, "test-fails").await.template,
        json!({"test": {"fail": true}})
    );
    assert_eq!(
        role(&db.pool, "test-slow").await.template,
        json!({"test": {"delay": 5}})
    );
    let (map, default): (String, Value) = sqlx::query_as(
        "SELECT a.map, a.default_value FROM attribs a JOIN roles r ON r.id = a.role_id
          WHERE a.name = 'test-slow-delay' AND r.name = 'test-slow'",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!((map.as_str(), default), ("test/delay", json!(5)));
    let parent: Option<String> =
        sqlx::query_scalar("SELECT parent FROM barclamps WHERE name = 'test'")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(parent.as_deref(), Some("core"));

    let before = dump(&db.pool).await;
    let again = import_shipped(&db.pool).await.unwrap();
    assert!(
        again.iter().all(|o| o.status == ImportStatus::Unchanged),
        "{again:?}"
    );
    assert_eq!(
        dump(&db.pool).await,
        before,
        "a second import must write nothing"
    );

    // What `crowbar serve` runs: shipped plus (here no) site directories.
    let at_start = barclamps::import_at_start(&db.pool, &[]).await.unwrap();
    assert!(at_start.iter().all(|o| o.status == ImportStatus::Unchanged));
    assert_eq!(dump(&db.pool).await, before);
}

#[test]
fn shipped_role_scripts_are_readable() {
    let scripts = barclamps::shipped_role_scripts("core", "crowbar-access");
    let names: Vec<&str> = scripts.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["10-hostname.sh", "20-ssh-keys.sh"]);
    assert!(scripts[0].contents.starts_with(b"#!/usr/bin/env bash\n"));
    let via_source =
        barclamps::role_scripts("shipped:barclamps/core.yml", "core", "crowbar-access").unwrap();
    assert_eq!(via_source, scripts);
    assert!(barclamps::shipped_role_scripts("core", "crowbar-admin-node").is_empty());
    assert!(
        barclamps::role_scripts("api", "site", "x")
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn directory_role_scripts_are_found_next_to_the_file() {
    let db = test_db().await;
    import_shipped(&db.pool).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "site.yml",
        "barclamp: {name: site, parent: core}\nroles: [{name: site-web, jig: script}]\n",
    );
    let scripts = dir.path().join("site/roles/site-web");
    std::fs::create_dir_all(&scripts).unwrap();
    std::fs::write(scripts.join("20-b.sh"), "echo b\n").unwrap();
    std::fs::write(scripts.join("10-a.sh"), "echo a\n").unwrap();

    let outcomes = import_dir(&db.pool, dir.path()).await.unwrap();
    let source: String = sqlx::query_scalar("SELECT source FROM barclamps WHERE name = 'site'")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(source, outcomes[0].source);
    assert!(Path::new(&source).is_absolute(), "{source}");
    let found = barclamps::role_scripts(&source, "site", "site-web").unwrap();
    let names: Vec<&str> = found.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["10-a.sh", "20-b.sh"]);
    assert_eq!(&*found[0].contents, b"echo a\n");
}

/// Each kind of bad barclamp: (what, file text, role named, reason fragment).
const BAD: &[(&str, &str, Option<&str>, &str)] = &[
    (
        "yaml syntax",
        "barclamp: {name: site, parent: core}\nroles:\n  - name: site-a\n    jig: noop\n    requires: [crowbar-access\n    flags: []\n",
        Some("site-a"),
        "line 6 column",
    ),
    (
        "unknown jig",
        "barclamp: {name: site, parent: core}\nroles:\n  - {name: site-a, jig: chef}\n",
        Some("site-a"),
        "unknown jig chef",
    ),
    (
        "unknown required role",
        "barclamp: {name: site, parent: core}\nroles:\n  - {name: site-a, jig: noop, requires: [site-ghost]}\n",
        Some("site-a"),
        "requires unknown role site-ghost",
    ),
    (
        "require cycle through stored roles",
        "barclamp: {name: site, parent: core}\nroles:\n  - {name: site-loop, jig: noop, provides: [test-server], requires: [test-client]}\n",
        Some("site-loop"),
        "require cycle: site-loop -> test-client -> site-loop",
    ),
    (
        "duplicate role",
        "barclamp: {name: site, parent: core}\nroles:\n  - {name: site-a, jig: noop}\n  - {name: site-a, jig: noop}\n",
        Some("site-a"),
        "declared twice in this document",
    ),
    (
        "unknown flag",
        "barclamp: {name: site, parent: core}\nroles:\n  - {name: site-a, jig: noop, flags: [implicit, shiny]}\n",
        Some("site-a"),
        "unknown flag `shiny`",
    ),
    (
        "role of another barclamp",
        "barclamp: {name: site, parent: core}\nroles:\n  - {name: test-admin, jig: test}\n",
        Some("test-admin"),
        "role test-admin already belongs to barclamp test",
    ),
    (
        "an ansible role without its playbook",
        "barclamp: {name: site, parent: core}\nroles:\n  - {name: site-a, jig: ansible}\n",
        Some("site-a"),
        "runs the playbook site/ansible/site-a.yml beside the barclamp file, and there is none",
    ),
    (
        "unknown key",
        "barclamp: {name: site, parent: core}\nroles:\n  - {name: site-a, jig: noop, require: [x]}\n",
        Some("site-a"),
        "unknown field `require`",
    ),
];

#[tokio::test]
async fn bad_barclamps_are_refused_and_change_nothing() {
    let db = test_db().await;
    import_shipped(&db.pool).await.unwrap();
    let before = dump(&db.pool).await;

    for (what, text, role, reason) in BAD {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "site.yml", text);
        let file = dir.path().canonicalize().unwrap().join("site.yml");
        let error = import_dir(&db.pool, dir.path())
            .await
            .expect_err(&format!("{what}: must be refused"));
        assert!(
            matches!(error, BarclampError::Invalid(_)),
            "{what}: {error:?}"
        );
        let message = error.to_string();
        let expected_start = match role {
            Some(role) => format!("barclamp refused: {}: role {role}: ", file.display()),
            None => format!("barclamp refused: {}: ", file.display()),
        };
        assert!(
            message.starts_with(&expected_start),
            "{what}: `{message}` should start with `{expected_start}`"
        );
        assert!(
            message.contains(reason),
            "{what}: `{message}` lacks `{reason}`"
        );
        assert_eq!(dump(&db.pool).await, before, "{what}: the database changed");

        // The same document through the API is refused the same way.
        let error = import_document(&db.pool, "api", text).await.unwrap_err();
        assert!(error.to_string().contains(reason), "{what}: {error}");
        assert_eq!(dump(&db.pool).await, before, "{what}: the database changed");
    }
}

#[tokio::test]
async fn every_problem_of_a_barclamp_is_reported() {
    let db = test_db().await;
    import_shipped(&db.pool).await.unwrap();
    let text = "barclamp: {name: site, parent: core}\nroles:\n  - {name: site-a, jig: chef}\n  - {name: site-b, jig: noop, flags: [shiny]}\n  - {name: site-c, jig: noop, timeout: -1, template: [x]}\n";
    let error = import_document(&db.pool, "site.yml", text)
        .await
        .unwrap_err();
    let BarclampError::Invalid(problems) = &error else {
        panic!("{error:?}");
    };
    let roles: Vec<Option<&str>> = problems.as_slice().iter().map(|p| p.role()).collect();
    assert_eq!(
        roles,
        [
            Some("site-a"),
            Some("site-b"),
            Some("site-c"),
            Some("site-c")
        ],
        "{error}"
    );
    assert!(
        error
            .to_string()
            .starts_with("barclamps refused (4 problems):")
    );
}

#[tokio::test]
async fn a_directory_imports_in_dependency_order_all_or_nothing() {
    let db = test_db().await;
    import_shipped(&db.pool).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    // `alpha` sorts first but needs `zulu`'s jig and roles.
    write(
        dir.path(),
        "alpha.yml",
        "barclamp: {name: alpha, parent: zulu}\nroles:\n  - {name: alpha-app, jig: zulu-jig, requires: [zulu-db, crowbar-installed-node]}\n",
    );
    write(
        dir.path(),
        "zulu.yml",
        "barclamp: {name: zulu, parent: core}\njigs: [{name: zulu-jig}]\nroles:\n  - {name: zulu-db, jig: zulu-jig, provides: [database]}\n",
    );
    let outcomes = import_dir(&db.pool, dir.path()).await.unwrap();
    assert_eq!(
        statuses(&outcomes),
        [
            ("zulu".to_owned(), ImportStatus::Created),
            ("alpha".to_owned(), ImportStatus::Created)
        ]
    );

    // One bad file refuses the whole directory, including the good changes beside it.
    let before = dump(&db.pool).await;
    write(
        dir.path(),
        "zulu.yml",
        "barclamp: {name: zulu, parent: core}\njigs: [{name: zulu-jig}]\nroles:\n  - {name: zulu-db, jig: zulu-jig, provides: [database]}\n  - {name: zulu-extra, jig: zulu-jig}\n",
    );
    write(
        dir.path(),
        "beta.yml",
        "barclamp: {name: beta}\nroles: [{name: beta-x, jig: noop, requires: [nothing-here]}]\n",
    );
    let error = import_dir(&db.pool, dir.path()).await.unwrap_err();
    assert!(
        error
            .to_string()
            .contains("beta.yml: role beta-x: requires unknown role nothing-here"),
        "{error}"
    );
    assert_eq!(dump(&db.pool).await, before);

    // A file must be named after its barclamp.
    std::fs::remove_file(dir.path().join("beta.yml")).unwrap();
    write(dir.path(), "gamma.yml", "barclamp: {name: delta}\n");
    let error = import_dir(&db.pool, dir.path()).await.unwrap_err();
    assert!(
        error
            .to_string()
            .contains("gamma.yml: barclamp delta: the file must be named after its barclamp"),
        "{error}"
    );
    assert_eq!(dump(&db.pool).await, before);
}

const SITE_V1: &str = r#"
barclamp: {name: site, parent: core, description: first}
roles:
  - name: site-a
    jig: noop
    requires: [crowbar-managed-node]
  - name: site-b
    jig: script
    description: b
    timeout: 60
    template: {site: {port: 80}}
    attribs:
      - {name: site-b-port, map: site/port, default: 80}
  - name: site-c
    jig: noop
"#;

const SITE_V2: &str = r#"
barclamp: {name: site, parent: core, description: second}
roles:
  - name: site-a
    jig: noop
    requires: [crowbar-managed-node]
  - name: site-b
    jig: script
    description: b, changed
    flags: [service]
    timeout: 90
    template: {site: {port: 8080}}
    attribs:
      - {name: site-b-port, map: site/port, default: 8080}
  - name: site-d
    jig: noop
    requires: [site-b]
"#;

async fn updated_at(pool: &PgPool, role: &str) -> Value {
    sqlx::query_scalar("SELECT to_jsonb(updated_at) FROM roles WHERE name = $1")
        .bind(role)
        .fetch_one(pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_changed_barclamp_reimports_as_updated() {
    let db = test_db().await;
    import_shipped(&db.pool).await.unwrap();
    let created = import_document(&db.pool, "site.yml", SITE_V1)
        .await
        .unwrap();
    assert_eq!(created.status, ImportStatus::Created);
    assert_eq!((created.roles, created.attribs), (3, 1));
    let a_before = updated_at(&db.pool, "site-a").await;

    let updated = import_document(&db.pool, "site.yml", SITE_V2)
        .await
        .unwrap();
    assert_eq!(updated.status, ImportStatus::Updated);
    assert_eq!((updated.roles, updated.removed_roles), (3, 1));
    assert!(updated.to_string().contains("updated"), "{updated}");

    let names: Vec<String> = sqlx::query_scalar(
        "SELECT r.name FROM roles r JOIN barclamps b ON b.id = r.barclamp_id
          WHERE b.name = 'site' ORDER BY r.name",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    assert_eq!(names, ["site-a", "site-b", "site-d"]);
    let (description, service, timeout, template): (String, bool, Option<i32>, Value) =
        sqlx::query_as(
            "SELECT description, service, timeout_secs, template FROM roles WHERE name = 'site-b'",
        )
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(description, "b, changed");
    assert!(service);
    assert_eq!(timeout, Some(90));
    assert_eq!(template, json!({"site": {"port": 8080}}));
    let default: Value =
        sqlx::query_scalar("SELECT default_value FROM attribs WHERE name = 'site-b-port'")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(default, json!(8080));
    let (description, hash, document): (String, String, Value) = sqlx::query_as(
        "SELECT description, content_hash, document FROM barclamps WHERE name = 'site'",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(description, "second");
    assert_eq!(hash.len(), 64);
    assert_eq!(document["roles"][1]["flags"], json!(["service"]));
    assert_eq!(
        updated_at(&db.pool, "site-a").await,
        a_before,
        "an unchanged role keeps its row untouched"
    );

    // The stored normalized document, sent back as JSON, is the same barclamp.
    let again = import_document(&db.pool, "api", &document.to_string())
        .await
        .unwrap();
    assert_eq!(again.status, ImportStatus::Unchanged);
}

#[tokio::test]
async fn removing_a_bound_role_is_refused_and_changes_nothing() {
    let db = test_db().await;
    import_shipped(&db.pool).await.unwrap();
    import_document(&db.pool, "/srv/site.yml", SITE_V1)
        .await
        .unwrap();
    let node: i64 = sqlx::query_scalar(
        "INSERT INTO nodes (name, deployment_id)
         SELECT 'n1.example.com', id FROM deployments WHERE system RETURNING id",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO noderoles (node_id, role_id, deployment_id)
         SELECT $1, r.id, d.id FROM roles r, deployments d WHERE r.name = 'site-c' AND d.system",
    )
    .bind(node)
    .execute(&db.pool)
    .await
    .unwrap();
    let before = dump(&db.pool).await;

    let error = import_document(&db.pool, "/srv/site.yml", SITE_V2)
        .await
        .unwrap_err();
    assert!(matches!(error, BarclampError::InUse(_)), "{error:?}");
    assert_eq!(
        error.to_string(),
        "barclamp refused: /srv/site.yml: role site-c: cannot remove it from barclamp site: \
         still used by 1 noderole(s) and 0 deployment role(s); unbind it first"
    );
    assert_eq!(dump(&db.pool).await, before);

    // Bound in a deployment instead: refused the same way.
    sqlx::query("DELETE FROM noderoles")
        .execute(&db.pool)
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO deployment_roles (deployment_id, role_id)
         SELECT d.id, r.id FROM deployments d, roles r WHERE d.system AND r.name = 'site-c'",
    )
    .execute(&db.pool)
    .await
    .unwrap();
    let before = dump(&db.pool).await;
    let error = import_document(&db.pool, "/srv/site.yml", SITE_V2)
        .await
        .unwrap_err();
    assert!(
        error
            .to_string()
            .contains("0 noderole(s) and 1 deployment role(s)"),
        "{error}"
    );
    assert_eq!(dump(&db.pool).await, before);

    // Once unbound, the removal goes through.
    sqlx::query("DELETE FROM deployment_roles")
        .execute(&db.pool)
        .await
        .unwrap();
    let updated = import_document(&db.pool, "/srv/site.yml", SITE_V2)
        .await
        .unwrap();
    assert_eq!(updated.removed_roles, 1);
}

#[tokio::test]
async fn constraint_violations_are_recognized_by_name() {
    use crowbar::db::Error;
    let db = test_db().await;
    import_shipped(&db.pool).await.unwrap();
    sqlx::query(
        "INSERT INTO deployment_roles (deployment_id, role_id)
         SELECT d.id, r.id FROM deployments d, roles r WHERE d.system AND r.name = 'test-admin'",
    )
    .execute(&db.pool)
    .await
    .unwrap();
    // What a binding racing past the in-use check would make the import's DELETE hit.
    let raw = sqlx::query("DELETE FROM roles WHERE name = 'test-admin'")
        .execute(&db.pool)
        .await
        .unwrap_err();
    let error = Error::from_import(raw);
    assert!(
        matches!(&error, Error::Constraint { constraint, .. }
            if constraint == "deployment_roles_role_id_fkey"),
        "{error:?}"
    );
    let error = BarclampError::from(error);
    assert_eq!(
        error.to_string(),
        "barclamp import refused: a role this import removes is used by a deployment \
         (constraint deployment_roles_role_id_fkey)"
    );
}

#[tokio::test]
async fn removing_a_role_another_barclamp_requires_is_refused() {
    let db = test_db().await;
    import_shipped(&db.pool).await.unwrap();
    import_document(&db.pool, "site.yml", SITE_V1)
        .await
        .unwrap();
    import_document(
        &db.pool,
        "other.yml",
        "barclamp: {name: other, parent: site}\nroles: [{name: other-x, jig: noop, requires: [site-c]}]\n",
    )
    .await
    .unwrap();
    let before = dump(&db.pool).await;
    let error = import_document(&db.pool, "site.yml", SITE_V2)
        .await
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "barclamp refused: site.yml: role site-c: cannot remove role site-c: \
         role other-x of barclamp other requires it"
    );
    assert_eq!(dump(&db.pool).await, before);
}

#[tokio::test]
async fn concurrent_imports_of_a_new_barclamp_both_succeed_once() {
    let db = test_db().await;
    import_shipped(&db.pool).await.unwrap();
    let (a, b) = tokio::join!(
        import_document(&db.pool, "site.yml", SITE_V1),
        import_document(&db.pool, "site.yml", SITE_V1),
    );
    let mut got = vec![a.unwrap().status, b.unwrap().status];
    got.sort_by_key(|s| s.to_string());
    assert_eq!(got, [ImportStatus::Created, ImportStatus::Unchanged]);
    let (barclamps, roles): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM barclamps WHERE name = 'site'),
                (SELECT count(*) FROM roles r JOIN barclamps b ON b.id = r.barclamp_id
                  WHERE b.name = 'site')",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!((barclamps, roles), (1, 3));

    // Whole start-up imports racing, as several daemons starting at once do.
    let fresh = test_db().await;
    let (a, b, c) = tokio::join!(
        import_shipped(&fresh.pool),
        import_shipped(&fresh.pool),
        import_shipped(&fresh.pool),
    );
    let created = [a.unwrap(), b.unwrap(), c.unwrap()]
        .iter()
        .filter(|o| o.iter().all(|o| o.status == ImportStatus::Created))
        .count();
    assert_eq!(created, 1);
}

#[tokio::test]
async fn serve_refuses_to_start_with_a_bad_barclamp() {
    let db = test_db().await;
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "site.yml",
        "barclamp: {name: site, parent: core}\nroles:\n  - {name: site-a, jig: noop, requires: [site-ghost]}\n",
    );
    let serve = tokio::process::Command::new(env!("CARGO_BIN_EXE_crowbar"))
        .arg("serve")
        .args(["--listen", "127.0.0.1:0"])
        .arg("--database-url")
        .arg(db.url.expose())
        .arg("--barclamp-dir")
        .arg(dir.path())
        .env("RUST_LOG", "warn")
        .env("RUST_BACKTRACE", "1")
        .kill_on_drop(true)
        .output();
    // Bounded: a serve that wrongly starts is killed on drop instead of hanging the suite.
    let output = tokio::time::timeout(std::time::Duration::from_secs(60), serve)
        .await
        .expect("serve must exit on a bad barclamp")
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    let file = dir.path().canonicalize().unwrap().join("site.yml");
    assert!(
        stderr.contains(&format!(
            "error: barclamp refused: {}: role site-a: requires unknown role site-ghost",
            file.display()
        )),
        "{stderr}"
    );
    assert!(
        !stderr.contains("backtrace") && !stderr.contains("panicked"),
        "{stderr}"
    );
    // Nothing was imported, not even the shipped barclamps of the same batch.
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM barclamps")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(count, 0);
}
