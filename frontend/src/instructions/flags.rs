//! Per-instruction flag checking, with BuildKit's rules (`BFlags`): every flag must be known to
//! the instruction; `--name=value` for string flags, `--name` or `--name=true|false` for boolean
//! ones; a flag given twice is an error except for list flags (`--mount`, `--exclude`).

use std::collections::BTreeMap;

use crate::diagnostic::Diagnostic;
use crate::parser::Node;

/// What kind of value a flag takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Bool,
    String,
    Strings,
}

/// A flag an instruction accepts.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Spec {
    pub name: &'static str,
    pub kind: Kind,
}

pub(crate) const fn flag(name: &'static str, kind: Kind) -> Spec {
    Spec { name, kind }
}

/// The checked flags of one instruction.
#[derive(Debug, Default)]
pub(crate) struct Flags {
    strings: BTreeMap<&'static str, String>,
    bools: BTreeMap<&'static str, bool>,
    lists: BTreeMap<&'static str, Vec<String>>,
    /// Position of each flag among the node's flag words (the last one, for list flags).
    positions: BTreeMap<&'static str, usize>,
}

impl Flags {
    pub fn string(&self, name: &str) -> Option<String> {
        self.strings.get(name).cloned()
    }
    pub fn bool(&self, name: &str) -> bool {
        self.bools.get(name).copied().unwrap_or(false)
    }
    pub fn list(&self, name: &str) -> Vec<String> {
        self.lists.get(name).cloned().unwrap_or_default()
    }
    /// A boolean flag's value, `None` when it was not given.
    pub fn opt_bool(&self, name: &str) -> Option<bool> {
        self.bools.get(name).copied()
    }
    /// The index of flag `name` among the node's flags, for `Node::diagnostic_on_flag`
    /// (`usize::MAX`, which points at the keyword, when it was not given).
    pub fn position(&self, name: &str) -> usize {
        self.positions.get(name).copied().unwrap_or(usize::MAX)
    }
}

/// Checks `node`'s flags against `specs`.
pub(crate) fn check(node: &Node, specs: &[Spec]) -> Result<Flags, Diagnostic> {
    let mut flags = Flags::default();
    let mut seen: Vec<&str> = Vec::new();
    for (index, word) in node.flags.iter().enumerate() {
        let body = word.text.strip_prefix("--").unwrap_or(&word.text);
        let (name, value) = match body.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (body, None),
        };
        let Some(spec) = specs.iter().find(|s| s.name == name) else {
            let keyword = node.keyword.to_uppercase();
            let mut d =
                node.diagnostic_on_flag(format!("Unknown flag `--{name}` for {keyword}"), index);
            d.expected = Some(expected_list(specs, name));
            return Err(d);
        };
        if spec.kind != Kind::Strings && seen.contains(&spec.name) {
            return Err(
                node.diagnostic_on_flag(format!("Duplicate flag specified: `--{name}`"), index)
            );
        }
        seen.push(spec.name);
        flags.positions.insert(spec.name, index);
        match (spec.kind, value) {
            (Kind::Bool, None) => {
                flags.bools.insert(spec.name, true);
            }
            (Kind::Bool, Some(v)) => {
                let parsed = match v.to_ascii_lowercase().as_str() {
                    "true" => true,
                    "false" => false,
                    "" => {
                        return Err(node.diagnostic_on_flag(
                            format!("Missing a value on flag: `--{name}`"),
                            index,
                        ))
                    }
                    _ => {
                        return Err(node
                            .diagnostic_on_flag(
                                format!("Expecting boolean value for flag `--{name}`, not `{v}`"),
                                index,
                            )
                            .expected("`true` or `false`"))
                    }
                };
                flags.bools.insert(spec.name, parsed);
            }
            (Kind::String | Kind::Strings, None) => {
                return Err(node
                    .diagnostic_on_flag(format!("Missing a value on flag: `--{name}`"), index)
                    .expected(format!("`--{name}=VALUE`")))
            }
            (Kind::String, Some(v)) => {
                flags.strings.insert(spec.name, v.to_string());
            }
            (Kind::Strings, Some(v)) => {
                flags
                    .lists
                    .entry(spec.name)
                    .or_default()
                    .push(v.to_string());
            }
        }
    }
    Ok(flags)
}

fn expected_list(specs: &[Spec], given: &str) -> String {
    if specs.is_empty() {
        return "no flags on this instruction".into();
    }
    let names: Vec<String> = specs.iter().map(|s| format!("`--{}`", s.name)).collect();
    let names_only: Vec<&str> = specs.iter().map(|s| s.name).collect();
    match closest(&names_only, given) {
        Some(name) => format!("`--{name}`? (flags accepted: {})", names.join(", ")),
        None => format!("one of {}", names.join(", ")),
    }
}

/// The candidate nearest to `given` when it is close enough (edit distance <= 2) to suggest.
pub(crate) fn closest<'a>(candidates: &[&'a str], given: &str) -> Option<&'a str> {
    candidates
        .iter()
        .map(|c| (edit_distance(c, given), *c))
        .min()
        .filter(|(d, _)| *d <= 2)
        .map(|(_, c)| c)
}

/// Levenshtein distance, for "did you mean" suggestions.
pub(crate) fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}
