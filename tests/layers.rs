//! The crate's modules form layers: no import circles between top-level modules, none between
//! the modules inside `src/http/`, and the leaves (`text`, `sys`, `http`, `websocket`) stay
//! leaves.
//!
//! The check reads the sources as text. It walks the module tree from `src/lib.rs` by its `mod`
//! declarations, leaves out everything under `#[cfg(test)]`, comments and string literals, and
//! collects every `crate::` and `super::` path (`super::` inside an inline `mod name { }` counts
//! from that module). A module's root file (`lib.rs`, `http/mod.rs`)
//! depends on each module it declares, so a child that reaches back for an item defined in its
//! parent's root file (`crate::describe_io`, `super::HttpError` with `HttpError` defined in
//! `http/mod.rs`) closes a circle: shared items belong in a leaf module of their own.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// The crate root's own node in the top-level graph.
const ROOT: &str = "lib";
/// The node of `src/http/mod.rs` in the graph inside `src/http/`.
const HTTP_ROOT: &str = "mod";

/// The top-level modules by layer, lowest first: a module imports only from its own layer or
/// lower ones, and `lib.rs` sits above them all. A module not listed is only held to the
/// no-circles rule; give a new module its layer here.
const LAYERS: [&[&str]; 6] = [
    &[
        "text",
        "sys",
        "http",
        "websocket",
        "forwarded",
        "cpu",
        "proxy_protocol",
    ],
    &["config"],
    &["logging", "access_log", "protocol", "status"],
    &["handler", "pool", "listeners", "pidfile", "python"],
    &["worker", "master", "cli"],
    &["error", "boot"],
];

/// Top-level modules that must import nothing from the crate.
const LEAVES: [&str; 2] = ["text", "sys"];
/// The pure (sans-io) protocol modules, and what each may import from the crate outside itself.
const PURE_MAY_USE: [(&str, &[&str]); 2] = [("http", &["text"]), ("websocket", &["http"])];

/// One source file of the library: its module path and its text with comments, string and
/// character literals and `#[cfg(test)]` items removed.
struct Module {
    path: Vec<String>,
    file: PathBuf,
    code: String,
}

/// A dependency of one module on another, and one place that causes it.
type Graph = BTreeMap<String, BTreeMap<String, String>>;

#[test]
fn top_level_modules_form_a_dag() {
    let modules = load();
    let tops = top_level(&modules);
    let graph = graph(&modules, &[], &tops, ROOT);
    assert_acyclic(&graph, "top-level modules of src/");
}

#[test]
fn modules_inside_http_form_a_dag() {
    let modules = load();
    let scope = ["http".to_string()];
    let children: BTreeSet<String> = modules
        .iter()
        .filter(|m| m.path.len() == 2 && m.path[0] == "http")
        .map(|m| m.path[1].clone())
        .collect();
    assert!(!children.is_empty(), "found no modules inside src/http/");
    let graph = graph(&modules, &scope, &children, HTTP_ROOT);
    assert_acyclic(&graph, "modules inside src/http/");
}

