use crate::domain::barclamp::*;

fn sourced(source: &str, yaml: &str) -> SourcedDoc {
    SourcedDoc {
        source: source.to_owned(),
        doc: parse(source, yaml).unwrap_or_else(|p| panic!("{p}")),
    }
}

/// What the database would hold after applying `plan` on top of `catalog`.
fn store(catalog: &mut StoredContent, plan: &ImportPlan) {
    for item in &plan.removed.jigs {
        catalog.jigs.remove(&item.name);
    }
    for item in &plan.removed.roles {
        catalog.roles.remove(&item.name);
    }
    for item in &plan.removed.attribs {
        catalog.attribs.remove(&item.name);
    }
    for planned in &plan.barclamps {
        let b = &planned.barclamp;
        catalog.barclamps.insert(
            b.name.clone(),
            StoredBarclamp {
                parent: b.parent.clone(),
                content_hash: b.content_hash.clone(),
            },
        );
        for jig in &b.jigs {
            catalog.jigs.insert(
                jig.name.clone(),
                StoredJig {
                    barclamp: b.name.clone(),
                    client_role: jig.client_role.clone(),
                },
            );
        }
        for role in &b.roles {
            catalog.roles.insert(
                role.name.clone(),
                StoredRole {
                    barclamp: b.name.clone(),
                    jig: role.jig.clone(),
                    requires: role.requires.clone(),
                    provides: role.provides.clone(),
                    wants_attribs: role.wants_attribs.clone(),
                },
            );
            for attrib in &role.attribs {
                catalog.attribs.insert(
                    attrib.name.clone(),
                    StoredAttrib {
                        barclamp: b.name.clone(),
                        role: Some(role.name.clone()),
                    },
                );
            }
        }
    }
}

fn imported(docs: &[SourcedDoc]) -> StoredContent {
    let mut catalog = StoredContent::default();
    let plan = plan(docs, &catalog).unwrap_or_else(|p| panic!("{p}"));
    store(&mut catalog, &plan);
    catalog
}

const BASE: &str = r#"
barclamp: {name: base}
jigs: [{name: noop}]
roles:
  - {name: base-a, jig: noop}
  - {name: base-b, jig: noop, requires: [base-a], provides: [web]}
  - {name: base-c, jig: noop, requires: [web]}
"#;

fn base() -> StoredContent {
    imported(&[sourced("base.yml", BASE)])
}

fn problems_of(result: Result<ImportPlan, Problems>) -> Vec<Problem> {
    match result {
        Ok(_) => panic!("expected the import to be refused"),
        Err(p) => p.into_vec(),
    }
}

fn reasons(problems: &[Problem]) -> String {
    problems.iter().map(|p| format!("{p}\n")).collect()
}

#[test]
fn a_valid_barclamp_plans_as_created_then_unchanged() {
    let mut catalog = StoredContent::default();
    let docs = [sourced("base.yml", BASE)];
    let first = plan(&docs, &catalog).unwrap();
    assert_eq!(first.barclamps.len(), 1);
    assert_eq!(first.barclamps[0].change, Change::Created);
    let b = &first.barclamps[0].barclamp;
    assert_eq!(b.roles.len(), 3);
    assert_eq!(b.roles[1].provides, ["web"]);
    store(&mut catalog, &first);

    let again = plan(&docs, &catalog).unwrap();
    assert_eq!(again.barclamps[0].change, Change::Unchanged);
    assert!(again.removed.roles.is_empty());
}

#[test]
fn formatting_and_flag_order_do_not_change_the_hash() {
    let a = "barclamp: {name: x}\njigs: [{name: j}]\nroles:\n  - {name: r, jig: j, flags: [implicit, cluster], template: {b: 1, a: 2}}\n";
    let b = "# a comment\nroles:\n  - jig: j\n    name: r\n    template: {a: 2, b: 1}\n    flags: [cluster, implicit, cluster]\njigs:\n  - name: j\nbarclamp:\n  name: x\n  description: ''\n";
    let c = "barclamp: {name: x}\njigs: [{name: j}]\nroles:\n  - {name: r, jig: j, flags: [implicit], template: {b: 1, a: 2}}\n";
    let hash = |text: &str| {
        plan(&[sourced("x.yml", text)], &StoredContent::default())
            .unwrap()
            .barclamps[0]
            .barclamp
            .content_hash
            .clone()
    };
    assert_eq!(hash(a), hash(b));
    assert_ne!(hash(a), hash(c));
}

