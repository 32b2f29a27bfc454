//! Hooks named by received deliveries: GitHub sends `X-GitHub-Hook-ID` and
//! `X-GitHub-Hook-Installation-Target-Type` with each one, so a hook created by hand (or by
//! `hooks install` on another machine) is known after its first delivery. The webhook handler
//! notes them here (in memory, no write on the request path); the redelivery task stores the
//! new ones at its next pass, and a restart learns them again from the next delivery.

use std::collections::HashSet;
use std::sync::Mutex;

use chrono::Utc;
use http::HeaderMap;

use crate::github::HookOwner;
use crate::store::KnownHook;

/// Distinct hooks remembered at most (each is a few bytes; this only bounds a flood).
const MAX_SIGHTINGS: usize = 10_000;

#[derive(Default)]
pub struct HookSightings {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// `(kind, owner, hook id)` of every hook noted since start.
    seen: HashSet<(String, String, i64)>,
    /// Those not handed to [`HookSightings::drain`] yet.
    fresh: Vec<KnownHook>,
}

impl HookSightings {
    /// Notes the hook of a genuine delivery for `repository` (`owner/name`, from the payload).
    pub fn note(&self, headers: &HeaderMap, repository: Option<&str>) {
        let Some(hook) = hook_of(headers, repository) else {
            return;
        };
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if inner.seen.len() >= MAX_SIGHTINGS {
            return;
        }
        let key = (hook.kind.clone(), hook.owner.clone(), hook.hook_id);
        if inner.seen.insert(key) {
            inner.fresh.push(hook);
        }
    }

    /// The hooks noted since the last call.
    pub fn drain(&self) -> Vec<KnownHook> {
        std::mem::take(&mut self.inner.lock().unwrap_or_else(|e| e.into_inner()).fresh)
    }
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name)?.to_str().ok().map(str::trim)
}

/// The hook a delivery's headers name, with the owner its deliveries are listed under.
fn hook_of(headers: &HeaderMap, repository: Option<&str>) -> Option<KnownHook> {
    let hook_id: i64 = header(headers, "X-GitHub-Hook-ID")?.parse().ok()?;
    if hook_id <= 0 {
        return None;
    }
    let kind = header(headers, "X-GitHub-Hook-Installation-Target-Type")?;
    let owner = match kind {
        "repository" => HookOwner::repository(repository?)?,
        // An organization hook's repository events carry the repository; its owner is the org.
        "organization" => HookOwner::organization(repository?.split('/').next()?)?,
        "integration" => HookOwner::App,
        _ => return None,
    };
    Some(KnownHook {
        kind: owner.kind().into(),
        owner: owner.name().into(),
        // The App's hook is listed without an id.
        hook_id: if owner == HookOwner::App { 0 } else { hook_id },
        source: "received".into(),
        first_seen_at: Utc::now(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn notes_each_hook_once_with_its_owner() {
        let sightings = HookSightings::default();
        let repo = headers(&[
            ("X-GitHub-Hook-ID", "42"),
            ("X-GitHub-Hook-Installation-Target-Type", "repository"),
        ]);
        sightings.note(&repo, Some("acme/api"));
        sightings.note(&repo, Some("acme/api"));
        let org = headers(&[
            ("X-GitHub-Hook-ID", "7"),
            ("X-GitHub-Hook-Installation-Target-Type", "organization"),
        ]);
        sightings.note(&org, Some("acme/web"));
        let app = headers(&[
            ("X-GitHub-Hook-ID", "9"),
            ("X-GitHub-Hook-Installation-Target-Type", "integration"),
        ]);
        sightings.note(&app, None);
        sightings.note(&headers(&[("X-GitHub-Hook-ID", "x")]), Some("acme/api"));
        let noted: Vec<_> = sightings
            .drain()
            .into_iter()
            .map(|h| (h.kind, h.owner, h.hook_id))
            .collect();
        assert_eq!(
            noted,
            vec![
                ("repository".into(), "acme/api".into(), 42),
                ("organization".into(), "acme".into(), 7),
                ("integration".into(), String::new(), 0),
            ]
        );
        assert!(sightings.drain().is_empty());
        sightings.note(&repo, Some("acme/api"));
        assert!(sightings.drain().is_empty(), "already noted");
    }
}
