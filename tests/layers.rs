//! The layering of `src/` (ARCHITECTURE.md) as a test: every module may use only the layers
//! below it, and no two files use each other, directly or around a loop.
//!
//! The graph is read from the source text: every path that starts with `crate::`, `super::` or
//! `self::` (grouped imports expanded, inline `mod x { … }` blocks followed for `super`), and
//! every path through a child module a file declares (`mod child;` … `child::X`). A path that
//! names an item a module re-exports (`pub use child::X`) leads to the file that defines it, so
//! a re-export cannot hide a cycle. Comments and string literals are ignored. Test code counts
//! for the layering (a test may not use a higher layer either); the cycle check leaves out
//! `#[cfg(test)]` code, so a module's tests may share fixtures with it, and the uses between a
//! folder's `mod.rs` and the files under it (one module spread over files).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

/// The top-level modules from the bottom up: each may use only those before it.
const LAYERS: &[&str] = &[
    "error", "util", "memory", "testing", "dsp", "models", "data", "store", "generate", "train",
    "eval", "engine", "audio", "demo", "cli", "ui",
];

type Module = Vec<String>;

struct Crate {
    files: BTreeMap<Module, String>,
    /// Modules compiled for tests only (declared `#[cfg(test)] mod x;`, and their children).
    test_modules: BTreeSet<Module>,
    /// `(module, name)` → the path the name is re-exported from.
    reexports: HashMap<(Module, String), Module>,
}

/// The source with comments and the contents of string and char literals removed.
fn strip(src: &str) -> String {
    let b = src.as_bytes();
    let mut out = String::with_capacity(src.len());
    let mut i = 0;
    while i < b.len() {
        if b[i..].starts_with(b"//") {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if b[i..].starts_with(b"/*") {
            let mut depth = 0;
            while i < b.len() {
                if b[i..].starts_with(b"/*") {
                    depth += 1;
                    i += 2;
                } else if b[i..].starts_with(b"*/") {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
        } else if b[i] == b'r'
            && (b.get(i + 1) == Some(&b'"') || b.get(i + 1) == Some(&b'#'))
            && (i == 0 || !(b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_'))
        {
            // Raw string r"…" or r#"…"#.
            let mut j = i + 1;
            let mut hashes = 0;
            while b.get(j) == Some(&b'#') {
                hashes += 1;
                j += 1;
            }
            if b.get(j) != Some(&b'"') {
                out.push('r');
                i += 1;
                continue;
            }
            j += 1;
            let close: Vec<u8> = std::iter::once(b'"')
                .chain(std::iter::repeat_n(b'#', hashes))
                .collect();
            while j < b.len() && !b[j..].starts_with(&close) {
                j += 1;
            }
            out.push_str("\"\"");
            i = j + close.len();
        } else if b[i] == b'"' {
            let mut j = i + 1;
            while j < b.len() && b[j] != b'"' {
                j += if b[j] == b'\\' { 2 } else { 1 };
            }
            out.push_str("\"\"");
            i = j + 1;
        } else if b[i] == b'\'' {
            // A char literal ('x', '\n', '\u{..}') — not a lifetime ('a).
            let end = if b.get(i + 1) == Some(&b'\\') {
                b[i + 2..]
                    .iter()
                    .position(|&c| c == b'\'')
                    .map(|p| i + 2 + p)
            } else if b.get(i + 2) == Some(&b'\'') {
                Some(i + 2)
            } else {
                std::str::from_utf8(&b[i + 1..])
                    .ok()
                    .and_then(|s| s.chars().next())
                    .filter(|c| c.len_utf8() > 1)
                    .map(|c| i + 1 + c.len_utf8())
                    .filter(|&e| b.get(e) == Some(&b'\''))
            };
            match end {
                Some(e) => {
                    out.push_str("' '");
                    i = e + 1;
                }
                None => {
                    out.push('\'');
                    i += 1;
                }
            }
        } else {
            let c = src[i..].chars().next().unwrap();
            out.push(c);
            i += c.len_utf8();
        }
    }
    out
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// The identifier starting at `i`, if any.
fn ident_at(s: &str, i: usize) -> Option<&str> {
    let end = s[i..]
        .find(|c: char| !is_ident(c))
        .map_or(s.len(), |e| i + e);
    (end > i).then(|| &s[i..end])
}

/// The index of the `}` closing the `{` at `open`.
fn closing(s: &str, open: usize) -> usize {
    let mut depth = 0;
    for (k, c) in s[open..].char_indices() {
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    return open + k;
                }
            }
            _ => {}
        }
    }
    s.len()
}

/// Splits a group's body at its top-level commas.
fn split_group(body: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut depth, mut start) = (0, 0);
    for (k, c) in body.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                out.push(body[start..k].trim());
                start = k + 1;
            }
            _ => {}
        }
    }
    out.push(body[start..].trim());
    out.into_iter().filter(|s| !s.is_empty()).collect()
}

