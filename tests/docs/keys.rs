//! Whether a configuration key the docs name is one the configuration type has, asked of the
//! type itself: every struct of `runnerhub::config` refuses unknown fields.

use runnerhub::config::Config;
use toml::{Table, Value};

/// `Ok` when `key` (`database.fleet`, `pools[0].memory`, `priority.rules[].score`, `[scheduling]`,
/// `[[quotas]]`) exists. A configuration holding only that key is deserialized: an unknown key
/// is refused by name, while the probe value's type may be wrong for the key (that error
/// means the key exists).
pub fn exists(key: &str) -> Result<(), String> {
    let (path, leaf) = match key.strip_prefix('[') {
        Some(header) => (header.trim_matches(['[', ']']), Value::Table(Table::new())),
        None => (key, Value::String("probe".to_owned())),
    };
    let mut parts: Vec<(&str, bool)> = path
        .split('.')
        .map(|part| match part.split_once('[') {
            Some((name, _)) => (name, true),
            None => (part, false),
        })
        .collect();
    if key.starts_with("[[") {
        parts.last_mut().expect("a header names a table").1 = true;
    }
    match nest(&parts, leaf).try_into::<Config>() {
        Err(error) if error.to_string().contains("unknown field") => {
            Err(format!("`{key}` is not a configuration key: {error}"))
        }
        _ => Ok(()),
    }
}

fn nest(parts: &[(&str, bool)], leaf: Value) -> Value {
    let Some(((name, is_array), rest)) = parts.split_first() else {
        return leaf;
    };
    let inner = nest(rest, leaf);
    let value = if *is_array {
        Value::Array(vec![inner])
    } else {
        inner
    };
    Value::Table(Table::from_iter([(name.to_string(), value)]))
}

/// Every key of the shipped example (`config/runnerhub.toml`), commented-out ones included, in
/// the docs' syntax: `server.listen`, `pools[].labels`, `priority.rules[].score`, `quotas[].…`.
pub fn example_keys(example: &str) -> Vec<String> {
    let mut prefix = String::new();
    let mut keys = Vec::new();
    for line in example.lines() {
        let line = line.trim();
        let line = line.strip_prefix('#').map_or(line, str::trim);
        if let Some(header) = line.strip_prefix("[[").and_then(|l| l.strip_suffix("]]")) {
            prefix = format!("{header}[].");
        } else if let Some(header) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            prefix = format!("{header}.");
        } else if let Some((name, _)) = line.split_once(" = ") {
            let name = name.trim();
            if !prefix.is_empty() && name.chars().all(|c| c.is_ascii_lowercase() || c == '_') {
                keys.push(format!("{prefix}{name}"));
            }
        }
    }
    keys.dedup();
    keys
}

#[test]
fn the_key_check_knows_keys_from_misspellings() {
    for key in [
        "server.listen",
        "database.fleet",
        "pools[].max_runners",
        "pools[0].memory",
        "priority.rules[].repositories",
        "[scheduling]",
        "[[quotas]]",
        "[[priority.rules]]",
    ] {
        assert_eq!(exists(key), Ok(()), "{key}");
    }
    for key in [
        "server.listen_address",
        "database.fleets",
        "pools[].max_runner",
        "priority.rules[].repository",
        "[schedule]",
        "[[quota]]",
    ] {
        assert!(exists(key).is_err(), "{key} passed as a key");
    }
}
