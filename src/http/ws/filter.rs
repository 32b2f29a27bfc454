//! The connect query of `GET /ws` and the subscription filter.

use serde_json::{Value, json};

use crate::events::EventKind;

/// What a client receives: repositories and types (`None`: all).
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct Filter {
    pub(super) repositories: Option<Vec<String>>,
    pub(super) types: Option<Vec<String>>,
}

impl Filter {
    pub(super) fn matches(&self, kind: &str, repository: Option<&str>) -> bool {
        let type_ok = self
            .types
            .as_ref()
            .is_none_or(|t| t.iter().any(|k| k == kind));
        let repo_ok = match (&self.repositories, repository) {
            (Some(wanted), Some(repo)) => wanted.iter().any(|r| r == repo),
            _ => true,
        };
        type_ok && repo_ok
    }

    pub(super) fn describe(&self) -> Value {
        json!({"repository": self.repositories, "type": self.types})
    }
}

/// Parses a comma-separated list; empty means "no filter".
pub(super) fn list(value: &str) -> Option<Vec<String>> {
    let items: Vec<String> = value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    (!items.is_empty()).then_some(items)
}

pub(super) fn check_types(types: &Option<Vec<String>>) -> Result<(), String> {
    for t in types.iter().flatten() {
        if EventKind::parse(t).is_none() {
            let known: Vec<&str> = EventKind::ALL.iter().map(|k| k.as_str()).collect();
            return Err(format!("unknown type `{t}`; use {}", known.join(",")));
        }
    }
    Ok(())
}

/// A parsed connect request.
pub(super) struct Request {
    pub(super) filter: Filter,
    pub(super) since: Option<i64>,
}

pub(super) fn parse_query(query: Option<&str>) -> Result<Request, String> {
    let mut request = Request {
        filter: Filter::default(),
        since: None,
    };
    for (key, value) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        match key.as_ref() {
            "repository" => request.filter.repositories = list(&value),
            "type" => request.filter.types = list(&value),
            "since" => {
                let since = value
                    .parse::<i64>()
                    .ok()
                    .filter(|s| *s >= 0)
                    .ok_or_else(|| format!("since `{value}` is not a seq (integer >= 0)"))?;
                request.since = Some(since);
            }
            // Read by `query_token`, before the rest is parsed.
            "token" => {}
            other => {
                return Err(format!(
                    "unknown parameter `{other}`; use repository, type, since, token"
                ));
            }
        }
    }
    check_types(&request.filter.types)?;
    Ok(request)
}

/// The `token=` of a connect query, read on its own: a valid token must be honoured even when
/// another parameter is bad, so that the refusal names that parameter (4400), not the token.
pub(super) fn query_token(query: Option<&str>) -> Option<String> {
    form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .find(|(key, _)| key == "token")
        .map(|(_, value)| value.into_owned())
}

/// Close reasons are limited to 123 bytes by the protocol.
pub(super) fn truncate_reason(reason: &str) -> &str {
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    &reason[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_pass_repositoryless_events_and_match_types() {
        let f = Filter {
            repositories: Some(vec!["acme/api".into()]),
            types: Some(vec!["job".into(), "pool".into()]),
        };
        assert!(f.matches("job", Some("acme/api")));
        assert!(!f.matches("job", Some("acme/web")));
        assert!(f.matches("pool", None));
        assert!(!f.matches("webhook", Some("acme/api")));
        assert!(Filter::default().matches("anything", None));
    }

    #[test]
    fn query_parsing_names_what_is_wrong() {
        let r = parse_query(Some("repository=a/b,%20c/d&type=job&since=5&token=t")).unwrap();
        assert_eq!(
            r.filter.repositories,
            Some(vec!["a/b".into(), "c/d".into()])
        );
        assert_eq!(r.since, Some(5));
        assert_eq!(
            query_token(Some("colour=red&token=t%2Bu")).as_deref(),
            Some("t+u")
        );
        assert!(
            parse_query(Some("type=jobs"))
                .err()
                .unwrap()
                .contains("jobs")
        );
        assert!(
            parse_query(Some("since=-1"))
                .err()
                .unwrap()
                .contains("since")
        );
        assert!(parse_query(Some("foo=1")).err().unwrap().contains("foo"));
        assert!(parse_query(None).unwrap().filter == Filter::default());
    }

    #[test]
    fn close_reasons_fit_the_protocol_limit() {
        let long = "é".repeat(100);
        assert!(truncate_reason(&long).len() <= 123);
    }
}
