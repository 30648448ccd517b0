//! Every resource verb's happy path and refusals, in tables and as JSON.

use serde_json::Value;

use super::{Cli, names};
use crate::support::daemon::run_script;

#[tokio::test]
async fn nodes_and_roles_verbs() {
    let cli = Cli::start().await;
    let out = cli
        .ok(&[
            "nodes",
            "create",
            "n1.example.com",
            "--address",
            "198.51.100.7",
            "--description",
            "first",
        ])
        .await;
    assert!(out.starts_with("node n1.example.com created (id "), "{out}");
    assert!(out.contains("\ntoken (shown only now): "), "{out}");
    let n2 = cli.json(&["nodes", "create", "n2.example.com"]).await;
    assert_eq!(n2["name"], "n2.example.com");
    assert_eq!(n2["alive"], false);
    assert_eq!(n2["token"].as_str().unwrap().len(), 64);

    assert_eq!(
        cli.ok(&["nodes", "alive", "n1.example.com", "true"]).await,
        "node n1.example.com: alive true\n"
    );
    assert_eq!(
        cli.ok(&[
            "nodes",
            "available",
            "n2.example.com",
            "false",
            "--reason",
            "maintenance"
        ])
        .await,
        "node n2.example.com: available false\n"
    );
    let history = cli
        .daemon
        .client()
        .get(format!(
            "{}/api/v2/nodes/n2.example.com/events",
            cli.daemon.url()
        ))
        .bearer_auth(super::admin_token(&cli.daemon))
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    assert!(
        history.to_string().contains("maintenance"),
        "the reason is in the node's history: {history}"
    );

    // filters map to the API's
    let alive = cli.json(&["nodes", "list", "--alive", "true"]).await;
    assert_eq!(names(&alive), ["n1.example.com"]);
    let second = cli
        .json(&["nodes", "list", "--limit", "1", "--offset", "1"])
        .await;
    assert_eq!(names(&second), ["n2.example.com"]);
    let first_id = alive[0]["id"].to_string();
    let after = cli.json(&["nodes", "list", "--after", &first_id]).await;
    assert_eq!(names(&after), ["n2.example.com"]);
    let reserved = cli.json(&["nodes", "list", "--available", "false"]).await;
    assert_eq!(names(&reserved), ["n2.example.com"]);
    let table = cli.ok(&["nodes", "list", "--deployment", "system"]).await;
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 3, "{table}");
    assert!(
        lines[0].starts_with("ID  NAME            DEPLOYMENT  STATE"),
        "{table}"
    );
    assert!(
        lines[1].contains("n1.example.com  system") && lines[1].ends_with("198.51.100.7"),
        "{table}"
    );

    let shown = cli.ok(&["nodes", "show", "n1.example.com"]).await;
    assert!(
        shown.starts_with("address:          198.51.100.7\n"),
        "{shown}"
    );
    assert!(shown.contains("\ndescription:      first\n"), "{shown}");
    let updated = cli
        .json(&[
            "nodes",
            "update",
            "n2.example.com",
            "--description",
            "second",
            "--bootenv",
            "local",
        ])
        .await;
    assert_eq!(updated["description"], "second");
    assert_eq!(updated["bootenv"], "local");

    // unknown nodes: the server's message and code, what to do next, exit 1
    for args in [
        &["nodes", "show", "nope.example.com"][..],
        &["nodes", "alive", "nope.example.com", "true"],
        &["nodes", "update", "nope.example.com", "--description", "x"],
        &["nodes", "delete", "nope.example.com"],
    ] {
        let err = cli.fails(args, 1).await;
        assert!(
            err.starts_with("error: node `nope.example.com` not found (not_found, HTTP 404)\n"),
            "{err}"
        );
        assert!(
            err.contains("hint: nothing was changed; see what exists with `crowbar nodes list`"),
            "{err}"
        );
    }
    let err = cli
        .fails(
            &["nodes", "update", "n2.example.com", "--bootenv", "a b"],
            1,
        )
        .await;
    assert!(err.contains("(invalid_bootenv, HTTP 422)"), "{err}");
    assert!(
        err.contains("hint: nothing was changed; correct the input"),
        "{err}"
    );
    assert_eq!(
        cli.json(&["nodes", "show", "n2.example.com"]).await["bootenv"],
        "local",
        "a refused update changes nothing"
    );
    // a value that is not true or false never reaches the daemon
    let err = cli
        .fails(&["nodes", "alive", "n1.example.com", "maybe"], 2)
        .await;
    assert!(err.contains("invalid value 'maybe'"), "{err}");

    assert_eq!(
        cli.ok(&["nodes", "delete", "n2.example.com"]).await,
        "node n2.example.com deleted\n"
    );
    cli.fails(&["nodes", "show", "n2.example.com"], 1).await;

    // roles
    let roles = cli.json(&["roles", "list", "--barclamp", "test"]).await;
    assert!(names(&roles).contains(&"test-server"), "{roles}");
    assert!(
        roles
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["barclamp"] == "test")
    );
    let table = cli.ok(&["roles", "list", "--jig", "test"]).await;
    assert!(
        table.starts_with("ID  NAME") && table.contains("BARCLAMP  JIG"),
        "{table}"
    );
    let client = cli.json(&["roles", "show", "test-client"]).await;
    assert_eq!(
        client["requires"],
        serde_json::json!(["test-server", "test-library"])
    );
    let shown = cli.ok(&["roles", "show", "test-client"]).await;
    assert!(
        shown.contains("\nrequires:") && shown.contains("test-server,test-library"),
        "{shown}"
    );
    let err = cli.fails(&["roles", "show", "no-such-role"], 1).await;
    assert!(err.contains("`crowbar roles list`"), "{err}");

    // no token given: ./var/admin.token, where `crowbar serve` keeps it by default
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("var")).unwrap();
    std::fs::write(
        dir.path().join("var/admin.token"),
        super::admin_token(&cli.daemon),
    )
    .unwrap();
    let url = cli.daemon.url();
    let out = run_script(
        "crowbar nodes list --json | jq -r '.[].name'",
        dir.path(),
        &[("CROWBAR_URL", &url)],
        super::T,
    )
    .await;
    assert!(out.status.success(), "{}", out.stderr);
    assert_eq!(out.stdout, "n1.example.com\n");

    // a wrong token: refused, with what to pass
    let out = super::run_crowbar(
        &["nodes", "list"],
        &[
            ("CROWBAR_URL", cli.daemon.url().as_str()),
            ("CROWBAR_TOKEN", "wrong"),
        ],
        super::T,
    )
    .await;
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stderr.contains("HTTP 401"), "{}", out.stderr);
    assert!(
        out.stderr.contains("hint: pass a valid token"),
        "{}",
        out.stderr
    );
}

