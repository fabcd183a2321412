//! Property tests: the Compose conformance fixtures (`tests/fixtures/conformance/*/`), mutated — scalars
//! replaced by huge, negative, odd or empty values, types swapped, keys renamed, nodes nested deep;
//! then, in the text, anchors and aliases, duplicated lines, inserted snippets and truncation — always
//! render to `Ok` or `Err`, never a panic, and never take unbounded time.
//!
//! A few thousand cases run by default (a debug build stays well under a minute);
//! `PROPTEST_CASES=50000 cargo test --lib render::proptests` runs more.

use super::memtree::MemTree;
use super::*;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_yaml::{Mapping, Value};
use std::sync::OnceLock;

/// Cases when `PROPTEST_CASES` is not set.
const DEFAULT_CASES: u32 = 3000;

/// One conformance fixture: its files, and which of them is the compose file.
struct Fixture {
    name: String,
    tree: MemTree,
    compose: String,
    value: Value,
}

/// The placeholders the conformance harness fills in, with fixed values.
fn placeholders() -> Vec<(String, String)> {
    let mut subst = vec![
        ("__EXT__".to_string(), "ext".to_string()),
        ("__PROJECT__".to_string(), "proj".to_string()),
        ("__NET6__".to_string(), "fd42:c0f:1:5".to_string()),
        ("__BLOCKDEV__".to_string(), "/dev/sda".to_string()),
    ];
    for i in 0..10 {
        subst.push((format!("__P{i}__"), (18_000 + i).to_string()));
    }
    for n in 1..=3 {
        subst.push((format!("__NET{n}__"), format!("10.{}.5", 210 + n)));
    }
    subst
}

fn fixtures() -> &'static [Fixture] {
    static FIXTURES: OnceLock<Vec<Fixture>> = OnceLock::new();
    FIXTURES.get_or_init(|| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/conformance");
        let mut dirs: Vec<PathBuf> = std::fs::read_dir(&root)
            .expect("the conformance fixtures")
            .map(|e| e.expect("a directory entry").path())
            .filter(|p| p.is_dir())
            .collect();
        dirs.sort();
        let subst = placeholders();
        let mut out = Vec::new();
        for dir in dirs {
            let raw = MemTree::from_dir(&dir).expect("a fixture's files");
            let mut tree = MemTree::new();
            for (path, bytes) in raw.files() {
                let mut text = String::from_utf8(bytes.to_vec()).expect("UTF-8 fixtures");
                for (k, v) in &subst {
                    text = text.replace(k.as_str(), v);
                }
                tree.set(&path.display().to_string(), text);
            }
            let Some(compose) = COMPOSE_FILES.iter().find(|f| tree.get(f).is_some()) else {
                continue;
            };
            let text = String::from_utf8_lossy(tree.get(compose).unwrap_or_default()).to_string();
            let value: Value = serde_yaml::from_str(&text).expect("fixtures are YAML");
            out.push(Fixture {
                name: dir
                    .file_name()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .to_string(),
                tree,
                compose: compose.to_string(),
                value,
            });
        }
        assert!(out.len() >= 20, "only {} fixtures found", out.len());
        out
    })
}

