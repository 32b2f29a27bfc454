//! Error messages about secret keys, written without the secret.
//!
//! serde quotes the offending value (`invalid type: string "tok…", expected a sequence`) and
//! the TOML parser prints the offending line: both are logged at ERROR at start and on SIGHUP, so
//! a secret typed in the wrong shape would end up in the journal. Errors at a secret key keep the
//! key and serde's `expected …` clause; syntax errors keep the position and the parser's message,
//! never the line.

/// Keys whose values are secrets (or hold one, like a database URL's password).
const SECRET_KEYS: &[&str] = &[
    "server.api_tokens",
    "github.webhook_secrets",
    "github.token",
    "database.url",
];

/// Whether `path` (as serde_path_to_error writes it: `server.api_tokens[1]`) is or is under a
/// secret key.
pub(super) fn is_secret_key(path: &str) -> bool {
    SECRET_KEYS.iter().any(|key| {
        path.strip_prefix(key)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with(['[', '.']))
    })
}

/// serde's message without the value it quotes: `invalid type (value not shown: a secret key),
/// expected a sequence`.
pub(super) fn secret_type_message(message: &str) -> String {
    let kind = match message.split_once(':') {
        Some((kind @ ("invalid type" | "invalid value" | "invalid length"), _)) => kind,
        _ => "invalid value",
    };
    // The real clause follows the quoted value, so the last `, expected ` is serde's own.
    match message.rfind(", expected ") {
        Some(at) => format!(
            "{kind} (the value is not shown: this key holds a secret){}",
            &message[at..]
        ),
        None => format!("{kind} (the value is not shown: this key holds a secret)"),
    }
}

/// A TOML syntax error as `line L, column C: message`, without the source line (which may hold
/// a secret). The parser's message names what it expected, not the text it found.
pub(super) fn syntax_message(text: &str, error: &toml::de::Error) -> String {
    let message = error.message().trim().replace('\n', "; ");
    match error.span() {
        Some(span) => {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
            format!("line {line}, column {column}: {message}")
        }
        None => message,
    }
}