#[tokio::test]
async fn deployments_and_node_roles_verbs() {
    let cli = Cli::start().await;
    cli.alive_nodes(&["n1.example.com", "n2.example.com"]).await;
    assert_eq!(
        cli.ok(&["deployments", "create", "web", "--description", "web tier"])
            .await,
        "deployment web created (proposed)\n"
    );
    let listed = cli.json(&["deployments", "list"]).await;
    assert_eq!(names(&listed), ["system", "web"]);
    let table = cli.ok(&["deployments", "list"]).await;
    assert!(table.contains("web     proposed  system"), "{table}");
    let shown = cli.ok(&["deployments", "show", "web"]).await;
    assert!(shown.contains("\nstate:       proposed\n"), "{shown}");

    let dir = tempfile::tempdir().unwrap();
    let doc = |base: &str, extra: &str| {
        format!(
            r#"{{"base": {base}, "roles": {{"test-server": {{}}}},
                "bindings": [{{"node": "n1.example.com", "role": "test-server"}},
                             {{"node": "n2.example.com", "role": "test-client"}}{extra}]}}"#
        )
    };
    let first = dir.path().join("deploy.json");
    std::fs::write(&first, doc("null", "")).unwrap();
    let first = first.to_str().unwrap();

    // plan changes nothing
    let plan = cli.ok(&["deployments", "plan", "web", first]).await;
    assert!(
        plan.starts_with("create: n1.example.com/test-admin, n1.example.com/test-server"),
        "{plan}"
    );
    assert!(plan.contains("\nwave 1: "), "{plan}");
    assert_eq!(
        cli.json(&["deployments", "show", "web"]).await["snapshot"],
        Value::Null
    );

    let applied = cli.ok(&["deployments", "apply", "web", first]).await;
    assert!(
        applied.starts_with("deployment web: snapshot 1 committed\ncreate: "),
        "{applied}"
    );
    assert_eq!(
        cli.ok(&["converge", "web"]).await.lines().last(),
        Some("finished: active 4, todo 0, transition 0, blocked 0, error 0")
    );
    let noderoles = cli
        .json(&["node-roles", "list", "--deployment", "web"])
        .await;
    let mut bound: Vec<(String, String)> = noderoles
        .as_array()
        .unwrap()
        .iter()
        .map(|nr| {
            assert_eq!(nr["status"], "active", "{nr}");
            (
                nr["node"].as_str().unwrap().into(),
                nr["role"].as_str().unwrap().into(),
            )
        })
        .collect();
    bound.sort();
    assert_eq!(
        bound,
        [
            ("n1.example.com".into(), "test-admin".into()),
            ("n1.example.com".into(), "test-server".into()),
            ("n2.example.com".into(), "test-client".into()),
            ("n2.example.com".into(), "test-library".into()),
        ]
    );

    // the same document from the latest base: nothing re-runs; a stale base is refused
    let same = dir.path().join("same.json");
    std::fs::write(&same, doc("1", "")).unwrap();
    let out = cli
        .ok(&["deployments", "apply", same.to_str().unwrap(), "-d", "web"])
        .await;
    assert!(
        out.starts_with("deployment web: unchanged (same as snapshot 1); nothing re-runs\n"),
        "{out}"
    );
    let err = cli.fails(&["deployments", "apply", "web", first], 1).await;
    assert!(
        err.starts_with(&format!("error: {first} was not applied\n")),
        "{err}"
    );
    assert!(err.contains("(stale_base, HTTP 409)"), "{err}");
    assert!(err.contains("hint: nothing was changed"), "{err}");
    let broken = dir.path().join("broken.json");
    std::fs::write(&broken, "{\"base\": ").unwrap();
    let err = cli
        .fails(
            &[
                "deployments",
                "apply",
                broken.to_str().unwrap(),
                "-d",
                "web",
            ],
            1,
        )
        .await;
    assert!(err.contains("broken.json is not a JSON document"), "{err}");
    let err = cli
        .fails(&["deployments", "apply", first, "-d", "nope"], 1)
        .await;
    assert!(err.contains("HTTP 404"), "{err}");
    assert!(err.contains("`crowbar deployments list`"), "{err}");

    // node-roles: filters, show by node and role, bind with data, retry, delete
    let filtered = cli
        .json(&[
            "node-roles",
            "list",
            "--state",
            "active",
            "--node",
            "n2.example.com",
            "--role",
            "test-client",
        ])
        .await;
    assert_eq!(filtered.as_array().unwrap().len(), 1, "{filtered}");
    let table = cli
        .ok(&["node-roles", "list", "--role", "test-server"])
        .await;
    assert!(
        table.starts_with("ID  NODE            ROLE         DEPLOYMENT  STATUS  REASON\n"),
        "{table}"
    );
    let server = cli
        .json(&["node-roles", "show", "n1.example.com", "test-server"])
        .await;
    assert_eq!(server["role"], "test-server");
    let by_id = cli
        .json(&["node-roles", "show", &server["id"].to_string()])
        .await;
    assert_eq!(by_id["id"], server["id"]);
    let err = cli
        .fails(&["node-roles", "show", "n1.example.com/nope"], 1)
        .await;
    assert!(
        err.contains("HTTP 404") && err.contains("`crowbar node-roles list`"),
        "{err}"
    );

    let bound = cli
        .ok(&[
            "node-roles",
            "bind",
            "n2.example.com",
            "test-fails",
            "--deployment",
            "web",
            "--data",
            r#"{"note": "x"}"#,
        ])
        .await;
    assert!(
        bound.contains("n2.example.com  test-fails  web         proposed"),
        "{bound}"
    );
    let err = cli
        .fails(
            &[
                "node-roles",
                "bind",
                "n2.example.com",
                "test-fails",
                "--data",
                "[1]",
            ],
            2,
        )
        .await;
    assert!(err.contains("the data must be a JSON object"), "{err}");
    let committed = cli.ok(&["deployments", "commit", "web"]).await;
    assert_eq!(
        committed,
        "deployment web committed: snapshot 2, 1 noderoles changed\n"
    );
    let out = cli.run(&["converge", "--deployment", "web"]).await;
    assert_eq!(out.status.code(), Some(1), "{}{}", out.stdout, out.stderr);

    let retried = cli
        .json(&["node-roles", "retry", "n2.example.com/test-fails"])
        .await;
    assert_eq!(retried["role"], "test-fails");
    assert_ne!(retried["status"], "error", "{retried}");
    let out = cli.run(&["converge", "--deployment", "web"]).await;
    assert_eq!(out.status.code(), Some(1), "it fails again: {}", out.stdout);
    let err = cli.fails(&["node-roles", "retry", "999999"], 1).await;
    assert!(err.contains("HTTP 404"), "{err}");

    assert_eq!(
        cli.ok(&["deployments", "propose", "web"]).await,
        "deployment web is proposed; change it, then commit it\n"
    );
    assert_eq!(
        cli.json(&["deployments", "show", "web"]).await["state"],
        "proposed"
    );
    let deleted = cli
        .ok(&["node-roles", "delete", "n2.example.com", "test-fails"])
        .await;
    assert!(deleted.starts_with("deleted noderoles "), "{deleted}");
    cli.fails(&["node-roles", "show", "n2.example.com/test-fails"], 1)
        .await;
    cli.ok(&["deployments", "commit", "web"]).await;
    cli.ok(&["converge", "--deployment", "web"]).await;

    let recalled = cli.ok(&["deployments", "recall", "web", "1"]).await;
    assert!(
        recalled.starts_with("snapshot 1 is the proposal of web; commit it to apply\n"),
        "{recalled}"
    );
    let err = cli.fails(&["deployments", "recall", "web", "99"], 1).await;
    assert!(err.contains("HTTP 404"), "{err}");
    let committed = cli.json(&["deployments", "commit", "web"]).await;
    assert_eq!(committed["deployment"]["state"], "active", "{committed}");

    let status = cli.json(&["anneal", "web"]).await;
    assert_eq!(status["status"], "finished");
    assert_eq!(status["counts"]["active"], 4);
    assert_eq!(
        cli.ok(&["anneal"]).await,
        "finished: active 4, todo 0, transition 0, blocked 0, error 0\n"
    );
    let err = cli.fails(&["anneal", "nope"], 1).await;
    assert!(err.contains("HTTP 404"), "{err}");
    let err = cli.fails(&["anneal", "--deployment", "nope"], 1).await;
    assert!(err.contains("HTTP 404"), "{err}");

    cli.ok(&["deployments", "create", "scratch"]).await;
    assert_eq!(
        cli.ok(&["deployments", "delete", "scratch"]).await,
        "deployment scratch deleted\n"
    );
    assert_eq!(
        names(&cli.json(&["deployments", "list"]).await),
        ["system", "web"]
    );
}