#[test]
fn leaves_import_nothing_from_the_crate() {
    let modules = load();
    let tops = top_level(&modules);
    let graph = graph(&modules, &[], &tops, ROOT);
    let mut wrong = Vec::new();
    for leaf in LEAVES {
        assert!(tops.contains(leaf), "src/{leaf} is gone; update LEAVES");
        for (to, at) in graph.get(leaf).into_iter().flatten() {
            wrong.push(format!("{leaf} -> {to} ({at})"));
        }
    }
    for (pure, may_use) in PURE_MAY_USE {
        assert!(
            tops.contains(pure),
            "src/{pure} is gone; update PURE_MAY_USE"
        );
        for (to, at) in graph.get(pure).into_iter().flatten() {
            if !may_use.contains(&to.as_str()) {
                wrong.push(format!("{pure} -> {to} ({at})"));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "leaf modules must not import these (move the item used into a leaf, or pass it in):\n  {}",
        wrong.join("\n  ")
    );
}

#[test]
fn top_level_modules_import_only_from_lower_layers() {
    let modules = load();
    let tops = top_level(&modules);
    let layer_of = |name: &str| LAYERS.iter().position(|layer| layer.contains(&name));
    let graph = graph(&modules, &[], &tops, ROOT);
    let mut wrong = Vec::new();
    for (from, edges) in &graph {
        for (to, at) in edges {
            if let (Some(low), Some(high)) = (layer_of(from), layer_of(to))
                && high > low
            {
                wrong.push(format!(
                    "{from} (layer {low}) -> {to} (layer {high})   ({at})"
                ));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "these imports go up the layers (see LAYERS); cut them by moving what they use down:\n  {}",
        wrong.join("\n  ")
    );
}

/// The checker itself: it finds a circle, skips test code and comments, and resolves `super::`.
#[test]
fn checker_sees_circles_and_skips_tests() {
    let code = clean(
        "use crate::a::X; // crate::zz\n\
         /* crate::yy */ fn f() { let s = \"crate::ww\"; let c = '{'; let b = b'\\''; let r = r#\"crate::tt\"#; super::b::g(); }\n\
         #[cfg(test)]\nmod tests { use crate::vv; }\n\
         #[cfg(test)]\nuse crate::uu;\n\
         pub(crate) mod inner;\n\
         mod nested { fn h() { super::c::k(); } }\n\
         fn after() { super::d::l(); }\n",
    );
    let found: Vec<Vec<String>> = paths(&code, &["m".to_string(), "n".to_string()]);
    assert_eq!(
        found,
        vec![
            vec!["a".to_string(), "X".to_string()],
            vec!["m".to_string(), "b".to_string(), "g".to_string()],
            vec![
                "m".to_string(),
                "n".to_string(),
                "c".to_string(),
                "k".to_string()
            ],
            vec!["m".to_string(), "d".to_string(), "l".to_string()],
        ]
    );
    assert_eq!(declared_mods(&code), vec!["inner".to_string()]);

    let mut graph = Graph::new();
    for (from, to) in [("a", "b"), ("b", "c"), ("c", "a"), ("c", "d")] {
        graph
            .entry(from.to_string())
            .or_default()
            .insert(to.to_string(), "here".to_string());
    }
    let cycle = find_cycle(&graph).expect("a -> b -> c -> a is a circle");
    assert_eq!(cycle.len(), 4);
    assert_eq!(cycle.first(), cycle.last());
    graph.get_mut("c").unwrap().remove("a");
    assert_eq!(find_cycle(&graph), None);
}

/// The names of the top-level modules.
fn top_level(modules: &[Module]) -> BTreeSet<String> {
    modules
        .iter()
        .filter(|m| m.path.len() == 1)
        .map(|m| m.path[0].clone())
        .collect()
}

/// Fails with the circle and the place of each of its edges, if the graph has one.
fn assert_acyclic(graph: &Graph, what: &str) {
    if let Some(cycle) = find_cycle(graph) {
        let edges: Vec<String> = cycle
            .windows(2)
            .map(|pair| {
                format!(
                    "{} -> {}   ({})",
                    pair[0], pair[1], graph[&pair[0]][&pair[1]]
                )
            })
            .collect();
        panic!(
            "the {what} import each other in a circle: {}\n\
             cut one of these edges (move what it uses into a lower module, or pass it in):\n  {}",
            cycle.join(" -> "),
            edges.join("\n  ")
        );
    }
}

/// The dependency graph between the direct children of the module `scope`. `children` are the
/// modules declared there; `root` names the scope's own root file.
fn graph(modules: &[Module], scope: &[String], children: &BTreeSet<String>, root: &str) -> Graph {
    let node_of = |path: &[String]| -> Option<String> {
        if !path.starts_with(scope) {
            return None;
        }
        match path.get(scope.len()) {
            Some(name) if children.contains(name) => Some(name.clone()),
            _ => Some(root.to_string()),
        }
    };
    let mut graph = Graph::new();
    for child in children {
        graph
            .entry(root.to_string())
            .or_default()
            .insert(child.clone(), format!("`mod {child}` in the root"));
    }
    for module in modules {
        let Some(from) = node_of(&module.path) else {
            continue;
        };
        for target in paths(&module.code, &module.path) {
            // Paths leaving the scope cannot close a circle inside it.
            let Some(to) = node_of(&target) else {
                continue;
            };
            if to != from {
                graph
                    .entry(from.clone())
                    .or_default()
                    .entry(to)
                    .or_insert_with(|| {
                        format!("{} uses {}", module.file.display(), target.join("::"))
                    });
            }
        }
    }
    graph
}

/// A circle in the graph as its nodes, first and last the same, or `None`.
fn find_cycle(graph: &Graph) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &Graph,
        done: &mut BTreeSet<String>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = stack.iter().position(|n| n == node) {
            let mut cycle = stack[at..].to_vec();
            cycle.push(node.to_string());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        stack.push(node.to_string());
        for next in graph.get(node).into_iter().flat_map(|edges| edges.keys()) {
            if let Some(cycle) = visit(next, graph, done, stack) {
                return Some(cycle);
            }
        }
        stack.pop();
        done.insert(node.to_string());
        None
    }
    let mut done = BTreeSet::new();
    for node in graph.keys() {
        if let Some(cycle) = visit(node, graph, &mut done, &mut Vec::new()) {
            return Some(cycle);
        }
    }
    None
}

/// Every non-test module of the library, found from `src/lib.rs` by its `mod` declarations.
fn load() -> Vec<Module> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut modules = Vec::new();
    let mut queue = vec![(Vec::<String>::new(), src.join("lib.rs"))];
    while let Some((path, file)) = queue.pop() {
        let text = fs::read_to_string(&file)
            .unwrap_or_else(|err| panic!("cannot read {}: {err}", file.display()));
        let code = clean(&text);
        // Children of `lib.rs` and `mod.rs` live beside them, those of `x.rs` in `x/`.
        let stem = file
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default();
        let dir = file.parent().expect("a file has a directory").to_path_buf();
        let base = if path.is_empty() || stem == "mod" {
            dir
        } else {
            dir.join(stem)
        };
        for name in declared_mods(&code) {
            let flat = base.join(format!("{name}.rs"));
            let nested = base.join(&name).join("mod.rs");
            let child = if flat.is_file() { flat } else { nested };
            let mut child_path = path.clone();
            child_path.push(name);
            queue.push((child_path, child));
        }
        let file = file.strip_prefix(&src).unwrap_or(&file).to_path_buf();
        modules.push(Module {
            path,
            file: Path::new("src").join(file),
            code,
        });
    }
    modules.sort_by(|a, b| a.path.cmp(&b.path));
    modules
}

/// The names of the modules declared as files (`mod name;`) in cleaned code.
fn declared_mods(code: &str) -> Vec<String> {
    let words = words(code);
    let mut names = Vec::new();
    for (at, word) in words.iter().enumerate() {
        if word == "mod"
            && let (Some(name), Some(semi)) = (words.get(at + 1), words.get(at + 2))
            && semi == ";"
        {
            names.push(name.clone());
        }
    }
    names
}

/// Every path starting with `crate::` or `super::` in cleaned code, resolved against the module
/// `here` to a path from the crate root; a `{}` group yields one path per first-level member.
fn paths(code: &str, here: &[String]) -> Vec<Vec<String>> {
    let words = words(code);
    let mut found = Vec::new();
    // The module the code at `at` is in: `here`, or an inline `mod name { ... }` inside it,
    // each with the brace depth its block opened at.
    let mut module = here.to_vec();
    let mut inline: Vec<usize> = Vec::new();
    let mut depth = 0usize;
    let mut at = 0;
    while at < words.len() {
        match words[at].as_str() {
            "mod"
                if words.get(at + 2).map(String::as_str) == Some("{")
                    && words.get(at + 1).is_some_and(|w| is_ident(w)) =>
            {
                module.push(words[at + 1].clone());
                inline.push(depth);
                depth += 1;
                at += 3;
                continue;
            }
            "{" => depth += 1,
            "}" => {
                depth = depth.saturating_sub(1);
                if inline.last() == Some(&depth) {
                    inline.pop();
                    module.pop();
                }
            }
            _ => {}
        }
        let start = match words[at].as_str() {
            "crate" => Some(Vec::new()),
            "super" => {
                let mut base = module.clone();
                let mut next = at;
                base.pop();
                while words.get(next + 1).map(String::as_str) == Some("::")
                    && words.get(next + 2).map(String::as_str) == Some("super")
                {
                    base.pop();
                    next += 2;
                }
                at = next;
                Some(base)
            }
            _ => None,
        };
        // `pub(crate)` and `pub(super)` are visibilities, not paths.
        let is_path = words.get(at + 1).map(String::as_str) == Some("::");
        if let (Some(mut path), true) = (start, is_path) {
            at += 2;
            match words.get(at).map(String::as_str) {
                Some("{") => {
                    let mut depth = 0;
                    let mut expect_name = true;
                    while let Some(word) = words.get(at) {
                        match word.as_str() {
                            "{" => {
                                depth += 1;
                                expect_name = depth == 1;
                            }
                            "}" => {
                                depth -= 1;
                                if depth == 0 {
                                    break;
                                }
                            }
                            "," if depth == 1 => expect_name = true,
                            name if expect_name && depth == 1 => {
                                let mut member = path.clone();
                                if name != "self" {
                                    member.push(name.to_string());
                                }
                                found.push(member);
                                expect_name = false;
                            }
                            _ => {}
                        }
                        at += 1;
                    }
                }
                Some(name) if is_ident(name) => {
                    path.push(name.to_string());
                    while words.get(at + 1).map(String::as_str) == Some("::")
                        && words.get(at + 2).is_some_and(|w| is_ident(w))
                    {
                        path.push(words[at + 2].clone());
                        at += 2;
                    }
                    found.push(path);
                }
                _ => {}
            }
        }
        at += 1;
    }
    found
}

fn is_ident(word: &str) -> bool {
    word.chars()
        .next()
        .is_some_and(|c| c.is_alphabetic() || c == '_')
}

/// Cleaned code as identifiers, `::`, and single punctuation characters.
fn words(code: &str) -> Vec<String> {
    let chars: Vec<char> = code.chars().collect();
    let mut words = Vec::new();
    let mut at = 0;
    while at < chars.len() {
        let c = chars[at];
        if c.is_alphanumeric() || c == '_' {
            let start = at;
            while at < chars.len() && (chars[at].is_alphanumeric() || chars[at] == '_') {
                at += 1;
            }
            words.push(chars[start..at].iter().collect());
            continue;
        }
        if c == ':' && chars.get(at + 1) == Some(&':') {
            words.push("::".to_string());
            at += 2;
            continue;
        }
        if !c.is_whitespace() {
            words.push(c.to_string());
        }
        at += 1;
    }
    words
}

/// Source text without comments, without the contents of string and character literals, and
/// without items under `#[cfg(test)]`.
fn clean(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    while at < chars.len() {
        let c = chars[at];
        let next = chars.get(at + 1).copied();
        if c == '/' && next == Some('/') {
            while at < chars.len() && chars[at] != '\n' {
                at += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while at < chars.len() {
                if chars[at] == '/' && chars.get(at + 1) == Some(&'*') {
                    depth += 1;
                    at += 2;
                } else if chars[at] == '*' && chars.get(at + 1) == Some(&'/') {
                    depth -= 1;
                    at += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    at += 1;
                }
            }
            out.push(' ');
        } else if c == '"'
            || (c == 'r' && matches!(next, Some('"' | '#')) && !ident_before(&chars, at))
        {
            // A string; a raw one ends at `"` followed by as many `#` as it began with.
            let raw = c == 'r';
            if raw {
                at += 1;
            }
            let mut hashes = 0;
            while chars.get(at) == Some(&'#') {
                hashes += 1;
                at += 1;
            }
            if chars.get(at) != Some(&'"') {
                // `r#ident`, a raw identifier.
                out.push('r');
                continue;
            }
            at += 1;
            while at < chars.len() {
                if !raw && chars[at] == '\\' {
                    at += 2;
                } else if chars[at] == '"'
                    && (0..hashes).all(|k| chars.get(at + 1 + k) == Some(&'#'))
                {
                    at += 1 + hashes;
                    break;
                } else {
                    at += 1;
                }
            }
            out.push_str("\"\"");
        } else if c == '\'' && next == Some('\\') {
            // An escaped character: skip the escape's first character, which may be `'`.
            at += 3;
            while at < chars.len() && chars[at] != '\'' {
                at += 1;
            }
            at += 1;
            out.push_str("' '");
        } else if c == '\'' && chars.get(at + 2) == Some(&'\'') {
            at += 3;
            out.push_str("' '");
        } else {
            out.push(c);
            at += 1;
        }
    }
    drop_test_items(&out)
}

/// Whether the `r` at `at` continues an identifier (other than a `b` byte-string prefix).
fn ident_before(chars: &[char], at: usize) -> bool {
    let is_ident = |c: char| c.is_alphanumeric() || c == '_';
    match at.checked_sub(1).map(|before| chars[before]) {
        Some('b') => at >= 2 && is_ident(chars[at - 2]),
        Some(c) => is_ident(c),
        None => false,
    }
}

/// Removes each item carrying `#[cfg(test)]`: up to its `;`, or its balanced `{}` block.
fn drop_test_items(code: &str) -> String {
    const MARK: &str = "#[cfg(test)]";
    let mut out = String::with_capacity(code.len());
    let mut rest = code;
    while let Some(start) = rest.find(MARK) {
        out.push_str(&rest[..start]);
        let item = &rest[start + MARK.len()..];
        let mut depth = 0usize;
        let mut end = item.len();
        for (at, c) in item.char_indices() {
            match c {
                ';' if depth == 0 => {
                    end = at + 1;
                    break;
                }
                '{' => depth += 1,
                '}' => {
                    depth = depth.saturating_sub(1);
                    if depth == 0 {
                        end = at + 1;
                        break;
                    }
                }
                _ => {}
            }
        }
        rest = &item[end..];
    }
    out.push_str(rest);
    out
}
