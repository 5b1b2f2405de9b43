//! The crate's module graph, read from the sources in `src/`: no dependency cycle between
//! modules, and each layer uses only the layers below it.
//!
//! This is the check `cargo modules dependencies --lib --acyclic` makes, without building
//! cargo-modules (and rust-analyzer) in CI. It reads the library's files (`src/main.rs`
//! is the binary, not the library), one module per file (`src/fs/data.rs` is `fs::data`,
//! `src/fs/mod.rs` is `fs`; an inline `mod x { .. }` counts as part of its file), and takes
//! as a dependency of a module every path it names into the crate: in `use` declarations
//! (`use crate::..`, `use super::..`, `use self::..`, and `use child::..` from a parent)
//! and inline in code (`crate::store::growth(..)`, `super::data::free_inode(..)`).
//! Comments, string and character literals and `#[cfg(test)]` items are not read.
//!
//! A path to an item resolves to the module that holds it: the longest prefix that is a
//! module, then through that module's `use` declarations when the next name is one it
//! imports. For cycles that goes through re-exports too, to the module defining the item,
//! as cargo-modules points a use at the item itself: `super::Errno` in `fs::namespace`,
//! with `pub use error::Errno` in `fs`, is a dependency on `fs::error`. For layers it
//! stops at a re-export, which makes the item part of the re-exporting module's
//! interface: `fs` may name `store::Oid` when `store` re-exports `pmem::Oid`, not
//! `pmem::Oid` itself.
//!
//! Parent and child: a module and its descendants are one tree, not two parts that depend
//! on each other. A parent declaring, calling or re-exporting its children (`fs` ->
//! `fs::data`) and a child using what its parent defines (`super::WarabiFs`) are edges
//! along that tree and are left out: cargo-modules too has the parent -> child edge in its
//! graph (`owns`) and points a child's `use super::Item` at the item, not back at the
//! parent, so the two never form a cycle on their own. Every other edge is lifted to the
//! two siblings it joins, below their closest common ancestor: `fs::data` ->
//! `fuse::ops` counts as `fs` -> `fuse`, `fs::data` -> `fs::namespace` stays as it is. A
//! cycle is then a strongly connected set of two or more sibling modules, at any depth.
//! This is stricter than cargo-modules, which sees the types in signatures and the names
//! a `use` brings in but not the paths inside function bodies.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::Path;

/// Layer rules: no module in the first subtree may depend on any in the others.
const LAYER_RULES: &[(&str, &[&str])] = &[
    ("pmem", &["store", "fs", "fuse"]),
    ("store", &["fs", "fuse"]),
    ("fs", &["fuse", "mount", "push", "pmem"]),
];

#[test]
fn no_cycle_between_modules() {
    let deps = Dependencies::of(&library_sources());
    let report = deps.cycle_report();
    assert!(report.is_empty(), "module dependency cycles:\n{report}");
}

#[test]
fn each_layer_uses_only_the_layers_below() {
    let deps = Dependencies::of(&library_sources());
    let report = deps.layer_report(LAYER_RULES);
    assert!(report.is_empty(), "layer violations:\n{report}");
}

/// Every library source file: (path relative to the crate root, text).
fn library_sources() -> Vec<(String, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    let mut dirs = vec![root.join("src")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("read src/") {
            let path = entry.expect("read src/").path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let relative = path
                    .strip_prefix(root)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                if relative != "src/main.rs" {
                    let text = std::fs::read_to_string(&path).expect("read source");
                    files.push((relative, text));
                }
            }
        }
    }
    assert!(files.len() > 10, "found only {} files in src/", files.len());
    files.sort();
    files
}

/// A module path from the crate root, e.g. `["fs", "data"]`; the root is empty.
type ModPath = Vec<String>;

fn display(module: &[String]) -> String {
    if module.is_empty() {
        "crate".to_string()
    } else {
        module.join("::")
    }
}

/// `src/fs/data.rs` -> `fs::data`, `src/fs/mod.rs` -> `fs`, `src/lib.rs` -> the root.
fn module_of_file(file: &str) -> ModPath {
    let inside = file
        .strip_prefix("src/")
        .and_then(|f| f.strip_suffix(".rs"))
        .unwrap_or_else(|| panic!("{file} is not a source file under src/"));
    let mut path: ModPath = inside.split('/').map(str::to_string).collect();
    if matches!(path.last().map(String::as_str), Some("mod" | "lib")) {
        path.pop();
    }
    path
}

// ---- Reading a file: blank out what is not code, then cut it into tokens ----