/// `prefix` + one item of a `use` tree (`a::b`, `a::{b, c::d}`, `x as y`), as paths.
fn expand(prefix: &[String], item: &str) -> Vec<Module> {
    let item = item.trim();
    if let Some(open) = item.find('{') {
        let mut pre = prefix.to_vec();
        pre.extend(
            item[..open]
                .split("::")
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(String::from),
        );
        let close = closing(item, open);
        return split_group(&item[open + 1..close])
            .into_iter()
            .flat_map(|i| expand(&pre, i))
            .collect();
    }
    let item = item.split(" as ").next().unwrap_or(item);
    let mut p = prefix.to_vec();
    p.extend(
        item.split("::")
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from),
    );
    vec![p]
}

/// Inline `mod name { … }` blocks: `(open, close, name)`.
fn inline_mods(s: &str) -> Vec<(usize, usize, String)> {
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(k) = s[from..].find("mod ") {
        let at = from + k;
        from = at + 4;
        if at > 0 && s[..at].ends_with(|c: char| is_ident(c)) {
            continue;
        }
        let rest = &s[at + 4..];
        let Some(name) = ident_at(rest, rest.len() - rest.trim_start().len()) else {
            continue;
        };
        let after = at + 4 + (rest.len() - rest.trim_start().len()) + name.len();
        if s[after..].trim_start().starts_with('{') {
            let open = after + s[after..].find('{').unwrap();
            out.push((open, closing(s, open), name.to_string()));
        }
    }
    out
}

/// Child modules a file declares (`mod x;`).
fn declared_children(s: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for line in s.lines() {
        let l = line.trim();
        let l = l
            .strip_prefix("pub(crate) ")
            .or_else(|| l.strip_prefix("pub "))
            .unwrap_or(l);
        if let Some(rest) = l.strip_prefix("mod ") {
            if let Some(name) = rest.trim().strip_suffix(';') {
                if name.chars().all(is_ident) {
                    out.insert(name.to_string());
                }
            }
        }
    }
    out
}

/// What `#[cfg(test)]` marks in a file: the byte ranges of test-only items, and the child
/// modules declared test-only (`#[cfg(test)] mod tests;`).
fn test_only(s: &str) -> (Vec<(usize, usize)>, BTreeSet<String>) {
    let (mut ranges, mut children) = (Vec::new(), BTreeSet::new());
    let mut from = 0;
    while let Some(k) = s[from..].find("#[cfg(test)]") {
        let start = from + k;
        let mut i = start + "#[cfg(test)]".len();
        from = i;
        // Skip further attributes and whitespace up to the item.
        loop {
            let rest = &s[i..];
            let trimmed = rest.trim_start();
            i += rest.len() - trimmed.len();
            if trimmed.starts_with("#[") {
                i += trimmed.find(']').map_or(trimmed.len(), |e| e + 1);
            } else {
                break;
            }
        }
        let item = &s[i..];
        let decl = item
            .strip_prefix("pub(crate) ")
            .or_else(|| item.strip_prefix("pub "))
            .unwrap_or(item);
        if let Some(rest) = decl.strip_prefix("mod ") {
            let name = ident_at(rest, 0).unwrap_or("");
            if rest[name.len()..].trim_start().starts_with(';') {
                children.insert(name.to_string());
                continue;
            }
        }
        let end = match (item.find('{'), item.find(';')) {
            (Some(b), Some(c)) if c < b => i + c,
            (Some(b), _) => closing(s, i + b),
            (None, Some(c)) => i + c,
            (None, None) => s.len(),
        };
        ranges.push((start, end));
    }
    (ranges, children)
}

