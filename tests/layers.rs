//! The library's layers, checked: every `crate::X` a module's non-test code names must be a layer
//! that module may call (docs/design.md has the map), and the map itself has no cycle. Adding a
//! dependency that the map does not allow fails here, with the file that added it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Who may call whom (top-level modules of `src/`). `lib` items (`failpoint!`, `process_setup`) are
/// named as they appear in paths.
const ALLOWED: &[(&str, &[&str])] = &[
    ("topology", &[]),
    ("error", &[]),
    ("config", &[]),
    ("hooks", &["failpoint"]),
    ("model", &["topology", "error"]),
    ("rivers", &["error"]),
    ("storage", &["config", "model", "error", "metrics"]),
    ("k8s", &["model", "topology"]),
    ("planner", &["k8s", "model", "topology"]),
    ("metrics", &["model"]),
    (
        "infra",
        &["config", "error", "k8s", "metrics", "model", "storage", "topology"],
    ),
    (
        "probe",
        &["error", "infra", "k8s", "metrics", "model", "storage", "topology"],
    ),
    (
        "op",
        &[
            "error",
            "failpoint",
            "k8s",
            "hooks",
            "infra",
            "model",
            "planner",
            "storage",
            "topology",
        ],
    ),
    ("server", &["metrics", "model", "topology"]),
    // The sabakan integration: machines, the generator (pure), the GraphQL client and the integrator.
    ("sabakan", &["error", "infra", "metrics", "model", "storage"]),
    ("leader", &["storage"]),
    (
        "controller",
        &[
            "error",
            "failpoint",
            "infra",
            "k8s",
            "metrics",
            "model",
            "op",
            "planner",
            "probe",
            "sabakan",
            "server",
            "storage",
            "topology",
        ],
    ),
    // ckecli talks to the management etcd and Vault, never to cke: no controller, op, server, daemon.
    (
        "cli",
        &[
            "config",
            "error",
            "infra",
            "k8s",
            "model",
            "planner",
            "process_setup",
            "sabakan",
            "storage",
            "topology",
        ],
    ),
    (
        "daemon",
        &[
            "config",
            "controller",
            "error",
            "hooks",
            "infra",
            "k8s",
            "leader",
            "metrics",
            "model",
            "op",
            "planner",
            "probe",
            "process_setup",
            "sabakan",
            "server",
            "storage",
            "topology",
        ],
    ),
];

/// Non-test code of a file: comments dropped, and everything from the first `#[cfg(test)]` module.
fn code_of(text: &str) -> String {
    let cut = text.find("#[cfg(test)]\nmod ").unwrap_or(text.len());
    text[..cut]
        .lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// `crate::X` names in `code`.
fn crate_refs(code: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = code;
    while let Some(i) = rest.find("crate::") {
        let after = &rest[i + "crate::".len()..];
        let name: String = after
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        let before = rest[..i].chars().last();
        // `$crate::` in macros, and `cke_crate::`-like identifiers, are not module paths.
        if !name.is_empty() && !matches!(before, Some(c) if c == '$' || c.is_ascii_alphanumeric() || c == '_') {
            out.insert(name);
        }
        rest = after;
    }
    out
}

/// (module, file) -> modules it names, for every file under `src/` except the binaries, `lib.rs`
/// and test-only files (`tests.rs`, `fake.rs`, `test_ops.rs`).
fn edges(src: &Path) -> BTreeMap<(String, String), BTreeSet<String>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![src.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
                continue;
            }
            let rel = p.strip_prefix(src).unwrap().to_string_lossy().into_owned();
            let file = p.file_name().unwrap().to_string_lossy().into_owned();
            if !rel.ends_with(".rs")
                || rel.starts_with("bin/")
                || rel == "lib.rs"
                || ["tests.rs", "fake.rs", "test_ops.rs"].contains(&file.as_str())
            {
                continue;
            }
            let top = rel.split('/').next().unwrap().trim_end_matches(".rs").to_string();
            let refs: BTreeSet<String> = crate_refs(&code_of(&std::fs::read_to_string(&p).unwrap()))
                .into_iter()
                .filter(|m| *m != top)
                .collect();
            out.insert((top, rel), refs);
        }
    }
    out
}