/// The text with every comment and string or character literal replaced by spaces,
/// keeping line breaks, so that what is left is code at its original line.
fn blank_comments_and_literals(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < chars.len() {
        let skip = not_code_length(&chars, i);
        if skip == 0 {
            out.push(chars[i]);
            i += 1;
        } else {
            for &c in &chars[i..i + skip] {
                out.push(if c == '\n' { '\n' } else { ' ' });
            }
            i += skip;
        }
    }
    out
}

/// How many characters from `i` are a comment or a literal (0: code).
fn not_code_length(chars: &[char], i: usize) -> usize {
    let at = |k: usize| chars.get(k).copied().unwrap_or('\0');
    let after_identifier = i > 0 && is_identifier_char(chars[i - 1]);
    match (at(i), at(i + 1)) {
        ('/', '/') => {
            (i..chars.len())
                .find(|&k| chars[k] == '\n')
                .unwrap_or(chars.len())
                - i
        }
        ('/', '*') => block_comment_length(chars, i),
        ('"', _) => quoted_length(chars, i),
        ('r', '"' | '#') if !after_identifier => raw_string_length(chars, i),
        ('b', 'r') if !after_identifier => match raw_string_length(chars, i + 1) {
            0 => 0,
            n => n + 1,
        },
        // '\n', '\'', '\u{..}': the escaped character, then up to the closing quote.
        ('\'', '\\') => {
            (i + 3..chars.len())
                .find(|&k| chars[k] == '\'')
                .map_or(chars.len(), |k| k + 1)
                - i
        }
        ('\'', _) if at(i + 2) == '\'' => 3,
        _ => 0,
    }
}

fn is_identifier_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// A `/* .. */` comment, which may nest.
fn block_comment_length(chars: &[char], start: usize) -> usize {
    let (mut depth, mut k) = (0, start);
    while k < chars.len() {
        match (chars[k], chars.get(k + 1)) {
            ('/', Some('*')) => (depth, k) = (depth + 1, k + 2),
            ('*', Some('/')) => {
                (depth, k) = (depth - 1, k + 2);
                if depth == 0 {
                    return k - start;
                }
            }
            _ => k += 1,
        }
    }
    chars.len() - start
}

/// A `"..."` literal with backslash escapes.
fn quoted_length(chars: &[char], start: usize) -> usize {
    let mut k = start + 1;
    while k < chars.len() {
        match chars[k] {
            '\\' => k += 2,
            '"' => return k + 1 - start,
            _ => k += 1,
        }
    }
    chars.len() - start
}

/// `r"..."`, `r#"..."#`, ...: the length, or 0 if `r` starts no raw string (`r#ident`).
fn raw_string_length(chars: &[char], start: usize) -> usize {
    let hashes = chars[start + 1..].iter().take_while(|&&c| c == '#').count();
    let open = start + 1 + hashes;
    if chars.get(open) != Some(&'"') {
        return 0;
    }
    let closing_hashes = vec!['#'; hashes];
    (open + 1..chars.len())
        .find(|&k| chars[k] == '"' && chars[k + 1..].starts_with(&closing_hashes))
        .map_or(chars.len(), |k| k + 1 + hashes)
        - start
}

#[derive(Clone, Debug, PartialEq)]
struct Token {
    text: String,
    line: usize,
}

/// Identifiers and keywords, `::`, and single punctuation characters; numbers are dropped.
fn tokens(code: &str) -> Vec<Token> {
    let mut out = Vec::new();
    for (index, line) in code.lines().enumerate() {
        let chars: Vec<char> = line.chars().collect();
        let mut i = 0;
        while i < chars.len() {
            let c = chars[i];
            let token_end = if is_identifier_char(c) {
                i + chars[i..]
                    .iter()
                    .take_while(|&&c| is_identifier_char(c))
                    .count()
            } else if c == ':' && chars.get(i + 1) == Some(&':') {
                i + 2
            } else {
                i + 1
            };
            if !c.is_whitespace() && !c.is_ascii_digit() {
                let text = chars[i..token_end].iter().collect();
                out.push(Token {
                    text,
                    line: index + 1,
                });
            }
            i = token_end;
        }
    }
    out
}

/// The tokens without any item under `#[cfg(test)]`: a test module, function or `use`.
fn without_test_items(tokens: Vec<Token>) -> Vec<Token> {
    const CFG_TEST: [&str; 7] = ["#", "[", "cfg", "(", "test", ")", "]"];
    let mut out = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        let is_cfg_test = CFG_TEST
            .iter()
            .enumerate()
            .all(|(k, t)| tokens.get(i + k).is_some_and(|x| x.text == *t));
        if is_cfg_test {
            i = item_end(&tokens, i + CFG_TEST.len());
        } else {
            out.push(tokens[i].clone());
            i += 1;
        }
    }
    out
}

