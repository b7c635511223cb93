//! The configuration reference (docs/configuration.md) and the config
//! structs stay in step: every field the reference documents is a field
//! the gateway accepts in that table, and every field a table accepts is
//! documented. The accepted fields come from the config parser itself
//! (`deny_unknown_fields`: an unknown key is refused with the list of the
//! known ones), so nothing here restates the structs.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use tickergate::config::Config;

/// The reference: docs/configuration.md.
fn reference() -> (PathBuf, String) {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs/configuration.md");
    let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    (p, text)
}

/// A TOML table a field belongs to: `[server]`, `[[auth.keys]]`, or a feed
/// kind (`[[feeds]]` with `kind = "sim"`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Table {
    Plain(String),
    Array(String),
    Feed(String),
}

impl Table {
    /// A config holding `key = value` in this table.
    fn toml(&self, key: &str, value: &str) -> String {
        match self {
            Table::Plain(t) => format!("[{t}]\n{key} = {value}\n"),
            Table::Array(t) => format!("[[{t}]]\n{key} = {value}\n"),
            Table::Feed(k) => format!("[[feeds]]\nkind = \"{k}\"\n{key} = {value}\n"),
        }
    }
}

/// The tables a line names: a heading or a lead line whose first
/// backticked text is `[table]` or `[[table]]`, or a `kind = "x"` (one or
/// several kinds) inside `[[feeds]]`.
fn tables_named(line: &str) -> Vec<Table> {
    let t = line.trim_start_matches('#').trim();
    if !t.starts_with('`') {
        return Vec::new();
    }
    let kinds: Vec<String> = t
        .split("kind = ")
        .nth(1)
        .map(|rest| {
            rest.split('`')
                .next()
                .unwrap_or("")
                .split('|')
                .map(|k| k.trim().trim_matches('"').to_string())
                .filter(|k| !k.is_empty())
                .collect()
        })
        .unwrap_or_default();
    if !kinds.is_empty() && (t.starts_with("`kind") || t.contains("[[feeds]]")) {
        return kinds.into_iter().map(Table::Feed).collect();
    }
    let first = t.split('`').nth(1).unwrap_or("");
    if let Some(inner) = first.strip_prefix("[[").and_then(|s| s.strip_suffix("]]")) {
        vec![Table::Array(inner.to_string())]
    } else if let Some(inner) = first.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
        vec![Table::Plain(inner.to_string())]
    } else {
        Vec::new()
    }
}

/// The documented fields of every table: the backticked first cell of
/// each table row, under the last table a heading or lead line named.
fn documented(text: &str) -> BTreeMap<Table, BTreeSet<String>> {
    let mut out: BTreeMap<Table, BTreeSet<String>> = BTreeMap::new();
    let mut current: Vec<Table> = Vec::new();
    for line in text.lines() {
        let named = tables_named(line);
        if !named.is_empty() {
            current = named;
            continue;
        }
        if line.starts_with("## ") {
            current.clear();
            continue;
        }
        let Some(cell) = line.strip_prefix("| `") else {
            continue;
        };
        let Some(field) = cell.split('`').next() else {
            continue;
        };
        if field.is_empty() || !field.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            continue;
        }
        for t in &current {
            out.entry(t.clone()).or_default().insert(field.to_string());
        }
    }
    out
}

fn parse_error(toml: &str) -> Option<String> {
    Config::from_toml(toml, Path::new("probe.toml"))
        .err()
        .map(|e| e.to_string())
}

/// The fields a table accepts, from the parser's refusal of an unknown
/// one; `None` where it does not list them (tables that take a feed's
/// normalizer settings besides their own).
fn accepted(t: &Table) -> Option<BTreeSet<String>> {
    let e = parse_error(&t.toml("zz_not_a_field", "{}"))?;
    assert!(e.contains("unknown field `zz_not_a_field`"), "{t:?}: {e}");
    let list = e
        .split("expected one of ")
        .nth(1)
        .or_else(|| e.split("expected ").nth(1))?;
    let names: BTreeSet<String> = list
        .split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect();
    (!names.is_empty()).then_some(names)
}

#[test]
fn every_documented_field_exists_and_every_field_is_documented() {
    let (path, text) = reference();
    let docs = documented(&text);
    for t in [
        Table::Plain("server".into()),
        Table::Plain("session".into()),
        Table::Plain("auth".into()),
        Table::Plain("cluster".into()),
        Table::Feed("sim".into()),
        Table::Feed("binance".into()),
    ] {
        assert!(
            docs.contains_key(&t),
            "{}: no table for {t:?}",
            path.display()
        );
    }
    let mut checked = 0;
    for (table, fields) in &docs {
        for f in fields {
            if f == "kind" {
                continue;
            }
            if let Some(e) = parse_error(&table.toml(f, "{}")) {
                assert!(
                    !e.contains(&format!("unknown field `{f}`")),
                    "{}: `{f}` is documented under {table:?} but the gateway does not accept it: {e}",
                    path.display()
                );
            }
            checked += 1;
        }
        if let Some(known) = accepted(table) {
            for k in known {
                if k == "kind" {
                    continue;
                }
                // A field that is a table of its own is documented under
                // its own heading (`tls` as `[server.tls]`).
                let sub = |name: String| {
                    let own = match table {
                        Table::Plain(t) | Table::Array(t) => format!("{t}.{k}"),
                        Table::Feed(_) => k.clone(),
                    };
                    docs.contains_key(&Table::Plain(own.clone()))
                        || docs.contains_key(&Table::Array(own))
                        || fields.contains(&name)
                };
                assert!(
                    sub(k.clone()),
                    "{}: the gateway accepts `{k}` in {table:?}, the reference does not document it",
                    path.display()
                );
            }
        }
    }
    assert!(
        checked > 60,
        "only {checked} fields found: is the format as expected?"
    );
}