impl Crate {
    fn read(src: &Path) -> Self {
        let mut files = BTreeMap::new();
        let mut stack = vec![src.to_path_buf()];
        while let Some(dir) = stack.pop() {
            for e in std::fs::read_dir(&dir).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    stack.push(p);
                } else if p.extension().is_some_and(|x| x == "rs") {
                    let rel = p.strip_prefix(src).unwrap().with_extension("");
                    let mut m: Module = rel
                        .iter()
                        .map(|c| c.to_string_lossy().to_string())
                        .collect();
                    if m.last().is_some_and(|l| l == "mod") {
                        m.pop();
                    }
                    if m == ["lib"] || m == ["main"] {
                        continue;
                    }
                    files.insert(m, strip(&std::fs::read_to_string(&p).unwrap()));
                }
            }
        }
        let mut reexports = HashMap::new();
        for (m, text) in &files {
            for marker in ["pub use ", "pub(crate) use ", "pub(super) use "] {
                let mut from = 0;
                while let Some(k) = text[from..].find(marker) {
                    let start = from + k + marker.len();
                    let end = start + text[start..].find(';').unwrap_or(0);
                    from = end.max(start);
                    let spec = &text[start..end];
                    let (base, spec) = match spec.split_once("::") {
                        Some(("crate", r)) => (Vec::new(), r),
                        Some(("self", r)) => (m.clone(), r),
                        Some(("super", r)) => (m[..m.len() - 1].to_vec(), r),
                        _ => (m.clone(), spec),
                    };
                    for p in expand(&base, spec) {
                        if let Some(name) = p.last() {
                            reexports.insert((m.clone(), name.clone()), p.clone());
                        }
                    }
                }
            }
        }
        let mut test_modules = BTreeSet::new();
        for (m, text) in &files {
            for child in test_only(text).1 {
                let mut c = m.clone();
                c.push(child);
                test_modules.insert(c);
            }
        }
        let under_test = |m: &Module| (1..=m.len()).any(|k| test_modules.contains(&m[..k]));
        let test_modules = files.keys().filter(|m| under_test(m)).cloned().collect();
        Self {
            files,
            test_modules,
            reexports,
        }
    }

    /// Every path a file names (absolute module paths, item names at the end), and whether it
    /// is named in test-only code.
    fn paths(&self, m: &Module) -> Vec<(Module, bool)> {
        let s = &self.files[m];
        let blocks = inline_mods(s);
        let tests = test_only(s).0;
        let in_test = |pos: usize| tests.iter().any(|&(a, b)| a <= pos && pos < b);
        let module_at = |pos: usize| {
            let mut cur = m.clone();
            for (open, close, name) in &blocks {
                if *open < pos && pos < *close {
                    cur.push(name.clone());
                }
            }
            cur
        };
        let mut out = Vec::new();
        let children = declared_children(s);
        let mut i = 0;
        while i < s.len() {
            let Some(word) = ident_at(s, i) else {
                i += s[i..].chars().next().map_or(1, char::len_utf8);
                continue;
            };
            let preceded =
                i > 0 && (s[..i].ends_with("::") || s[..i].ends_with(|c: char| is_ident(c)));
            let next = i + word.len();
            let roots = ["crate", "super", "self"];
            let starts_path = s[next..].starts_with("::")
                && !preceded
                && (roots.contains(&word) || (children.contains(word) && module_at(i) == *m));
            if !starts_path {
                i = next;
                continue;
            }
            let cur = module_at(i);
            let test = in_test(i);
            let mut base: Module = match word {
                "crate" => Vec::new(),
                "self" => cur.clone(),
                "super" => cur[..cur.len().saturating_sub(1)].to_vec(),
                child => {
                    let mut b = m.clone();
                    b.push(child.to_string());
                    b
                }
            };
            // Walk the rest of the path: `::ident` segments, then maybe a `{ group }`.
            let mut j = next;
            loop {
                if !s[j..].starts_with("::") {
                    break;
                }
                let k = j + 2;
                if s[k..].starts_with('{') {
                    let close = closing(s, k);
                    for item in split_group(&s[k + 1..close]) {
                        out.extend(expand(&base, item).into_iter().map(|p| (p, test)));
                    }
                    j = close + 1;
                    base.clear();
                    break;
                }
                match ident_at(s, k) {
                    Some("super") => {
                        base.pop();
                        j = k + 5;
                    }
                    Some(seg) => {
                        base.push(seg.to_string());
                        j = k + seg.len();
                    }
                    None => break,
                }
            }
            if !base.is_empty() {
                out.push((base, test));
            }
            i = j.max(next);
        }
        out
    }

    /// The file a path leads to: its longest module prefix, following re-exports.
    fn resolve(&self, path: &[String], depth: usize) -> Option<Module> {
        for k in (1..=path.len()).rev() {
            let m = path[..k].to_vec();
            if !self.files.contains_key(&m) {
                continue;
            }
            if let Some(name) = path.get(k) {
                if let Some(target) = self.reexports.get(&(m.clone(), name.clone())) {
                    if depth < 8 && target.as_slice() != path {
                        if let Some(r) = self.resolve(target, depth + 1) {
                            return Some(r);
                        }
                    }
                }
            }
            return Some(m);
        }
        None
    }

    /// Which files each file uses. For the cycle check (`tests` false) test-only code and
    /// modules are left out (a test may share fixtures with the module it tests), and so are
    /// the uses between a folder's `mod.rs` and its own files (a folder is one module: its
    /// `mod.rs` maps its files, and they may use what it declares).
    fn edges(&self, tests: bool) -> BTreeMap<Module, BTreeSet<Module>> {
        let nested = |a: &Module, b: &Module| a.starts_with(b) || b.starts_with(a);
        self.files
            .keys()
            .filter(|m| tests || !self.test_modules.contains(*m))
            .map(|m| {
                let to = self
                    .paths(m)
                    .iter()
                    .filter(|(_, in_test)| tests || !in_test)
                    .filter_map(|(p, _)| self.resolve(p, 0))
                    .filter(|t| t != m && !t.is_empty())
                    .filter(|t| tests || !self.test_modules.contains(t))
                    .filter(|t| tests || !nested(m, t))
                    .collect();
                (m.clone(), to)
            })
            .collect()
    }
}