/// Where the item starting at `start` ends: after its `;` or its closing brace.
fn item_end(tokens: &[Token], start: usize) -> usize {
    let mut depth = 0usize;
    for (k, token) in tokens.iter().enumerate().skip(start) {
        match token.text.as_str() {
            "{" => depth += 1,
            "}" if depth == 1 => {
                return k + 1 + usize::from(tokens.get(k + 1).is_some_and(|t| t.text == ";"))
            }
            "}" => depth = depth.saturating_sub(1),
            ";" if depth == 0 => return k + 1,
            _ => {}
        }
    }
    tokens.len()
}

// ---- Finding paths: `use` trees and inline paths ----

/// A path a module names, as written, with where it was written.
#[derive(Clone, Debug, PartialEq)]
struct NamedPath {
    /// The module it is written in, including inline modules (`mod x { .. }`).
    here: ModPath,
    segments: Vec<String>,
    /// The name a `use` brings into scope (`None` for a glob or an inline path).
    imported_as: Option<String>,
    /// A `pub use` (or `pub(..) use`): a re-export.
    public: bool,
    line: usize,
}

/// The paths a file names, and the inline modules it declares.
fn named_paths(file_module: &[String], text: &str) -> (Vec<NamedPath>, Vec<ModPath>) {
    let tokens = without_test_items(tokens(&blank_comments_and_literals(text)));
    let text_at = |k: usize| tokens.get(k).map_or("", |t| t.text.as_str());
    let mut paths = Vec::new();
    let mut inline_modules = Vec::new();
    // Inline modules open here, each with the brace depth outside it.
    let mut open_modules: Vec<(String, usize)> = Vec::new();
    let mut depth = 0;
    let mut i = 0;
    while i < tokens.len() {
        let here: ModPath = file_module
            .iter()
            .cloned()
            .chain(open_modules.iter().map(|(m, _)| m.clone()))
            .collect();
        let line = tokens[i].line;
        match text_at(i) {
            "use" if text_at(i + 1) != "<" => {
                let public = is_public(&tokens, i);
                let mut imports = Vec::new();
                i = use_tree(&tokens, i + 1, Vec::new(), &mut imports);
                for (segments, imported_as, line) in imports {
                    let here = here.clone();
                    paths.push(NamedPath {
                        here,
                        segments,
                        imported_as,
                        public,
                        line,
                    });
                }
            }
            // The start of a path (not `a::self`), and not `pub(in crate::a)`.
            "crate" | "super" | "self"
                if text_at(i + 1) == "::" && !matches!(text_at(i.wrapping_sub(1)), "::" | "in") =>
            {
                let segments;
                (segments, i) = inline_path(&tokens, i);
                paths.push(NamedPath {
                    here,
                    segments,
                    imported_as: None,
                    public: false,
                    line,
                });
            }
            "mod" if text_at(i + 2) == "{" => {
                open_modules.push((text_at(i + 1).to_string(), depth));
                let mut module = here;
                module.push(text_at(i + 1).to_string());
                inline_modules.push(module);
                i += 2;
            }
            "{" => {
                depth += 1;
                i += 1;
            }
            "}" => {
                depth -= 1;
                if open_modules
                    .last()
                    .is_some_and(|&(_, outside)| outside == depth)
                {
                    open_modules.pop();
                }
                i += 1;
            }
            _ => i += 1,
        }
    }
    (paths, inline_modules)
}

/// Whether the item at `i` is declared `pub` or `pub(..)`.
fn is_public(tokens: &[Token], i: usize) -> bool {
    let text_at = |k: usize| tokens.get(k).map_or("", |t| t.text.as_str());
    match text_at(i.wrapping_sub(1)) {
        "pub" => true,
        ")" => {
            let open = (0..i).rev().find(|&k| text_at(k) == "(");
            open.is_some_and(|k| text_at(k.wrapping_sub(1)) == "pub")
        }
        _ => false,
    }
}

/// The path starting at `i` (`super::data::free_inode`), and the index after it.
fn inline_path(tokens: &[Token], mut i: usize) -> (Vec<String>, usize) {
    let text_at = |k: usize| tokens.get(k).map_or("", |t| t.text.as_str());
    let mut segments = vec![text_at(i).to_string()];
    i += 1;
    while text_at(i) == "::" && text_at(i + 1).starts_with(is_identifier_char) {
        segments.push(text_at(i + 1).to_string());
        i += 2;
    }
    (segments, i)
}