/// Whether `err` refuses a deployment given both as the positional argument and with
/// `--deployment` (the first one given is named first).
pub(super) fn given_twice(err: &str) -> bool {
    let (positional, flag) = ("'[DEPLOYMENT]'", "'--deployment <DEPLOYMENT>'");
    let first = err.lines().next().unwrap_or_default();
    first == format!("error: the argument {positional} cannot be used with {flag}")
        || first == format!("error: the argument {flag} cannot be used with {positional}")
}

/// The deployment `apply` and `anneal` act on is a positional argument; the older
/// `--deployment` (`-d`) still works, and giving both is wrong usage that changes nothing.
#[tokio::test]
async fn the_deployment_is_positional_and_the_older_flag_still_works() {
    let cli = Cli::start().await;
    cli.alive_nodes(&["n1.example.com"]).await;
    cli.ok(&["deployments", "create", "web"]).await;
    cli.ok(&["deployments", "create", "db"]).await;
    let dir = tempfile::tempdir().unwrap();
    let doc = |name: &str, base: &str, role: &str| {
        let file = dir.path().join(name);
        std::fs::write(
            &file,
            format!(
                r#"{{"base": {base}, "bindings": [{{"node": "n1.example.com", "role": "{role}"}}]}}"#
            ),
        )
        .unwrap();
        file.to_str().unwrap().to_string()
    };
    let first = doc("first.json", "null", "test-server");
    let second = doc("second.json", "1", "test-library");
    let third = doc("third.json", "2", "test-server");

    // DEPLOYMENT FILE, then the older flag after the file and before it
    let out = cli.ok(&["deployments", "apply", "web", &first]).await;
    assert!(
        out.starts_with("deployment web: snapshot 1 committed\n"),
        "{out}"
    );
    let out = cli
        .ok(&["deployments", "apply", &second, "--deployment", "web"])
        .await;
    assert!(
        out.starts_with("deployment web: snapshot 2 committed\n"),
        "{out}"
    );
    let out = cli.ok(&["deployments", "apply", "-d", "web", &third]).await;
    assert!(
        out.starts_with("deployment web: snapshot 3 committed\n"),
        "{out}"
    );
    cli.ok(&["converge", "web"]).await;

    // both forms at once, or no deployment at all: wrong usage, nothing sent
    let before = (
        cli.json(&["deployments", "list"]).await,
        cli.json(&["node-roles", "list"]).await,
    );
    let fourth = doc("fourth.json", "3", "test-library");
    for args in [
        &[
            "deployments",
            "apply",
            "web",
            &fourth,
            "--deployment",
            "web",
        ][..],
        &["deployments", "apply", "db", &fourth, "-d", "web"],
        &["deployments", "apply", "--deployment", "db", "web", &fourth],
    ] {
        let err = cli.fails(args, 2).await;
        assert!(given_twice(&err), "{args:?}: {err}");
        assert!(
            err.contains(
                "Usage: crowbar deployments apply [OPTIONS] DEPLOYMENT FILE\n       \
                 crowbar deployments apply [OPTIONS] --deployment DEPLOYMENT FILE\n"
            ),
            "{err}"
        );
    }
    let err = cli.fails(&["deployments", "apply", &fourth], 2).await;
    assert!(
        err.starts_with(
            "error: the following required arguments were not provided:\n  <DEPLOYMENT>"
        ),
        "{err}"
    );
    assert!(
        err.contains("Usage: crowbar deployments apply [OPTIONS] DEPLOYMENT FILE"),
        "{err}"
    );
    let err = cli
        .fails(&["deployments", "apply", "web", &fourth, "extra"], 2)
        .await;
    assert!(err.contains("unexpected argument 'extra'"), "{err}");
    let after = (
        cli.json(&["deployments", "list"]).await,
        cli.json(&["node-roles", "list"]).await,
    );
    assert_eq!(before, after, "nothing changed");
    assert_eq!(
        cli.json(&["deployments", "show", "web"]).await["snapshot"],
        3
    );

    // anneal: the positional form and the flag read the same; both at once is refused
    let positional = cli.json(&["anneal", "web"]).await;
    assert_eq!(positional["status"], "finished", "{positional}");
    assert_eq!(
        cli.json(&["anneal", "--deployment", "web"]).await,
        positional
    );
    assert_eq!(
        cli.ok(&["anneal", "db"]).await,
        "finished: active 0, todo 0, transition 0, blocked 0, error 0\n"
    );
    let err = cli.fails(&["anneal", "web", "--deployment", "db"], 2).await;
    assert!(given_twice(&err), "{err}");
    assert!(
        err.contains("Usage: crowbar anneal [OPTIONS] [DEPLOYMENT]"),
        "{err}"
    );
}

