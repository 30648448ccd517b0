//! `docs/scripting.md` runs as written: its `sh` blocks, in order, against a real daemon.

use std::time::Duration;

use pulldown_cmark::{CodeBlockKind, Event, Parser, Tag, TagEnd};

use super::{Cli, admin_token};
use crate::support::daemon::run_script;

/// The text of every fenced code block tagged `sh`, in order.
fn sh_blocks(markdown: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for event in Parser::new(markdown) {
        match event {
            Event::Start(Tag::CodeBlock(CodeBlockKind::Fenced(info))) if &*info == "sh" => {
                current = Some(String::new());
            }
            Event::Text(text) => {
                if let Some(block) = current.as_mut() {
                    block.push_str(&text);
                }
            }
            Event::End(TagEnd::CodeBlock) => blocks.extend(current.take()),
            _ => {}
        }
    }
    blocks
}

#[test]
fn only_sh_blocks_are_taken() {
    let blocks = sh_blocks("a\n```sh\necho 1\n```\n```console\n$ no\n```\n```sh\necho 2\n```\n");
    assert_eq!(blocks, ["echo 1\n", "echo 2\n"]);
}

/// The examples show the deployment of `apply`, `converge` and `anneal` as their positional
/// argument, not the older `--deployment` flag.
#[test]
fn examples_name_the_deployment_positionally() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut pages = vec![root.join("README.md")];
    for entry in std::fs::read_dir(root.join("docs")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "md") {
            pages.push(path);
        }
    }
    for page in pages {
        let text = std::fs::read_to_string(&page).unwrap();
        for (i, line) in text.lines().enumerate() {
            let verb = [
                "crowbar deployments apply",
                "crowbar converge",
                "crowbar anneal",
            ]
            .into_iter()
            .find(|verb| line.contains(verb));
            if let Some(verb) = verb {
                let rest = &line[line.find(verb).unwrap()..];
                assert!(
                    !rest.contains("--deployment") && !rest.contains(" -d "),
                    "{}:{}: `{verb}` takes the deployment positionally: {line}",
                    page.display(),
                    i + 1
                );
            }
        }
    }
}

#[tokio::test]
async fn the_scripting_guide_runs_as_written() {
    let guide =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/scripting.md")).unwrap();
    let blocks = sh_blocks(&guide);
    assert!(blocks.len() >= 5, "the guide has its steps: {blocks:?}");
    let cli = Cli::start().await;
    let dir = tempfile::tempdir().unwrap();
    let url = cli.daemon.url();
    let token = admin_token(&cli.daemon);
    let out = run_script(
        &blocks.join("\n"),
        dir.path(),
        &[("CROWBAR_URL", &url), ("CROWBAR_TOKEN", &token)],
        Duration::from_secs(300),
    )
    .await;
    assert!(
        out.status.success(),
        "the guide failed\n--- stdout ---\n{}\n--- stderr ---\n{}",
        out.stdout,
        out.stderr
    );
    for line in [
        "created n1.example.com\n",
        "deployment web: snapshot 1 committed\n",
        "n1.example.com test-admin active\nn1.example.com test-server active\n\
         n2.example.com test-client active\nn2.example.com test-library active\n",
        "n2.example.com/test-fails: the last run failed: test jig: test-fails on n2.example.com",
        "deployment web: snapshot 3 committed\n",
    ] {
        assert!(out.stdout.contains(line), "{line:?} in\n{}", out.stdout);
    }
    assert!(
        out.stdout
            .ends_with("finished: active 4, todo 0, transition 0, blocked 0, error 0\n"),
        "{}",
        out.stdout
    );
    // what the guide left behind
    let noderoles = cli
        .json(&["node-roles", "list", "--deployment", "web"])
        .await;
    assert_eq!(noderoles.as_array().unwrap().len(), 4, "{noderoles}");
    assert_eq!(
        cli.json(&["deployments", "show", "web"]).await["snapshot"],
        3
    );
}