/// One path a use tree imports: its segments, the name it takes in scope, its line.
type UseLeaf = (Vec<String>, Option<String>, usize);

/// Reads one use tree from `i` (`a::b::{c, d::e as f, g::*}`), appending each imported
/// path with the name it takes; returns the index after the tree (and after its `;`).
fn use_tree(
    tokens: &[Token],
    mut i: usize,
    mut prefix: Vec<String>,
    out: &mut Vec<UseLeaf>,
) -> usize {
    let text_at = |k: usize| tokens.get(k).map_or("", |t| t.text.as_str());
    let line_at = |k: usize| tokens.get(k).map_or(0, |t| t.line);
    if text_at(i) == "::" {
        i += 1; // `use ::name`: an external crate, read and dropped below
        prefix.push("::".to_string());
    }
    loop {
        match text_at(i) {
            "{" => {
                i += 1;
                while text_at(i) != "}" {
                    i = use_tree(tokens, i, prefix.clone(), out);
                    if text_at(i) == "," {
                        i += 1;
                    }
                }
                i += 1;
                break;
            }
            "*" => {
                out.push((prefix.clone(), None, line_at(i)));
                i += 1;
                break;
            }
            name if name.starts_with(is_identifier_char) => {
                let line = line_at(i);
                i += 1;
                if text_at(i) == "::" {
                    prefix.push(name.to_string());
                    i += 1;
                    continue;
                }
                let mut imported_as = if name == "self" {
                    prefix.last().cloned()
                } else {
                    Some(name.to_string())
                };
                if name != "self" {
                    prefix.push(name.to_string());
                }
                if text_at(i) == "as" {
                    imported_as = Some(text_at(i + 1).to_string());
                    i += 2;
                }
                out.push((prefix.clone(), imported_as, line));
                break;
            }
            other => panic!(
                "line {}: unexpected `{other}` in a use declaration",
                line_at(i)
            ),
        }
    }
    if text_at(i) == ";" {
        i += 1;
    }
    i
}

// ---- The graph ----

/// One use of another module: from, to, and where.
#[derive(Clone, Debug)]
struct Edge {
    from: ModPath,
    /// The module defining the item used.
    to: ModPath,
    /// The module whose interface the path goes through: where it stops at a `pub use`.
    through: ModPath,
    file: String,
    line: usize,
    path: String,
}

struct Dependencies {
    edges: Vec<Edge>,
}

impl Dependencies {
    /// The dependencies of every module of the crate whose sources are `files`.
    fn of(files: &[(String, String)]) -> Dependencies {
        let mut file_modules = BTreeSet::new();
        let mut modules = BTreeSet::new();
        let mut named = Vec::new();
        for (file, text) in files {
            let module = module_of_file(file);
            let (paths, inline_modules) = named_paths(&module, text);
            file_modules.insert(module.clone());
            modules.insert(module);
            modules.extend(inline_modules);
            named.extend(paths.into_iter().map(|p| (file.clone(), p)));
        }
        let crate_ = Crate {
            modules,
            file_modules,
            scopes: BTreeMap::new(),
        };
        let mut scopes: BTreeMap<ModPath, Scope> = BTreeMap::new();
        for (_, path) in &named {
            if let (Some(name), Some(absolute)) = (&path.imported_as, crate_.absolute(path)) {
                let import = Import {
                    path: absolute,
                    public: path.public,
                };
                scopes
                    .entry(path.here.clone())
                    .or_default()
                    .insert(name.clone(), import);
            }
        }
        let crate_ = Crate { scopes, ..crate_ };
        let edges = named
            .iter()
            .filter_map(|(file, path)| {
                let from = crate_.file_module(&path.here);
                let absolute = crate_.absolute(path)?;
                let to = crate_.defining_module(&absolute, Reexports::Follow);
                let through = crate_.defining_module(&absolute, Reexports::StopAt);
                (from != to).then(|| Edge {
                    from,
                    to,
                    through,
                    file: file.clone(),
                    line: path.line,
                    path: path.segments.join("::"),
                })
            })
            .collect();
        Dependencies { edges }
    }

