//! The module graph of a crate, read from its sources, and the cycles in it.
//!
//! Data must flow one way through the stages (capture → events → reassembly → session →
//! decoders → model → aggregates and detectors → sinks), so `lint` fails on any import cycle
//! between sibling modules, at every depth. A reference from a module to its own ancestor or
//! descendant is not an edge: a parent declares its children, and a child may use what its
//! parent defines for the family.
//!
//! Test code is not part of the flow (a decoder's tests may drive it through the session
//! stack): `tests.rs` files and a trailing `#[cfg(test)] mod tests { … }` are left out.
//!
//! References are read as text: every `crate::…` and `super::…` path outside comments and
//! literals, with `use` groups (`crate::{a, b::{c, d}}`) expanded. A path names the deepest
//! module it reaches; what follows (types, functions) does not matter. Paths through
//! re-exports count where they are written, which is the dependency a reader sees.

use anyhow::{Context, Result, bail};
use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
};

/// Module path from the crate root (`[]` is the root), e.g. `["decode", "postgres"]`.
type ModPath = Vec<String>;

/// One reference that makes an edge, for the error message.
#[derive(Clone, Debug)]
struct Site {
    file: PathBuf,
    line: usize,
    text: String,
}

/// Edges between siblings: parent module → (from child → (to child → first site)).
type Levels = BTreeMap<ModPath, BTreeMap<String, BTreeMap<String, Site>>>;

/// Fails with every cycle found among the modules of the crate whose sources are under `src`.
pub fn check_acyclic(crate_name: &str, src: &Path) -> Result<()> {
    let files = module_files(src)?;
    let modules: BTreeSet<ModPath> = files.iter().map(|(m, _)| m.clone()).collect();
    let mut levels = Levels::new();
    for (module, file) in &files {
        let text = std::fs::read_to_string(file).with_context(|| file.display().to_string())?;
        let code = without_tests(&strip_comments_and_literals(&text));
        for (line, target) in references(&code, module) {
            let target = deepest_module(&modules, &target);
            let Some((parent, from, to)) = sibling_edge(module, &target) else {
                continue;
            };
            let site = Site {
                file: file.clone(),
                line,
                text: text.lines().nth(line - 1).unwrap_or("").trim().to_string(),
            };
            levels
                .entry(parent)
                .or_default()
                .entry(from)
                .or_default()
                .entry(to)
                .or_insert(site);
        }
    }
    if std::env::var_os("XTASK_MODGRAPH_EDGES").is_some() {
        for (parent, edges) in &levels {
            for (from, tos) in edges {
                for (to, site) in tos {
                    println!(
                        "{crate_name} [{}] {from} → {to}    {}:{}",
                        parent.join("::"),
                        site.file.display(),
                        site.line
                    );
                }
            }
        }
    }
    let mut report = String::new();
    for (parent, edges) in &levels {
        for (cycle, component) in cycles(edges) {
            let prefix = if parent.is_empty() {
                String::new()
            } else {
                format!("{}::", parent.join("::"))
            };
            report.push_str(&format!(
                "{crate_name}: import cycle {}\n",
                cycle
                    .iter()
                    .chain(cycle.first())
                    .map(|m| format!("{prefix}{m}"))
                    .collect::<Vec<_>>()
                    .join(" → ")
            ));
            if component.len() > cycle.len() {
                report.push_str(&format!(
                    "    (one of the cycles among {})\n",
                    component.join(", ")
                ));
            }
            for pair in cycle
                .windows(2)
                .chain([[cycle[cycle.len() - 1].clone(), cycle[0].clone()].as_slice()])
            {
                let site = &edges[&pair[0]][&pair[1]];
                report.push_str(&format!(
                    "    {}:{}: {}\n",
                    site.file.display(),
                    site.line,
                    site.text
                ));
            }
        }
    }
    if !report.is_empty() {
        bail!("{report}");
    }
    Ok(())
}