fn violations(edges: &BTreeMap<(String, String), BTreeSet<String>>) -> Vec<String> {
    let allowed: BTreeMap<&str, &[&str]> = ALLOWED.iter().copied().collect();
    let mut out = Vec::new();
    for ((top, file), refs) in edges {
        let Some(ok) = allowed.get(top.as_str()) else {
            out.push(format!(
                "src/{file}: module `{top}` is not in the layer map (tests/layers.rs ALLOWED)"
            ));
            continue;
        };
        for r in refs {
            if !ok.contains(&r.as_str()) {
                out.push(format!("src/{file}: `{top}` may not use `crate::{r}`"));
            }
        }
    }
    out
}

/// A cycle in the map, if any (depth-first search).
fn cycle(map: &[(&str, &[&str])]) -> Option<Vec<String>> {
    let g: BTreeMap<&str, &[&str]> = map.iter().copied().collect();
    fn visit<'a>(
        n: &'a str,
        g: &BTreeMap<&'a str, &'a [&'a str]>,
        path: &mut Vec<&'a str>,
        done: &mut BTreeSet<&'a str>,
    ) -> Option<Vec<String>> {
        if let Some(i) = path.iter().position(|p| *p == n) {
            let mut c: Vec<String> = path[i..].iter().map(|s| s.to_string()).collect();
            c.push(n.to_string());
            return Some(c);
        }
        if !done.insert(n) {
            return None;
        }
        path.push(n);
        for m in g.get(n).copied().unwrap_or(&[]) {
            if let Some(c) = visit(m, g, path, done) {
                return Some(c);
            }
        }
        path.pop();
        None
    }
    let mut done = BTreeSet::new();
    for n in g.keys() {
        if let Some(c) = visit(n, &g, &mut Vec::new(), &mut done) {
            return Some(c);
        }
    }
    None
}

#[test]
fn every_module_calls_only_the_layers_the_map_allows() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let e = edges(&src);
    assert!(e.len() > 50, "only {} files found under {}", e.len(), src.display());
    let v = violations(&e);
    assert!(v.is_empty(), "layer violations:\n  {}", v.join("\n  "));
}

#[test]
fn the_layer_map_has_no_cycle() {
    assert_eq!(cycle(ALLOWED), None);
}

#[test]
fn the_checker_catches_a_violation_and_a_cycle() {
    let mut e = BTreeMap::new();
    e.insert(
        ("planner".to_string(), "planner/mod.rs".to_string()),
        crate_refs(&code_of(
            "use crate::model::Cluster;\nuse crate::infra::Infra;\n// crate::op in a comment\nmacro_rules! m { () => { $crate::x } }\n#[cfg(test)]\nmod tests { use crate::storage; }\n",
        )),
    );
    assert_eq!(
        violations(&e),
        ["src/planner/mod.rs: `planner` may not use `crate::infra`"]
    );
    let c = cycle(&[("a", &["b"]), ("b", &["c"]), ("c", &["a"])]).expect("a cycle");
    assert_eq!(c.first(), c.last());
}

#[test]
fn every_dependency_has_its_line_in_the_design_doc() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
    let design = std::fs::read_to_string(root.join("docs/design.md")).unwrap();
    let listed = &design[design
        .find("## Dependencies")
        .expect("docs/design.md lists the dependencies")..];
    let section = manifest
        .split("\n[dependencies]\n")
        .nth(1)
        .and_then(|s| s.split("\n[").next())
        .expect("[dependencies] in Cargo.toml");
    let names: Vec<&str> = section
        .lines()
        .filter_map(|l| l.split('=').next())
        .map(str::trim)
        .filter(|n| !n.is_empty() && !n.starts_with('#'))
        .collect();
    assert!(names.len() > 20, "{names:?}");
    // `webpki` is the crate rustls-webpki, renamed.
    let missing: Vec<&&str> = names
        .iter()
        .filter(|n| {
            let shown = if **n == "webpki" { "rustls-webpki" } else { n };
            !listed.lines().any(|l| {
                l.starts_with('|')
                    && l.split('|')
                        .nth(1)
                        .is_some_and(|c| c.split([',', ' ', '(', ')', '+']).any(|w| w == shown))
            })
        })
        .collect();
    assert!(missing.is_empty(), "no line in docs/design.md for {missing:?}");
}