    /// Each cycle with the uses that make it, or "" when there is none.
    fn cycle_report(&self) -> String {
        let lifted: Vec<(ModPath, ModPath, &Edge)> = self
            .edges
            .iter()
            .filter_map(|e| lift(e).map(|(a, b)| (a, b, e)))
            .collect();
        let mut graph: BTreeMap<&ModPath, BTreeSet<&ModPath>> = BTreeMap::new();
        for (a, b, _) in &lifted {
            graph.entry(a).or_default().insert(b);
            graph.entry(b).or_default();
        }
        let mut report = String::new();
        for component in strongly_connected(&graph)
            .into_iter()
            .filter(|c| c.len() > 1)
        {
            let names: Vec<String> = component.iter().map(|m| display(m)).collect();
            writeln!(report, "cycle between {}:", names.join(", ")).unwrap();
            for (a, b, edge) in lifted
                .iter()
                .filter(|(a, b, _)| component.contains(&a) && component.contains(&b))
            {
                writeln!(report, "  {}", describe(edge, a, b)).unwrap();
            }
        }
        report
    }

    /// Each use that breaks one of `rules`, or "" when there is none. A use counts
    /// against the module whose interface it goes through: an item a module re-exports
    /// (`pub use`) is part of that module's interface, wherever it is defined.
    fn layer_report(&self, rules: &[(&str, &[&str])]) -> String {
        let mut report = String::new();
        for &(layer, forbidden) in rules {
            for edge in &self.edges {
                let top = |m: &ModPath| m.first().cloned().unwrap_or_default();
                let used = top(&edge.through);
                if top(&edge.from) == layer && forbidden.contains(&used.as_str()) {
                    let uses = format!("{} -> {}", display(&edge.from), display(&edge.through));
                    let at = format!("{}:{}  {}", edge.file, edge.line, edge.path);
                    writeln!(report, "  {layer} must not use {used}: {uses}  {at}").unwrap();
                }
            }
        }
        report
    }
}

/// One edge of a cycle, as lifted (`a`, `b`), then the use itself and where it is.
fn describe(edge: &Edge, a: &ModPath, b: &ModPath) -> String {
    let direct = format!("{} -> {}", display(&edge.from), display(&edge.to));
    let arrow = if (a, b) == (&edge.from, &edge.to) {
        direct
    } else {
        format!("{} -> {} ({direct})", display(a), display(b))
    };
    format!("{arrow}  {}:{}  {}", edge.file, edge.line, edge.path)
}

/// The edge as one between the two siblings it joins, or `None` for an edge between a
/// module and one of its own ancestors (the tree itself).
fn lift(edge: &Edge) -> Option<(ModPath, ModPath)> {
    let common = edge
        .from
        .iter()
        .zip(&edge.to)
        .take_while(|(a, b)| a == b)
        .count();
    if common == edge.from.len() || common == edge.to.len() {
        return None;
    }
    Some((edge.from[..=common].to_vec(), edge.to[..=common].to_vec()))
}

/// Tarjan's strongly connected components of `graph`.
fn strongly_connected<'a>(
    graph: &BTreeMap<&'a ModPath, BTreeSet<&'a ModPath>>,
) -> Vec<Vec<&'a ModPath>> {
    struct Search<'a, 'g> {
        graph: &'g BTreeMap<&'a ModPath, BTreeSet<&'a ModPath>>,
        index: BTreeMap<&'a ModPath, usize>,
        low: BTreeMap<&'a ModPath, usize>,
        stack: Vec<&'a ModPath>,
        components: Vec<Vec<&'a ModPath>>,
    }
    impl<'a> Search<'a, '_> {
        fn visit(&mut self, node: &'a ModPath) {
            let index = self.index.len();
            self.index.insert(node, index);
            self.low.insert(node, index);
            self.stack.push(node);
            for &next in &self.graph[node] {
                if !self.index.contains_key(next) {
                    self.visit(next);
                    self.low.insert(node, self.low[node].min(self.low[next]));
                } else if self.stack.contains(&next) {
                    self.low.insert(node, self.low[node].min(self.index[next]));
                }
            }
            if self.low[node] == index {
                let at = self.stack.iter().position(|&m| m == node).unwrap();
                self.components.push(self.stack.split_off(at));
            }
        }
    }
    let mut search = Search {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        components: Vec::new(),
    };
    for &node in graph.keys() {
        if !search.index.contains_key(node) {
            search.visit(node);
        }
    }
    for component in &mut search.components {
        component.sort();
    }
    search.components
}

/// What resolving a path needs to know about the crate.
struct Crate {
    /// Every module, inline ones included.
    modules: BTreeSet<ModPath>,
    /// The modules that are files: the nodes of the graph.
    file_modules: BTreeSet<ModPath>,
    /// For each module, the names its `use` declarations bring in.
    scopes: BTreeMap<ModPath, Scope>,
}