/// Every source file of the crate with its module path (`lib.rs`/`main.rs` → root,
/// `a/mod.rs` → `a`, `a/b.rs` → `a::b`).
fn module_files(src: &Path) -> Result<Vec<(ModPath, PathBuf)>> {
    let mut out = Vec::new();
    let mut stack = vec![src.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).with_context(|| dir.display().to_string())? {
            let path = entry?.path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let rel = path.strip_prefix(src)?;
            let mut parts: Vec<String> = rel
                .iter()
                .map(|p| p.to_string_lossy().trim_end_matches(".rs").to_string())
                .collect();
            // A binary's sources (src/bin) are crates of their own.
            if parts.first().is_some_and(|p| p == "bin") {
                continue;
            }
            // Test modules (`#[cfg(test)] mod tests;`) are not part of the flow.
            if matches!(parts.last().map(String::as_str), Some("tests")) {
                continue;
            }
            if matches!(parts.last().map(String::as_str), Some("mod")) {
                parts.pop();
            }
            if parts.len() == 1 && matches!(parts[0].as_str(), "lib" | "main") {
                parts.clear();
            }
            out.push((parts, path));
        }
    }
    out.sort();
    Ok(out)
}

/// The source with comments, string and char literals blanked (line breaks kept, so line
/// numbers hold).
fn strip_comments_and_literals(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    let blank = |c: u8| if c == b'\n' { b'\n' } else { b' ' };
    while i < b.len() {
        match b[i] {
            b'/' if b.get(i + 1) == Some(&b'/') => {
                while i < b.len() && b[i] != b'\n' {
                    out.push(b' ');
                    i += 1;
                }
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                let mut depth = 0;
                while i < b.len() {
                    if b[i] == b'/' && b.get(i + 1) == Some(&b'*') {
                        depth += 1;
                        out.extend_from_slice(b"  ");
                        i += 2;
                    } else if b[i] == b'*' && b.get(i + 1) == Some(&b'/') {
                        depth -= 1;
                        out.extend_from_slice(b"  ");
                        i += 2;
                        if depth == 0 {
                            break;
                        }
                    } else {
                        out.push(blank(b[i]));
                        i += 1;
                    }
                }
            }
            b'r' if matches!(b.get(i + 1), Some(b'"' | b'#'))
                && (i == 0 || !(b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_')) =>
            {
                // Raw string r"…", r#"…"#.
                let mut j = i + 1;
                let mut hashes = 0;
                while b.get(j) == Some(&b'#') {
                    hashes += 1;
                    j += 1;
                }
                if b.get(j) != Some(&b'"') {
                    out.push(b[i]);
                    i += 1;
                    continue;
                }
                j += 1;
                loop {
                    if j >= b.len() {
                        break;
                    }
                    if b[j] == b'"' && b[j + 1..].iter().take(hashes).all(|&c| c == b'#') {
                        j += 1 + hashes;
                        break;
                    }
                    j += 1;
                }
                out.extend(b[i..j.min(b.len())].iter().map(|&c| blank(c)));
                i = j;
            }
            b'"' => {
                out.push(b' ');
                i += 1;
                while i < b.len() && b[i] != b'"' {
                    if b[i] == b'\\' {
                        out.push(b' ');
                        i += 1;
                    }
                    if i < b.len() {
                        out.push(blank(b[i]));
                        i += 1;
                    }
                }
                out.push(b' ');
                i += 1;
            }
            b'\'' => {
                // A char literal ('a', '\n', '\u{…}') or a lifetime ('a): a literal closes
                // within a few bytes.
                let end = if b.get(i + 1) == Some(&b'\\') {
                    b[i + 2..]
                        .iter()
                        .position(|&c| c == b'\'')
                        .map(|p| i + 2 + p)
                } else if let Some(c) = s[i + 1..].chars().next()
                    && b.get(i + 1 + c.len_utf8()) == Some(&b'\'')
                {
                    Some(i + 1 + c.len_utf8())
                } else {
                    None
                };
                match end {
                    Some(e) => {
                        out.extend(std::iter::repeat_n(b' ', e + 1 - i));
                        i = e + 1;
                    }
                    None => {
                        out.push(b'\'');
                        i += 1;
                    }
                }
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The code before a trailing `#[cfg(test)] mod tests` (the house convention puts it last).
fn without_tests(code: &str) -> String {
    let mut at = 0;
    while let Some(i) = code[at..].find("#[cfg(test)]") {
        let start = at + i;
        let rest = code[start + "#[cfg(test)]".len()..].trim_start();
        if rest.starts_with("mod tests") {
            let lines = code[start..].matches('\n').count();
            // Blank lines keep the line count (sites are reported by line).
            return code[..start].to_string() + &"\n".repeat(lines);
        }
        at = start + 1;
    }
    code.to_string()
}

/// Every module path referenced from `module`'s code, with its line.
fn references(code: &str, module: &[String]) -> Vec<(usize, ModPath)> {
    let b = code.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let word_start = i == 0 || !(b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_');
        let rest = &b[i..];
        let base: Option<(usize, ModPath)> = if !word_start {
            None
        } else if rest.starts_with(b"crate::") {
            Some((7, Vec::new()))
        } else if rest.starts_with(b"super::") {
            // super::super::… climbs one module each.
            let mut up = 0;
            let mut j = 0;
            while b[i + j..].starts_with(b"super::") {
                up += 1;
                j += 7;
            }
            let mut m = module.to_vec();
            for _ in 0..up {
                m.pop();
            }
            Some((j, m))
        } else {
            None
        };
        let Some((skip, base)) = base else {
            i += 1;
            continue;
        };
        let line = b[..i].iter().filter(|&&c| c == b'\n').count() + 1;
        let mut j = i + skip;
        for p in expand(code, &mut j, base) {
            out.push((line, p));
        }
        i = j.max(i + 1);
    }
    out
}

/// Reads a path tail at `*j` (`a::b`, `{a, b::{c}}`, `a::{b, c}`), prefixed by `base`.
fn expand(code: &str, j: &mut usize, base: ModPath) -> Vec<ModPath> {
    let b = code.as_bytes();
    let skip_ws = |j: &mut usize| {
        while *j < b.len() && b[*j].is_ascii_whitespace() {
            *j += 1;
        }
    };
    let mut path = base;
    loop {
        skip_ws(j);
        if *j < b.len() && b[*j] == b'{' {
            *j += 1;
            let mut all = Vec::new();
            loop {
                skip_ws(j);
                if *j >= b.len() {
                    return all;
                }
                if b[*j] == b'}' {
                    *j += 1;
                    return all;
                }
                if b[*j] == b',' {
                    *j += 1;
                    continue;
                }
                let before = *j;
                let inner = expand(code, j, path.clone());
                all.extend(inner);
                // `self`, `*`, or anything unexpected: step over it.
                if *j == before {
                    *j += 1;
                }
            }
        }
        let start = *j;
        while *j < b.len() && (b[*j].is_ascii_alphanumeric() || b[*j] == b'_') {
            *j += 1;
        }
        if *j == start {
            return vec![path];
        }
        let seg = &code[start..*j];
        if seg != "self" {
            path.push(seg.to_string());
        }
        if b[*j..].starts_with(b"::") {
            *j += 2;
        } else {
            return vec![path];
        }
    }
}

/// The longest prefix of `path` that is a module of the crate.
fn deepest_module(modules: &BTreeSet<ModPath>, path: &[String]) -> ModPath {
    (0..=path.len())
        .rev()
        .map(|n| path[..n].to_vec())
        .find(|p| modules.contains(p))
        .unwrap_or_default()
}

/// The edge `from` → `to` makes between two siblings: their common parent and the children
/// of it on each side. `None` when one is the other's ancestor (or the same module).
fn sibling_edge(from: &[String], to: &[String]) -> Option<(ModPath, String, String)> {
    let common = from.iter().zip(to).take_while(|(a, b)| a == b).count();
    if common == from.len() || common == to.len() {
        return None;
    }
    Some((
        from[..common].to_vec(),
        from[common].clone(),
        to[common].clone(),
    ))
}

/// The strongly connected components with more than one member (Tarjan), each as a cycle
/// through its members: every member reaches the next.
/// With each cycle, the whole component it lies in (every module that must move for the
/// cycle to go).
fn cycles(edges: &BTreeMap<String, BTreeMap<String, Site>>) -> Vec<(Vec<String>, Vec<String>)> {
    let nodes: BTreeSet<&String> = edges
        .iter()
        .flat_map(|(a, tos)| std::iter::once(a).chain(tos.keys()))
        .collect();
    let mut out = Vec::new();
    let mut done: BTreeSet<&String> = BTreeSet::new();
    for &start in &nodes {
        if done.contains(start) {
            continue;
        }
        // The component of `start`: nodes reachable from it that reach it back.
        let reach = |from: &String| -> BTreeSet<String> {
            let mut seen = BTreeSet::new();
            let mut stack = vec![from.clone()];
            while let Some(n) = stack.pop() {
                for t in edges.get(&n).into_iter().flat_map(|m| m.keys()) {
                    if seen.insert(t.clone()) {
                        stack.push(t.clone());
                    }
                }
            }
            seen
        };
        let fwd = reach(start);
        if !fwd.contains(start) {
            done.insert(start);
            continue;
        }
        let comp: BTreeSet<String> = fwd
            .into_iter()
            .filter(|n| reach(n).contains(start))
            .collect();
        for n in &comp {
            if let Some(k) = nodes.get(n) {
                done.insert(k);
            }
        }
        // One simple cycle from `start` through the component (BFS back to start).
        let mut prev: BTreeMap<String, String> = BTreeMap::new();
        let mut queue = std::collections::VecDeque::from([start.clone()]);
        let mut cycle = vec![start.clone()];
        'bfs: while let Some(n) = queue.pop_front() {
            for t in edges.get(&n).into_iter().flat_map(|m| m.keys()) {
                if !comp.contains(t) {
                    continue;
                }
                if t == start {
                    let mut path = vec![n.clone()];
                    let mut cur = n.clone();
                    while let Some(p) = prev.get(&cur) {
                        path.push(p.clone());
                        cur = p.clone();
                    }
                    path.reverse();
                    cycle = path;
                    break 'bfs;
                }
                if !prev.contains_key(t) && t != start {
                    prev.insert(t.clone(), n.clone());
                    queue.push_back(t.clone());
                }
            }
        }
        out.push((cycle, comp.into_iter().collect()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, files: &[(&str, &str)]) {
        for (name, body) in files {
            let p = dir.join(name);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, body).unwrap();
        }
    }

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("modgraph-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn finds_a_cycle_through_use_groups_and_super() {
        let d = tmp("cycle");
        write(
            &d,
            &[
                ("lib.rs", "pub mod a;\npub mod b;\npub mod c;\n"),
                ("a.rs", "use crate::{b::{X, Y}, a as _};\n"),
                ("b/mod.rs", "pub mod inner;\n"),
                ("b/inner.rs", "pub fn f() { super::super::c::g(); }\n"),
                (
                    "c.rs",
                    "// crate::b is only a comment\nfn g() { crate::a::h(); }\n",
                ),
            ],
        );
        let err = check_acyclic("t", &d).unwrap_err().to_string();
        assert!(err.contains("import cycle a → b → c → a"), "{err}");
        assert!(err.contains("inner.rs:1"), "{err}");
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn test_code_is_not_part_of_the_flow() {
        let d = tmp("tests");
        write(
            &d,
            &[
                ("lib.rs", "pub mod a;\npub mod b;\n"),
                ("a/mod.rs", "#[cfg(test)]\nmod tests;\npub fn f() {}\n"),
                ("a/tests.rs", "use crate::b::g;\n"),
                (
                    "b.rs",
                    "pub fn g() { crate::a::f(); }\n#[cfg(test)]\nmod tests {\n    use crate::a;\n}\n",
                ),
            ],
        );
        check_acyclic("t", &d).unwrap();
        // The same reference outside the tests is a cycle.
        write(&d, &[("a/mod.rs", "pub fn f() { crate::b::g(); }\n")]);
        assert!(check_acyclic("t", &d).is_err());
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn parents_children_comments_and_strings_are_not_edges() {
        let d = tmp("clean");
        write(
            &d,
            &[
                ("lib.rs", "pub mod a;\npub mod b;\n"),
                (
                    "a/mod.rs",
                    "pub mod x;\npub use x::T;\nfn f() { crate::b::g(); }\n",
                ),
                ("a/x.rs", "use super::T; use crate::a::x;\n"),
                (
                    "b.rs",
                    "/* crate::a */ const S: &str = \"crate::a\"; const R: &str = r#\"crate::a\"#;\n",
                ),
            ],
        );
        check_acyclic("t", &d).unwrap();
        std::fs::remove_dir_all(&d).unwrap();
    }
}
