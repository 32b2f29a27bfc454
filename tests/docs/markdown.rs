//! What the docs say, read out of their Markdown: the command lines of their shell blocks, their
//! TOML blocks, and the configuration keys their inline code names.

/// One document's shell commands and TOML blocks, in order.
pub struct Extracted {
    pub commands: Vec<String>,
    pub toml_blocks: Vec<String>,
    pub key_refs: Vec<String>,
}

pub fn extract(markdown: &str) -> Extracted {
    let mut commands = Vec::new();
    let mut toml_blocks = Vec::new();
    let mut prose = String::new();
    let mut fence: Option<(String, Vec<&str>)> = None;
    for line in markdown.lines() {
        let trimmed = line.trim_start();
        match (&mut fence, trimmed.strip_prefix("```")) {
            (None, Some(language)) => fence = Some((language.trim().to_owned(), Vec::new())),
            (Some(_), Some(_)) => {
                let (language, lines) = fence.take().unwrap();
                match language.as_str() {
                    "sh" | "bash" | "shell" => commands.extend(shell_commands(&lines)),
                    "toml" => toml_blocks.push(lines.join("\n")),
                    _ => {}
                }
            }
            (Some((_, lines)), None) => lines.push(line),
            (None, None) => {
                prose.push_str(line);
                prose.push('\n');
            }
        }
    }
    assert!(fence.is_none(), "a fenced block is never closed");
    Extracted {
        commands,
        toml_blocks,
        key_refs: key_refs(&prose),
    }
}

/// The command lines of a shell block: continuation lines (`\`) joined, comments dropped.
fn shell_commands(lines: &[&str]) -> Vec<String> {
    let mut commands = Vec::new();
    let mut pending = String::new();
    for line in lines {
        let line = strip_comment(line).trim();
        if line.is_empty() && pending.is_empty() {
            continue;
        }
        match line.strip_suffix('\\') {
            Some(head) => {
                pending.push_str(head.trim_end());
                pending.push(' ');
            }
            None => {
                pending.push_str(line);
                commands.push(std::mem::take(&mut pending).trim().to_owned());
            }
        }
    }
    assert!(
        pending.is_empty(),
        "a shell block ends in a continuation: {pending}"
    );
    commands.retain(|c| !c.is_empty());
    commands
}

/// `cmd   # why` → `cmd`; a `#` inside a word (`#repo=…`) or quotes is not a comment.
fn strip_comment(line: &str) -> &str {
    let mut quote = None;
    let mut previous = ' ';
    for (at, c) in line.char_indices() {
        match (quote, c) {
            (None, '\'' | '"') => quote = Some(c),
            (Some(q), _) if c == q => quote = None,
            (None, '#') if previous.is_whitespace() => return &line[..at],
            _ => {}
        }
        previous = c;
    }
    line
}

/// The top-level sections of the configuration type, which a key reference starts with.
const SECTIONS: &[&str] = &[
    "server",
    "database",
    "github",
    "docker",
    "limits",
    "pools",
    "priority",
    "scheduling",
    "quotas",
];

/// Configuration keys named in the inline code of `prose`, in the config's own path syntax
/// (`database.fleet`, `pools[].max_runners`, `[[quotas]]`), plus the environment's
/// (`RUNNERHUB__POOLS__0__MAX_RUNNERS=4`) turned into the same syntax.
pub fn key_refs(prose: &str) -> Vec<String> {
    // Splitting at every backtick puts inline code at the odd positions; a double-backtick
    // span only adds empty pieces, which keeps the parity.
    let spans = prose.split('`').skip(1).step_by(2);
    let mut keys = Vec::new();
    for span in spans {
        for token in span.split(|c: char| c.is_whitespace() || matches!(c, '=' | ',' | '(' | ')')) {
            let token = token.trim_end_matches([':', ';', '.']);
            if let Some(env) = token.strip_prefix("RUNNERHUB__") {
                if !env.contains('<') && !env.is_empty() {
                    keys.push(env_to_key(env));
                }
            } else if let Some(key) = config_key(token) {
                keys.push(key);
            }
        }
    }
    keys
}