/// The names a module's `use` declarations bring in.
type Scope = BTreeMap<String, Import>;

/// What one name a `use` brings in stands for.
struct Import {
    /// The absolute path it imports.
    path: Vec<String>,
    /// Re-exported (`pub use`).
    public: bool,
}

/// Whether resolving a path goes on through re-exports (`pub use`).
#[derive(Clone, Copy, PartialEq)]
enum Reexports {
    /// To the module that defines the item.
    Follow,
    /// To the module whose interface the path reaches the item through.
    StopAt,
}

impl Crate {
    /// The path from the crate root, or `None` for a path outside the crate (`std::..`).
    fn absolute(&self, path: &NamedPath) -> Option<Vec<String>> {
        let segments = &path.segments;
        let mut base = path.here.clone();
        let rest = match segments.first()?.as_str() {
            "crate" => {
                base.clear();
                &segments[1..]
            }
            "self" => &segments[1..],
            "super" => {
                let supers = segments.iter().take_while(|s| *s == "super").count();
                base.truncate(
                    base.len()
                        .checked_sub(supers)
                        .expect("super:: above the crate root"),
                );
                &segments[supers..]
            }
            child => {
                let mut module = base.clone();
                module.push(child.to_string());
                if !self.modules.contains(&module) {
                    return None; // an external crate, or a name that is not a module
                }
                &segments[..]
            }
        };
        base.extend(rest.iter().cloned());
        Some(base)
    }

    /// The file module holding what `path` names: its longest module prefix, followed
    /// through that module's imports when the next name is one of them.
    fn defining_module(&self, path: &[String], reexports: Reexports) -> ModPath {
        let mut path = path.to_vec();
        for _hop in 0..16 {
            let module = (0..=path.len())
                .rev()
                .map(|n| path[..n].to_vec())
                .find(|m| self.modules.contains(m))
                .unwrap_or_default();
            let import = path
                .get(module.len())
                .and_then(|name| self.scopes.get(&module)?.get(name));
            let Some(import) = import.filter(|i| !i.public || reexports == Reexports::Follow)
            else {
                return self.file_module(&module);
            };
            path = import
                .path
                .iter()
                .chain(&path[module.len() + 1..])
                .cloned()
                .collect();
        }
        panic!("imports of {} go round in a circle", path.join("::"))
    }

    /// The file a module (perhaps an inline one) is written in.
    fn file_module(&self, module: &[String]) -> ModPath {
        (0..=module.len())
            .rev()
            .map(|n| module[..n].to_vec())
            .find(|m| self.file_modules.contains(m))
            .unwrap_or_default()
    }
}

/// The reader on small crates written here: each test shows one rule can fail.
mod reader {
    use super::*;

    fn crate_of(files: &[(&str, &str)]) -> Dependencies {
        let files: Vec<(String, String)> = files
            .iter()
            .map(|(f, t)| (f.to_string(), t.to_string()))
            .collect();
        Dependencies::of(&files)
    }

    /// The edges as "from -> to @line", sorted.
    fn edges(files: &[(&str, &str)]) -> Vec<String> {
        let mut edges: Vec<String> = crate_of(files)
            .edges
            .iter()
            .map(|e| format!("{} -> {} @{}", display(&e.from), display(&e.to), e.line))
            .collect();
        edges.sort();
        edges
    }

    const LIB: (&str, &str) = ("src/lib.rs", "pub mod a;\npub mod b;\n");
    const B: (&str, &str) = ("src/b.rs", "pub fn g() {}\n");

    #[test]
    fn module_paths_follow_the_files() {
        assert_eq!(module_of_file("src/lib.rs"), Vec::<String>::new());
        assert_eq!(module_of_file("src/fs/data.rs"), ["fs", "data"]);
        assert_eq!(module_of_file("src/fs/mod.rs"), ["fs"]);
        assert_eq!(
            module_of_file("src/fuse/uring/abi.rs"),
            ["fuse", "uring", "abi"]
        );
    }

    #[test]
    fn a_use_and_an_inline_path_are_edges() {
        let a = (
            "src/a.rs",
            "use crate::b::g;\nfn f() {\n    crate::b::g();\n}\n",
        );
        assert_eq!(edges(&[LIB, a, B]), ["a -> b @1", "a -> b @3"]);
    }