#[test]
fn the_normalized_document_reimports_to_the_same_hash() {
    let p = plan(&[sourced("base.yml", BASE)], &StoredContent::default()).unwrap();
    let b = &p.barclamps[0].barclamp;
    let json = serde_json::to_string(&b.document).unwrap();
    let again = plan(&[sourced("api", &json)], &StoredContent::default()).unwrap();
    assert_eq!(again.barclamps[0].barclamp.content_hash, b.content_hash);
}

#[test]
fn a_require_cycle_is_named_in_full() {
    let text = r#"
barclamp: {name: x}
jigs: [{name: j}]
roles:
  - {name: c, jig: j, requires: [a]}
  - {name: a, jig: j, requires: [b]}
  - {name: b, jig: j, requires: [c]}
  - {name: d, jig: j, requires: [a]}
"#;
    let problems = problems_of(plan(&[sourced("x.yml", text)], &StoredContent::default()));
    assert_eq!(problems.len(), 1, "{}", reasons(&problems));
    assert_eq!(problems[0].role(), Some("a"));
    assert_eq!(
        problems[0].to_string(),
        "x.yml: role a: require cycle: a -> b -> c -> a"
    );
}

#[test]
fn a_role_requiring_itself_is_a_cycle() {
    let text =
        "barclamp: {name: x}\njigs: [{name: j}]\nroles: [{name: a, jig: j, requires: [a]}]\n";
    let problems = problems_of(plan(&[sourced("x.yml", text)], &StoredContent::default()));
    assert_eq!(reasons(&problems), "x.yml: role a: require cycle: a -> a\n");
}

#[test]
fn cycles_through_stored_roles_and_providers_are_found() {
    // base-c requires `web`; a new provider of `web` that requires base-c closes a loop
    // through stored roles only known from the catalog.
    let text = r#"
barclamp: {name: ext, parent: base}
roles:
  - {name: ext-web, jig: noop, provides: [web], requires: [base-c]}
"#;
    let problems = problems_of(plan(&[sourced("ext.yml", text)], &base()));
    assert_eq!(
        reasons(&problems),
        "ext.yml: role ext-web: require cycle: ext-web -> base-c -> ext-web\n"
    );
}

#[test]
fn provides_satisfy_requires() {
    let text = r#"
barclamp: {name: ext, parent: base}
roles:
  - {name: ext-local, jig: noop, provides: [db]}
  - {name: ext-app, jig: noop, requires: [db, web]}
"#;
    let p = plan(&[sourced("ext.yml", text)], &base()).unwrap();
    assert_eq!(p.barclamps[0].change, Change::Created);
}

#[test]
fn every_problem_is_collected_with_its_role() {
    let text = r#"
barclamp: {name: x}
jigs: [{name: j}]
roles:
  - {name: r1, jig: nojig}
  - {name: r2, jig: j, requires: [ghost]}
  - {name: r3, jig: j, flags: [implicit, sparkly]}
  - {name: R4, jig: j}
  - {name: r5, jig: j, template: [1, 2]}
  - {name: r6, jig: j, timeout: 0}
  - {name: r7, jig: j, attribs: [{name: r7-a, map: "a//b"}]}
  - {name: r1, jig: j}
  - {name: r8, jig: j, wants-attribs: [nothing]}
"#;
    let problems = problems_of(plan(&[sourced("x.yml", text)], &StoredContent::default()));
    let all = reasons(&problems);
    let expect = [
        ("r1", "unknown jig nojig"),
        ("r2", "requires unknown role ghost"),
        ("r3", "unknown flag `sparkly`"),
        ("R4", "role name `R4` is not a valid name"),
        ("r5", "template must be a mapping, not a list"),
        ("r6", "timeout must be a positive number of seconds, not 0"),
        ("r7", "map `a//b` is not a slash-separated path"),
        ("r1", "declared twice in this document"),
        ("r8", "wants unknown attrib nothing"),
    ];
    for (role, reason) in expect {
        assert!(
            problems.iter().any(|p| p.source == "x.yml"
                && p.role() == Some(role)
                && p.reason.contains(reason)),
            "missing `{role}: {reason}` in\n{all}"
        );
    }
    assert_eq!(problems.len(), expect.len(), "{all}");
}