/// `section.key…` or a table header `[section]` / `[[section.sub]]`, when it starts with a section.
fn config_key(token: &str) -> Option<String> {
    let header = token.starts_with('[') && token.ends_with(']');
    let path = token.trim_matches(|c| c == '[' || c == ']');
    let first = path.split(['.', '[']).next()?;
    if !SECTIONS.contains(&first) || (!header && !path.contains('.')) {
        return None;
    }
    let well_formed = path.chars().all(|c| {
        c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '.' | '[' | ']')
    });
    well_formed.then(|| {
        if header {
            token.to_owned()
        } else {
            path.to_owned()
        }
    })
}

/// `POOLS__0__MAX_RUNNERS` → `pools[0].max_runners`.
fn env_to_key(env: &str) -> String {
    let mut key = String::new();
    for part in env.split("__") {
        if part.chars().all(|c| c.is_ascii_digit()) {
            key.push_str(&format!("[{part}]"));
        } else {
            if !key.is_empty() {
                key.push('.');
            }
            key.push_str(&part.to_ascii_lowercase());
        }
    }
    key
}

#[test]
fn shell_blocks_give_whole_commands_without_comments() {
    let text = "x\n```sh\n.ci/run    # all of it\n           # more comment\n\
                a --b \\\n    --c d   # why\nexport A=1 B=2\n```\n";
    assert_eq!(
        extract(text).commands,
        vec![".ci/run", "a --b --c d", "export A=1 B=2"]
    );
}

#[test]
fn key_references_are_found_in_inline_code_only() {
    let prose = "`database.fleet = true`, `pools[0].memory`, ``key `priority.rules[].score`: x``, \
                 `[[quotas]]`, `[scheduling] fair_share`, `RUNNERHUB__POOLS__0__MAX_RUNNERS=4`, \
                 `RUNNERHUB__<SECTION>__<KEY>`, `runnerhub.instance`, database.outside_code";
    assert_eq!(
        key_refs(prose),
        vec![
            "database.fleet",
            "pools[0].memory",
            "priority.rules[].score",
            "[[quotas]]",
            "[scheduling]",
            "pools[0].max_runners",
        ]
    );
}

/// The targets of the relative links of `markdown` (`docs/api.md`, `#limits`,
/// `operations.md#upgrade`), outside code.
pub fn relative_links(markdown: &str) -> Vec<String> {
    let mut links = Vec::new();
    let mut fenced = false;
    for line in markdown.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced {
            continue;
        }
        for (_, rest) in line
            .match_indices("](")
            .map(|(at, _)| line.split_at(at + 2))
        {
            let Some(target) = rest.split(')').next() else {
                continue;
            };
            if !target.contains("://") && !target.is_empty() {
                links.push(target.to_owned());
            }
        }
    }
    links
}

/// GitHub's anchors of the headings of `markdown`: lower case, punctuation dropped, spaces
/// to hyphens (`## Live view: \`GET /ws\`` → `live-view-get-ws`).
pub fn heading_anchors(markdown: &str) -> Vec<String> {
    let mut fenced = false;
    let mut anchors = Vec::new();
    for line in markdown.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
        } else if !fenced && line.starts_with('#') {
            let title = line.trim_start_matches('#').trim();
            let anchor: String = title
                .to_lowercase()
                .chars()
                .filter(|c| c.is_alphanumeric() || matches!(c, ' ' | '-' | '_'))
                .map(|c| if c == ' ' { '-' } else { c })
                .collect();
            anchors.push(anchor);
        }
    }
    anchors
}

#[test]
fn links_and_anchors_are_read_as_github_makes_them() {
    let text = "## Live view: `GET /ws` and the dashboard `GET /`\n\
                see [a](docs/api.md#x), [b](#live), [c](https://example.com)\n";
    assert_eq!(relative_links(text), vec!["docs/api.md#x", "#live"]);
    assert_eq!(
        heading_anchors(text),
        vec!["live-view-get-ws-and-the-dashboard-get-"]
    );
}