    #[test]
    fn comments_are_not_edges() {
        let a = (
            "src/a.rs",
            "// crate::b::g\n\
             /// crate::b::g\n\
             /* crate::b /* nested */ crate::b */\n\
             fn f() { crate::b::g() } // and the code after each comment is read\n",
        );
        assert_eq!(edges(&[LIB, a, B]), ["a -> b @4"]);
    }

    #[test]
    fn string_literals_are_not_edges() {
        let a = (
            "src/a.rs",
            "const S: &str = \"crate::b::g \\\" crate::b\";\n\
             const R: &str = r#\"crate::b \" crate::b\"#;\n\
             const T: &str = \"\"; fn f() { crate::b::g() }\n",
        );
        assert_eq!(edges(&[LIB, a, B]), ["a -> b @3"]);
    }

    #[test]
    fn a_quote_character_or_a_lifetime_does_not_hide_the_code_after_it() {
        let a = (
            "src/a.rs",
            "fn f<'x>(s: &'x str) -> bool {\n\
             s.contains('\"') && s.contains('\\'')\n\
             }\n\
             use crate::b;\n",
        );
        assert_eq!(edges(&[LIB, a, B]), ["a -> b @4"]);
    }

    #[test]
    fn test_items_are_not_edges() {
        let a = (
            "src/a.rs",
            "#[cfg(test)]\n\
             mod tests {\n\
             use crate::b::g;\n\
             fn t() { crate::b::g(); }\n\
             }\n\
             #[cfg(test)]\n\
             use crate::b;\n\
             fn f() { crate::b::g(); }\n",
        );
        assert_eq!(edges(&[LIB, a, B]), ["a -> b @8"]);
    }

    #[test]
    fn use_trees_name_each_module_they_reach_at_its_line() {
        let lib = ("src/lib.rs", "pub mod a;\npub mod b;\npub mod c;\n");
        let a = (
            "src/a.rs",
            "use crate::{\n\
             b::g,\n\
             c::{self, d::*},\n\
             };\n",
        );
        let c = ("src/c/mod.rs", "pub mod d;\n");
        let d = ("src/c/d.rs", "pub fn h() {}\n");
        assert_eq!(
            edges(&[lib, a, B, c, d]),
            ["a -> b @2", "a -> c @3", "a -> c::d @3"]
        );
    }

    #[test]
    fn super_resolves_to_the_module_defining_the_item() {
        let lib = ("src/lib.rs", "pub mod p;\n");
        let p = (
            "src/p/mod.rs",
            "mod x;\n\
             mod y;\n\
             mod z;\n\
             pub struct Defined;\n\
             pub use y::Reexported;\n\
             use z::Imported as Renamed;\n",
        );
        let x = (
            "src/p/x.rs",
            "use super::Defined;\n\
             fn f() { super::Reexported::new(); super::Renamed::new(); }\n",
        );
        let y = ("src/p/y.rs", "pub struct Reexported;\n");
        let z = ("src/p/z.rs", "pub struct Imported;\n");
        assert_eq!(
            edges(&[lib, p, x, y, z]),
            [
                "p -> p::y @5",
                "p -> p::z @6",
                "p::x -> p @1",
                "p::x -> p::y @2",
                "p::x -> p::z @2"
            ]
        );
    }

    #[test]
    fn inline_modules_belong_to_their_file() {
        let a = (
            "src/a.rs",
            "mod inner {\n\
             pub fn f() { super::super::b::g() }\n\
             }\n\
             pub fn h() { crate::b::g() }\n",
        );
        assert_eq!(edges(&[LIB, a, B]), ["a -> b @2", "a -> b @4"]);
    }

    #[test]
    fn visibility_paths_and_raw_identifiers_are_not_edges_and_a_local_use_is() {
        let a = (
            "src/a.rs",
            "pub(in crate::b) fn f() {}\n\
             pub(crate) fn r#match() -> &'static str { r\"crate::b\" }\n\
             fn g() {\n\
             use crate::b::g;\n\
             }\n",
        );
        assert_eq!(edges(&[LIB, a, B]), ["a -> b @4"]);
    }

    #[test]
    fn every_cycle_is_reported_at_its_own_level() {
        let lib = ("src/lib.rs", "pub mod a;\npub mod b;\npub mod c;\n");
        let a = ("src/a.rs", "pub fn f() { crate::b::g() }\n");
        let b = ("src/b.rs", "pub fn g() { crate::a::f() }\n");
        let c = ("src/c/mod.rs", "mod x;\nmod y;\n");
        let x = ("src/c/x.rs", "pub fn f() { super::y::g() }\n");
        let y = ("src/c/y.rs", "pub fn g() { super::x::f() }\n");
        let report = crate_of(&[lib, a, b, c, x, y]).cycle_report();
        assert!(report.contains("cycle between a, b:"), "{report}");
        assert!(report.contains("cycle between c::x, c::y:"), "{report}");
        assert_eq!(report.matches("cycle between").count(), 2, "{report}");
    }