/// The agent's environment for a render: what the fixtures interpolate, and a few odd values.
fn env() -> BTreeMap<String, String> {
    [
        ("CONF_FROM_SHELL", "from-shell".to_string()),
        ("CONF_OVERRIDDEN", "from-shell".to_string()),
        ("CONF_SECRET_ENV", "secret-from-env".to_string()),
        ("CONF_CONFIG_ENV", "config-from-env".to_string()),
        ("CONF_REQUIRED", "set".to_string()),
        ("HOME", "/root".to_string()),
        ("HUGE", "9".repeat(64 * 1024)),
        ("NUM", "99999999999999999999".to_string()),
        ("NEG", "-1".to_string()),
        ("EMPTY", String::new()),
        ("NESTED", "${NESTED}".to_string()),
        ("UNI", "\u{202e}é🦀\u{0}".to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

fn opts() -> RenderOptions {
    RenderOptions {
        path: PathBuf::from("."),
        checkout_dir: PathBuf::from("/srv/berth/repo"),
        root_stack_name: "fixture".into(),
        env: env(),
        sops: Default::default(),
        secret_vars: Default::default(),
    }
}

/// Values that break readers: past every integer type, negative, not numbers at all, odd text.
const NASTY_TEXT: &[&str] = &[
    "1e400",
    "-1",
    "-0",
    "0",
    "99999999999999999999",
    "-99999999999999999999",
    "0x7fffffff",
    "0o77777",
    "077777",
    "9223372036854775807",
    "9223372036854775808",
    "-9223372036854775809",
    "18446744073709551616",
    "4294967296",
    "2147483648",
    "65535",
    "65536",
    "NaN",
    ".inf",
    "-.inf",
    "1.5",
    "1e-400",
    "99999999999999999999g",
    "8192p",
    "1.5.5m",
    "2562048h",
    "9223372036s",
    "1ns",
    "-1s",
    "1-65535",
    "0-65535:0-65535",
    "65535-1",
    "1-65535:1-2",
    "[::1]:1-65535:1-65535/udp",
    "[::1",
    "127.0.0.1:99999:80/tcp",
    "on-failure:99999999999",
    "on-failure:-1",
    "on-failure:",
    "service:",
    "service:nope",
    "container:",
    "${HUGE}${HUGE}${HUGE}",
    "${NESTED}",
    "${X:-${Y:-${Z:-${W}}}}",
    "${",
    "${}",
    "${X:?boom}",
    "${1}",
    "$",
    "$$",
    "'",
    "\"",
    "\\",
    "sh -c 'unterminated",
    "",
    " ",
    "\t",
    "é",
    "\u{202e}rtl",
    "🦀",
    "İ",
    "\u{0}",
    "\u{feff}",
    "a\nb",
    "- x",
    "x: y",
    "*a",
    "~",
    "~/x",
    "../../../etc",
    "/",
    ".",
    "./",
    "/dev/null:/dev/null:rwmx",
    "a:b:c:d:e",
    "data:/data:nocopy,ro,z,Z,rshared",
    "CMD-SHELL",
    "NONE",
    "io.berth.agent=x",
];

/// A replacement for one node of the document.
#[derive(Debug, Clone)]
enum Replacement {
    Text(String),
    Int(i64),
    UInt(u64),
    Float(f64),
    Bool(bool),
    Null,
    /// The node inside a one-item list (a list where a scalar was).
    InList,
    /// The node as the key and value of a one-entry mapping.
    InMap,
    /// A collection's first item, or its first key (the other way round).
    Unwrap,
    EmptyList,
    EmptyMap,
    /// Nested this many lists deep.
    Deep(usize),
    /// `${A:-${A:-…}}` nested this many times (far past any stack if recursed).
    NestedVars(usize),
    /// A long string: a variable repeated this many times, or a line of `- ` items.
    Repeated(&'static str, usize),
}

/// One change to the document (as a value), then to its text.
#[derive(Debug, Clone)]
enum Mutation {
    Replace(usize, Replacement),
    /// Replace a scalar (where the number and text readers look).
    ReplaceLeaf(usize, Replacement),
    /// Rename a mapping key to another (known) key.
    RenameKey(usize, &'static str),
    /// Replace a line's value with an alias of an anchor added at the top.
    Alias(usize, &'static str),
    DuplicateLine(usize),
    Insert(usize, &'static str),
    Truncate(usize),
}

const KEYS: &[&str] = &[
    "services",
    "networks",
    "volumes",
    "secrets",
    "configs",
    "include",
    "extends",
    "ports",
    "expose",
    "deploy",
    "healthcheck",
    "environment",
    "env_file",
    "command",
    "entrypoint",
    "ulimits",
    "scale",
    "cpus",
    "shm_size",
    "tmpfs",
    "network_mode",
    "depends_on",
    "<<",
    "x-y",
    "",
    "name",
];

/// Anchored values to alias into the document.
const ANCHORS: &[&str] = &[
    "[1, 2, 3]",
    "{a: b}",
    "\"99999999999999999999\"",
    "[\"70000:80\", \"1-65535\"]",
    "{soft: -2, hard: 99999999999999999999}",
    "{<<: {a: 1}}",
    "!reset []",
    "!override {x: 1}",
    "!!binary aGk=",
];

/// Text inserted at the start of a line.
const SNIPPETS: &[&str] = &[
    "x-laughs: &l0 [a, a, a, a, a, a, a, a, a, a]\nx-l1: &l1 [*l0, *l0, *l0, *l0, *l0, *l0, *l0, *l0, *l0, *l0]\nx-l2: &l2 [*l1, *l1, *l1, *l1, *l1, *l1, *l1, *l1, *l1, *l1]\nx-l3: &l3 [*l2, *l2, *l2, *l2, *l2, *l2, *l2, *l2, *l2, *l2]\nx-l4: [*l3, *l3, *l3, *l3, *l3, *l3, *l3, *l3, *l3, *l3]\n",
    "<<: *nope\n",
    "? [a, b]\n: c\n",
    "---\n",
    "...\n",
    "%YAML 1.2\n---\n",
    "\t\n",
    "\u{feff}",
    "- - - - - - - - - - - - - - - - - - - - - - - - - - - - x\n",
    "x-self: &s [*s]\n",
    "include: [compose.yaml]\n",
    "include: [../../../../etc/passwd]\n",
    "x-deep: [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]\n",
    "  extra: \"${HUGE}\"\n",
    "services: {}\n",
    "name: \"\"\n",
];

fn replacement(texts: Vec<&'static str>) -> impl Strategy<Value = Replacement> {
    prop_oneof![
        6 => prop::sample::select(texts).prop_map(|s| Replacement::Text(s.to_string())),
        1 => any::<i64>().prop_map(Replacement::Int),
        1 => prop::sample::select(&[i64::MIN, i64::MAX, -1, 0, 65536, 4_294_967_296][..])
            .prop_map(Replacement::Int),
        1 => prop::sample::select(&[u64::MAX, 9_223_372_036_854_775_808][..])
            .prop_map(Replacement::UInt),
        1 => prop::sample::select(&[1e308, -1e308, f64::INFINITY, f64::NAN, 0.5, -0.0][..])
            .prop_map(Replacement::Float),
        1 => any::<bool>().prop_map(Replacement::Bool),
        1 => Just(Replacement::Null),
        1 => Just(Replacement::InList),
        1 => Just(Replacement::InMap),
        1 => Just(Replacement::Unwrap),
        1 => Just(Replacement::EmptyList),
        1 => Just(Replacement::EmptyMap),
        1 => (1usize..200).prop_map(Replacement::Deep),
        1 => (1usize..100_000).prop_map(Replacement::NestedVars),
        1 => (prop::sample::select(&["$HUGE", "${HUGE}", "- ", "[", "${", "\\"][..]), 1usize..50_000)
            .prop_map(|(s, n)| Replacement::Repeated(s, n)),
    ]
}

fn value_mutation(texts: Vec<&'static str>) -> impl Strategy<Value = Mutation> {
    prop_oneof![
        4 => (any::<usize>(), replacement(texts.clone())).prop_map(|(i, r)| Mutation::Replace(i, r)),
        8 => (any::<usize>(), replacement(texts)).prop_map(|(i, r)| Mutation::ReplaceLeaf(i, r)),
        2 => (any::<usize>(), prop::sample::select(KEYS)).prop_map(|(i, k)| Mutation::RenameKey(i, k)),
    ]
}

fn text_mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        3 => (any::<usize>(), prop::sample::select(ANCHORS)).prop_map(|(i, a)| Mutation::Alias(i, a)),
        3 => any::<usize>().prop_map(Mutation::DuplicateLine),
        3 => (any::<usize>(), prop::sample::select(SNIPPETS)).prop_map(|(i, s)| Mutation::Insert(i, s)),
        2 => any::<usize>().prop_map(Mutation::Truncate),
    ]
}

/// Every node of `v`, in document order, as the path of child positions that reaches it.
fn node_paths(v: &Value, path: &mut Vec<usize>, out: &mut Vec<Vec<usize>>) {
    out.push(path.clone());
    let children: Vec<&Value> = match v {
        Value::Sequence(s) => s.iter().collect(),
        Value::Mapping(m) => m.values().collect(),
        Value::Tagged(t) => vec![&t.value],
        _ => Vec::new(),
    };
    for (i, c) in children.into_iter().enumerate() {
        path.push(i);
        node_paths(c, path, out);
        path.pop();
    }
}

fn node_mut<'v>(v: &'v mut Value, path: &[usize]) -> Option<&'v mut Value> {
    let Some((first, rest)) = path.split_first() else {
        return Some(v);
    };
    let child = match v {
        Value::Sequence(s) => s.get_mut(*first),
        Value::Mapping(m) => m.values_mut().nth(*first),
        Value::Tagged(t) => Some(&mut t.value),
        _ => None,
    }?;
    node_mut(child, rest)
}

fn replace(node: &mut Value, r: &Replacement) {
    let old = std::mem::take(node);
    *node = match r {
        Replacement::Text(s) => Value::String(s.clone()),
        Replacement::Int(n) => Value::Number((*n).into()),
        Replacement::UInt(n) => Value::Number((*n).into()),
        Replacement::Float(f) => Value::Number((*f).into()),
        Replacement::Bool(b) => Value::Bool(*b),
        Replacement::Null => Value::Null,
        Replacement::InList => Value::Sequence(vec![old]),
        Replacement::InMap => {
            let mut m = Mapping::new();
            m.insert(old.clone(), old);
            Value::Mapping(m)
        }
        Replacement::Unwrap => match old {
            Value::Sequence(s) => s.into_iter().next().unwrap_or(Value::Null),
            Value::Mapping(m) => m.into_iter().next().map(|(k, _)| k).unwrap_or(Value::Null),
            Value::Tagged(t) => t.value,
            other => other,
        },
        Replacement::EmptyList => Value::Sequence(Vec::new()),
        Replacement::EmptyMap => Value::Mapping(Mapping::new()),
        Replacement::Deep(n) => {
            let mut v = old;
            for _ in 0..*n {
                v = Value::Sequence(vec![v]);
            }
            v
        }
        Replacement::NestedVars(n) => {
            Value::String(format!("{}x{}", "${A:-".repeat(*n), "}".repeat(*n)))
        }
        Replacement::Repeated(s, n) => Value::String(s.repeat(*n)),
    };
}

fn rename_key(doc: &mut Value, at: usize, to: &str) {
    let mut maps = Vec::new();
    node_paths(doc, &mut Vec::new(), &mut maps);
    maps.retain(|p| matches!(node_mut(doc, p), Some(Value::Mapping(m)) if !m.is_empty()));
    if maps.is_empty() {
        return;
    }
    let path = maps[at % maps.len()].clone();
    if let Some(Value::Mapping(m)) = node_mut(doc, &path) {
        let n = m.len();
        if let Some(k) = m.keys().nth(at / maps.len() % n).cloned() {
            if let Some(v) = m.remove(&k) {
                m.insert(Value::String(to.to_string()), v);
            }
        }
    }
}

/// The largest char boundary of `s` at or below `at`.
fn boundary(s: &str, at: usize) -> usize {
    let mut i = at.min(s.len());
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

fn apply_text(text: &mut String, m: &Mutation) {
    let lines: Vec<&str> = text.lines().collect();
    let pick = |i: usize| if lines.is_empty() { 0 } else { i % lines.len() };
    match m {
        Mutation::Alias(i, anchor) => {
            let n = pick(*i);
            // A fresh anchor name each time, so two aliases do not make a duplicate key.
            let id = text.matches("x-anchor").count();
            let mut out: Vec<String> = vec![format!("x-anchor{id}: &a{id} {anchor}")];
            for (j, l) in lines.iter().enumerate() {
                match l.split_once(": ") {
                    Some((k, _)) if j == n && !k.trim_start().starts_with('-') => {
                        out.push(format!("{k}: *a{id}"))
                    }
                    _ => out.push(l.to_string()),
                }
            }
            *text = out.join("\n") + "\n";
        }
        Mutation::DuplicateLine(i) => {
            let n = pick(*i);
            let mut out: Vec<&str> = lines.clone();
            if let Some(l) = lines.get(n) {
                out.insert(n, l);
            }
            *text = out.join("\n") + "\n";
        }
        Mutation::Insert(i, snippet) => {
            let n = pick(*i);
            let mut out: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
            out.insert(n.min(out.len()), snippet.trim_end_matches('\n').to_string());
            *text = out.join("\n") + "\n";
        }
        Mutation::Truncate(i) => {
            let at = boundary(text, i % (text.len() + 1));
            text.truncate(at);
        }
        Mutation::Replace(..) | Mutation::ReplaceLeaf(..) | Mutation::RenameKey(..) => {}
    }
}

/// The compose text of `fixture` after `mutations`.
fn mutate(fixture: &Fixture, value_muts: &[Mutation], text_muts: &[Mutation]) -> String {
    let mut doc = fixture.value.clone();
    for m in value_muts {
        match m {
            Mutation::Replace(i, r) => {
                let mut paths = Vec::new();
                node_paths(&doc, &mut Vec::new(), &mut paths);
                let path = paths[i % paths.len()].clone();
                if let Some(node) = node_mut(&mut doc, &path) {
                    replace(node, r);
                }
            }
            Mutation::ReplaceLeaf(i, r) => {
                let mut paths = Vec::new();
                node_paths(&doc, &mut Vec::new(), &mut paths);
                paths.retain(|p| {
                    !matches!(
                        node_mut(&mut doc, p),
                        Some(Value::Sequence(_) | Value::Mapping(_) | Value::Tagged(_))
                    )
                });
                if paths.is_empty() {
                    continue;
                }
                let path = paths[i % paths.len()].clone();
                if let Some(node) = node_mut(&mut doc, &path) {
                    replace(node, r);
                }
            }
            Mutation::RenameKey(i, to) => rename_key(&mut doc, *i, to),
            _ => {}
        }
    }
    let mut text = serde_yaml::to_string(&doc).unwrap_or_default();
    for m in text_muts {
        apply_text(&mut text, m);
    }
    text
}

/// Render a mutated fixture: `Ok` or `Err`, nothing else (a panic fails the test), in bounded time.
fn check(fixture: &Fixture, text: String, env_text: Option<String>) -> Result<(), TestCaseError> {
    let mut tree = fixture.tree.clone();
    tree.set(&fixture.compose, text);
    if let Some(e) = env_text {
        tree.set(".env", e);
    }
    let start = std::time::Instant::now();
    let result = render(&tree, &opts());
    let took = start.elapsed();
    prop_assert!(
        took < std::time::Duration::from_secs(20),
        "{} took {took:?}",
        fixture.name
    );
    if let Err(e) = result {
        prop_assert!(!e.problems.is_empty());
        prop_assert!(e.problems.len() <= MAX_PROBLEMS + 1);
    }
    Ok(())
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(DEFAULT_CASES)
}

#[test]
fn every_fixture_renders_before_it_is_mutated() {
    for f in fixtures().iter() {
        let mut tree = f.tree.clone();
        tree.set(&f.compose, serde_yaml::to_string(&f.value).unwrap());
        if let Err(e) = render(&tree, &opts()) {
            panic!("fixture {} does not render:\n{e}", f.name);
        }
    }
}

/// Run `cases` mutated fixtures, replacing scalars with `texts` (among other values).
fn run_mutations(cases: u32, texts: Vec<&'static str>) {
    let n = fixtures().len();
    let strategy = (
        0..n,
        prop::collection::vec(value_mutation(texts.clone()), 1..5),
        prop::collection::vec(text_mutation(), 0..3),
        prop::option::weighted(
            0.1,
            prop::collection::vec(prop::sample::select(texts), 1..6),
        ),
    );
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    let result = runner.run(&strategy, |(i, value_muts, text_muts, env_values)| {
        let fixture = &fixtures()[i];
        let text = mutate(fixture, &value_muts, &text_muts);
        // Sometimes a .env of odd values too (each as a variable, and one line as it is).
        let env_text = env_values.map(|vals| {
            let mut e = String::new();
            for (k, v) in vals.iter().enumerate() {
                e.push_str(&format!("V{k}={v}\n"));
            }
            if let Some(v) = vals.first() {
                e.push_str(v);
                e.push('\n');
            }
            e
        });
        check(fixture, text, env_text)
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}

#[test]
fn mutated_fixtures_render_or_fail_but_never_panic() {
    run_mutations(cases(), NASTY_TEXT.to_vec());
}

/// The same with durations `config::parse_duration` cannot represent (see
/// [`super::bounds_tests::OVERFLOWING_DURATIONS`]).
#[test]
fn mutated_fixtures_with_overflowing_durations_render_or_fail() {
    let mut texts = NASTY_TEXT.to_vec();
    texts.extend_from_slice(super::bounds_tests::OVERFLOWING_DURATIONS);
    texts.extend(["every_99999999999999999999h", "every_1s"]);
    run_mutations(cases(), texts);
}

#[test]
fn truncated_fixtures_render_or_fail_at_every_point() {
    // Not random: every fixture cut at every line and at a few points within lines.
    for f in fixtures() {
        let text = serde_yaml::to_string(&f.value).unwrap();
        let mut cut = 0;
        while cut <= text.len() {
            let at = boundary(&text, cut);
            let mut tree = f.tree.clone();
            tree.set(&f.compose, &text[..at]);
            let _ = render(&tree, &opts());
            cut += 7;
        }
    }
}