fn name(m: &Module) -> String {
    m.join("::")
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Strongly connected components of more than one file (Tarjan).
fn cycles(edges: &BTreeMap<Module, BTreeSet<Module>>) -> Vec<Vec<Module>> {
    struct T<'a> {
        edges: &'a BTreeMap<Module, BTreeSet<Module>>,
        index: HashMap<Module, usize>,
        low: HashMap<Module, usize>,
        stack: Vec<Module>,
        on: BTreeSet<Module>,
        out: Vec<Vec<Module>>,
    }
    fn visit(t: &mut T<'_>, v: &Module) {
        let n = t.index.len();
        t.index.insert(v.clone(), n);
        t.low.insert(v.clone(), n);
        t.stack.push(v.clone());
        t.on.insert(v.clone());
        let next: Vec<Module> = t.edges.get(v).into_iter().flatten().cloned().collect();
        for w in next {
            if !t.index.contains_key(&w) {
                visit(t, &w);
                let l = t.low[&v.clone()].min(t.low[&w]);
                t.low.insert(v.clone(), l);
            } else if t.on.contains(&w) {
                let l = t.low[v].min(t.index[&w]);
                t.low.insert(v.clone(), l);
            }
        }
        if t.low[v] == t.index[v] {
            let mut comp = Vec::new();
            while let Some(w) = t.stack.pop() {
                t.on.remove(&w);
                let done = &w == v;
                comp.push(w);
                if done {
                    break;
                }
            }
            if comp.len() > 1 {
                comp.sort();
                t.out.push(comp);
            }
        }
    }
    let mut t = T {
        edges,
        index: HashMap::new(),
        low: HashMap::new(),
        stack: Vec::new(),
        on: BTreeSet::new(),
        out: Vec::new(),
    };
    for v in edges.keys() {
        if !t.index.contains_key(v) {
            visit(&mut t, v);
        }
    }
    t.out
}

#[test]
fn every_top_level_module_has_a_layer() {
    let c = Crate::read(&src());
    let tops: BTreeSet<&str> = c.files.keys().map(|m| m[0].as_str()).collect();
    let unknown: Vec<&&str> = tops.iter().filter(|t| !LAYERS.contains(t)).collect();
    assert!(
        unknown.is_empty(),
        "top-level modules missing from LAYERS (and from ARCHITECTURE.md): {unknown:?}"
    );
    let arch =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("ARCHITECTURE.md"))
            .expect("ARCHITECTURE.md exists");
    for layer in LAYERS {
        assert!(
            arch.contains(&format!("`{layer}`")),
            "ARCHITECTURE.md does not describe `{layer}`"
        );
    }
}