    #[test]
    fn external_paths_are_not_edges() {
        let a = (
            "src/a.rs",
            "use std::sync::Arc;\nuse dashmap::DashMap;\nfn f() { libc::getpid(); }\n",
        );
        assert_eq!(edges(&[LIB, a, B]), Vec::<String>::new());
    }

    #[test]
    fn two_siblings_using_each_other_are_a_cycle() {
        let a = ("src/a.rs", "pub fn f() { crate::b::g() }\n");
        let b = ("src/b.rs", "pub fn g() { crate::a::f() }\n");
        let report = crate_of(&[LIB, a, b]).cycle_report();
        assert!(report.contains("cycle between a, b:"), "{report}");
        assert!(
            report.contains("a -> b  src/a.rs:1  crate::b::g"),
            "{report}"
        );
        assert!(
            report.contains("b -> a  src/b.rs:1  crate::a::f"),
            "{report}"
        );
    }

    #[test]
    fn a_parent_and_its_child_using_each_other_are_no_cycle() {
        let lib = ("src/lib.rs", "pub mod p;\n");
        let p = (
            "src/p/mod.rs",
            "mod c;\npub use c::Child;\npub struct Parent;\nfn f() { c::make() }\n",
        );
        let c = (
            "src/p/c.rs",
            "use super::Parent;\npub struct Child;\npub fn make() { crate::p::Parent; }\n",
        );
        let deps = crate_of(&[lib, p, c]);
        assert_eq!(deps.edges.len(), 3, "{:?}", deps.edges);
        assert_eq!(deps.cycle_report(), "");
    }

    #[test]
    fn a_cycle_through_a_child_counts_for_its_parent() {
        let lib = ("src/lib.rs", "pub mod a;\npub mod b;\n");
        let a = ("src/a/mod.rs", "mod deep;\n");
        let deep = ("src/a/deep.rs", "use crate::b::g;\n");
        let b = ("src/b.rs", "pub fn g() { crate::a::f() }\n");
        let report = crate_of(&[lib, a, deep, b]).cycle_report();
        assert!(report.contains("cycle between a, b:"), "{report}");
        assert!(
            report.contains("a -> b (a::deep -> b)  src/a/deep.rs:1"),
            "{report}"
        );
    }

    #[test]
    fn a_layer_may_use_what_the_layer_below_re_exports_and_not_what_it_imports() {
        let lib = ("src/lib.rs", "pub mod fs;\npub mod pmem;\npub mod store;\n");
        let pmem = ("src/pmem.rs", "pub struct Oid;\npub struct Pool;\n");
        let store = (
            "src/store.rs",
            "pub use crate::pmem::Oid;\n\
             pub(crate) use crate::pmem::Pool as SharedPool;\n\
             use crate::pmem::Pool;\n",
        );
        let fs = (
            "src/fs.rs",
            "use crate::store::Oid;\n\
             use crate::store::SharedPool;\n\
             fn f() { crate::store::Pool::open(); }\n",
        );
        let deps = crate_of(&[lib, pmem, store, fs]);
        let report = deps.layer_report(&[("fs", &["pmem"])]);
        assert_eq!(
            report,
            "  fs must not use pmem: fs -> pmem  src/fs.rs:3  crate::store::Pool::open\n"
        );
        // The cycle check still sees where each item is defined.
        let to: Vec<String> = deps
            .edges
            .iter()
            .filter(|e| e.from == ["fs"])
            .map(|e| display(&e.to))
            .collect();
        assert_eq!(to, ["pmem", "pmem", "pmem"]);
    }

    #[test]
    fn a_use_against_the_layers_is_reported() {
        let lib = ("src/lib.rs", "pub mod fs;\npub mod store;\n");
        let fs = ("src/fs.rs", "use crate::store::Store;\n");
        let store = (
            "src/store.rs",
            "pub struct Store;\nfn f() { crate::fs::thing() }\n",
        );
        let report = crate_of(&[lib, fs, store]).layer_report(LAYER_RULES);
        assert_eq!(
            report,
            "  store must not use fs: store -> fs  src/store.rs:2  crate::fs::thing\n"
        );
    }
}