#[tokio::test]
async fn tokens_with_roles_and_expiries_and_the_audit_trail() {
    let cli = Cli::start().await;
    let out = cli
        .ok(&[
            "tokens",
            "create",
            "watcher",
            "--role",
            "viewer",
            "--expires",
            "30d",
        ])
        .await;
    assert!(
        out.starts_with("token watcher (viewer, expires 20"),
        "{out}"
    );
    let token = out.lines().nth(1).unwrap().trim().to_string();
    assert_eq!(token.len(), 64, "{out}");
    let listed = cli.json(&["tokens", "list"]).await;
    let watcher = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "watcher")
        .unwrap();
    assert_eq!(watcher["role"], "viewer");
    assert!(watcher["expires_at"].is_string());
    assert!(watcher.get("token").is_none());

    // the viewer token reads, and is refused a change with a hint of what to do
    let url = cli.daemon.url();
    let env = [
        ("CROWBAR_URL", url.as_str()),
        ("CROWBAR_TOKEN", token.as_str()),
    ];
    let read = crate::support::daemon::run_crowbar(&["nodes", "list"], &env, super::T).await;
    assert!(read.status.success(), "{}", read.stderr);
    let write =
        crate::support::daemon::run_crowbar(&["deployments", "create", "web"], &env, super::T)
            .await;
    assert_eq!(write.status.code(), Some(1), "{}", write.stdout);
    assert!(
        write.stderr.contains("a viewer may not"),
        "{}",
        write.stderr
    );
    assert!(write.stderr.contains("operator role"), "{}", write.stderr);

    // a role that is not one is refused in words
    let bad = cli
        .fails(&["tokens", "create", "x", "--role", "root"], 1)
        .await;
    assert!(bad.contains("viewer"), "{bad}");

    // the audit trail: the token made, the refused change, filters
    let made = cli
        .json(&["audit", "--action", "token.create", "--since", "1h"])
        .await;
    assert_eq!(made[0]["object"], "watcher");
    assert_eq!(made[0]["actor"], "token:admin");
    assert_eq!(made[0]["summary"]["role"], "viewer");
    let refused = cli.json(&["audit", "--actor", "token:watcher"]).await;
    assert_eq!(refused[0]["action"], "request.refused");
    let table = cli.ok(&["audit", "--kind", "token"]).await;
    assert!(
        table.lines().next().unwrap().starts_with("ID  AT"),
        "{table}"
    );
    assert!(table.contains("token.create"), "{table}");
    let future = cli
        .json(&["audit", "--since", "2999-01-01T00:00:00Z"])
        .await;
    assert_eq!(future, serde_json::json!([]));

    assert_eq!(
        cli.ok(&["tokens", "revoke", "watcher"]).await,
        "token watcher revoked\n"
    );
}