#[test]
fn a_role_of_another_barclamp_is_refused() {
    let text = "barclamp: {name: other}\nroles: [{name: base-a, jig: noop}]\n";
    let problems = problems_of(plan(&[sourced("other.yml", text)], &base()));
    assert_eq!(
        reasons(&problems),
        "other.yml: role base-a: role base-a already belongs to barclamp base\n"
    );
}

#[test]
fn a_role_may_move_between_barclamps_imported_together() {
    let base2 = "barclamp: {name: base}\njigs: [{name: noop}]\nroles:\n  - {name: base-b, jig: noop, provides: [web]}\n  - {name: base-c, jig: noop, requires: [web]}\n";
    let other = "barclamp: {name: other}\nroles: [{name: base-a, jig: noop}]\n";
    let p = plan(
        &[sourced("other.yml", other), sourced("base.yml", base2)],
        &base(),
    )
    .unwrap();
    assert!(p.removed.roles.is_empty(), "{:?}", p.removed.roles);
    let names: Vec<&str> = p
        .barclamps
        .iter()
        .map(|b| b.barclamp.name.as_str())
        .collect();
    assert_eq!(names, ["base", "other"], "jig owners come first");
}

#[test]
fn documents_of_one_batch_resolve_each_other_in_any_order() {
    let child = "barclamp: {name: child, parent: parent}\nroles: [{name: kid, jig: noop, requires: [mom]}]\n";
    let parent =
        "barclamp: {name: parent}\njigs: [{name: noop}]\nroles: [{name: mom, jig: noop}]\n";
    let p = plan(
        &[sourced("child.yml", child), sourced("parent.yml", parent)],
        &StoredContent::default(),
    )
    .unwrap();
    let names: Vec<&str> = p
        .barclamps
        .iter()
        .map(|b| b.barclamp.name.as_str())
        .collect();
    assert_eq!(names, ["parent", "child"]);
}

#[test]
fn the_same_barclamp_twice_in_a_batch_is_refused() {
    let problems = problems_of(plan(
        &[sourced("a/base.yml", BASE), sourced("b/base.yml", BASE)],
        &StoredContent::default(),
    ));
    assert!(
        reasons(&problems)
            .contains("b/base.yml: barclamp base: barclamp base is also defined by a/base.yml"),
        "{}",
        reasons(&problems)
    );
}

#[test]
fn parents_must_exist_and_not_loop() {
    let orphan = "barclamp: {name: orphan, parent: nobody}\n";
    let problems = problems_of(plan(
        &[sourced("orphan.yml", orphan)],
        &StoredContent::default(),
    ));
    assert!(reasons(&problems).contains("parent barclamp nobody is unknown"));

    let a = "barclamp: {name: a, parent: b}\n";
    let b = "barclamp: {name: b, parent: a}\n";
    let problems = problems_of(plan(
        &[sourced("a.yml", a), sourced("b.yml", b)],
        &StoredContent::default(),
    ));
    assert_eq!(
        reasons(&problems),
        "a.yml: barclamp a: parent cycle: a -> b -> a\n"
    );
}