#[test]
fn no_module_uses_a_layer_above_it() {
    let c = Crate::read(&src());
    let rank = |m: &Module| LAYERS.iter().position(|l| *l == m[0]).unwrap_or(usize::MAX);
    let mut upward = Vec::new();
    for (from, to) in c.edges(true) {
        for t in to {
            if rank(&t) > rank(&from) {
                upward.push(format!("{} -> {}", name(&from), name(&t)));
            }
        }
    }
    assert!(
        upward.is_empty(),
        "imports from a higher layer:\n{}",
        upward.join("\n")
    );
}

#[test]
fn no_two_files_use_each_other() {
    let c = Crate::read(&src());
    let edges = c.edges(false);
    let found: Vec<String> = cycles(&edges)
        .iter()
        .map(|comp| {
            let set: BTreeSet<&Module> = comp.iter().collect();
            let arrows: Vec<String> = comp
                .iter()
                .flat_map(|a| {
                    edges[a]
                        .iter()
                        .filter(|b| set.contains(b))
                        .map(move |b| format!("  {} -> {}", name(a), name(b)))
                })
                .collect();
            format!("cycle:\n{}", arrows.join("\n"))
        })
        .collect();
    assert!(found.is_empty(), "{}", found.join("\n"));
}

/// The checker itself: a planted upward import and a planted cycle are found, through a grouped
/// import, a re-export and an inline test module's `super`.
#[test]
fn the_checker_finds_what_it_should() {
    let tmp = std::env::temp_dir().join(format!("tunelab-layers-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let write = |p: &str, s: &str| {
        let p = tmp.join(p);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, s).unwrap();
    };
    write("lib.rs", "pub mod models; pub mod data;");
    write("models/mod.rs", "pub mod a; pub mod b; pub use b::Thing;");
    // a -> b through the re-export; b -> a through a grouped import.
    write(
        "models/a.rs",
        "use crate::models::Thing; // crate::data::X in a comment\n",
    );
    write(
        "models/b.rs",
        "use crate::{models::a::f, util::g};\npub struct Thing;\n#[cfg(test)]\nmod tests { use super::Thing; const S: &str = \"crate::data::Y\"; }",
    );
    // models (below data) naming data: upward.
    write("data/mod.rs", "pub mod c;");
    write("data/c.rs", "pub fn c() { crate::models::a::f(); }");
    write("models/d.rs", "");
    let c = Crate::read(&tmp);
    let edges = c.edges(true);
    let m = |s: &str| s.split("::").map(String::from).collect::<Module>();
    assert!(
        edges[&m("models::a")].contains(&m("models::b")),
        "{edges:?}"
    );
    assert!(
        edges[&m("models::b")].contains(&m("models::a")),
        "{edges:?}"
    );
    assert!(
        !edges[&m("models::a")].iter().any(|t| t[0] == "data"),
        "comments are ignored"
    );
    assert!(
        !edges[&m("models::b")].iter().any(|t| t[0] == "data"),
        "strings are ignored"
    );
    assert_eq!(cycles(&edges), vec![vec![m("models::a"), m("models::b")]]);
    assert!(edges[&m("data::c")].contains(&m("models::a")));
    std::fs::write(tmp.join("models/d.rs"), "fn d() { crate::data::c::c(); }").unwrap();
    let c = Crate::read(&tmp);
    assert!(
        c.edges(true)[&m("models::d")].contains(&m("data::c")),
        "an upward use is seen"
    );
    // Test-only code is part of the layering, not of the cycle check.
    std::fs::write(
        tmp.join("models/b.rs"),
        "pub struct Thing;\n#[cfg(test)]\nmod tests { use crate::models::a::f; }",
    )
    .unwrap();
    let c = Crate::read(&tmp);
    assert!(c.edges(true)[&m("models::b")].contains(&m("models::a")));
    assert!(!c.edges(false)[&m("models::b")].contains(&m("models::a")));
    assert!(cycles(&c.edges(false)).is_empty());
    let _ = std::fs::remove_dir_all(&tmp);
}