#[test]
fn removing_a_role_others_require_is_refused() {
    let mut catalog = base();
    let ext = "barclamp: {name: ext, parent: base}\nroles: [{name: ext-x, jig: noop, requires: [base-a]}]\n";
    let p = plan(&[sourced("ext.yml", ext)], &catalog).unwrap();
    store(&mut catalog, &p);

    let without_a = "barclamp: {name: base}\njigs: [{name: noop}]\nroles:\n  - {name: base-b, jig: noop, provides: [web]}\n  - {name: base-c, jig: noop, requires: [web]}\n";
    let problems = problems_of(plan(&[sourced("base.yml", without_a)], &catalog));
    assert_eq!(
        reasons(&problems),
        "base.yml: role base-a: cannot remove role base-a: role ext-x of barclamp ext requires it\n"
    );

    let without_noop = "barclamp: {name: base}\njigs: [{name: other}]\nroles: [{name: base-a, jig: other}, {name: base-b, jig: other, provides: [web]}, {name: base-c, jig: other, requires: [web]}]\n";
    let problems = problems_of(plan(&[sourced("base.yml", without_noop)], &catalog));
    assert_eq!(
        reasons(&problems),
        "base.yml: jig noop: cannot remove jig noop: role ext-x of barclamp ext uses it\n"
    );
}

#[test]
fn removed_entries_are_planned_for_deletion() {
    let smaller =
        "barclamp: {name: base}\njigs: [{name: noop}]\nroles: [{name: base-a, jig: noop}]\n";
    let p = plan(&[sourced("base.yml", smaller)], &base()).unwrap();
    assert_eq!(p.barclamps[0].change, Change::Updated);
    let removed: Vec<&str> = p.removed.roles.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(removed, ["base-b", "base-c"]);
    assert_eq!(p.removed.roles[0].source, "base.yml");
    assert_eq!(p.removed_from("base"), (0, 2, 0));
}

#[test]
fn client_roles_are_checked_like_requires() {
    let unknown = "barclamp: {name: x}\njigs: [{name: j, client_role: nobody}]\n";
    let problems = problems_of(plan(
        &[sourced("x.yml", unknown)],
        &StoredContent::default(),
    ));
    assert_eq!(
        reasons(&problems),
        "x.yml: jig j: client_role nobody is unknown (no role has this name or provides it)\n"
    );

    // The client role itself runs on the jig without requiring itself, but a cycle through
    // it is still a cycle.
    let ok = "barclamp: {name: x}\njigs: [{name: j, client_role: c}, {name: noop}]\nroles: [{name: c, jig: j}, {name: d, jig: j}]\n";
    plan(&[sourced("x.yml", ok)], &StoredContent::default()).unwrap();
    let looped = "barclamp: {name: x}\njigs: [{name: j, client_role: c}, {name: noop}]\nroles: [{name: c, jig: noop, requires: [d]}, {name: d, jig: j}]\n";
    let problems = problems_of(plan(&[sourced("x.yml", looped)], &StoredContent::default()));
    assert_eq!(
        reasons(&problems),
        "x.yml: role c: require cycle: c -> d -> c\n"
    );
}

#[test]
fn wanted_attribs_make_their_owners_parents() {
    let text = r#"
barclamp: {name: x}
jigs: [{name: j}]
roles:
  - {name: a, jig: j, wants-attribs: [b-port], attribs: [{name: a-port, map: a/port}]}
  - {name: b, jig: j, wants-attribs: [a-port], attribs: [{name: b-port, map: b/port}]}
"#;
    let problems = problems_of(plan(&[sourced("x.yml", text)], &StoredContent::default()));
    assert_eq!(
        reasons(&problems),
        "x.yml: role a: require cycle: a -> b -> a\n"
    );
}

#[test]
fn file_names_must_match_barclamp_names() {
    let doc = parse("x.yml", "barclamp: {name: y}\n").unwrap();
    let p = check_file_name("dir/x.yml", "x", &doc).unwrap();
    assert_eq!(
        p.to_string(),
        "dir/x.yml: barclamp y: the file must be named after its barclamp (y.yml, not x.yml)"
    );
    assert!(check_file_name("dir/y.yml", "y", &doc).is_none());
}
