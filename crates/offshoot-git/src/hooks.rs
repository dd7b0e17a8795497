//! Webhook payloads of GitHub and GitLab, made into one normalized event, and their
//! authentication (GitHub's HMAC-SHA256 signature, GitLab's token). Pure: no I/O.
//!
//! Everything taken from a payload is checked: commits are full hexadecimal ids, ref names are
//! bounded and free of control characters and `..`, label lists are bounded.

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// Longest ref name, label or repository name taken from a payload.
const MAX_NAME: usize = 255;
/// Most labels taken from a payload.
const MAX_LABELS: usize = 100;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    Github,
    Gitlab,
}

impl Provider {
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::Github => "github",
            Provider::Gitlab => "gitlab",
        }
    }
}

/// What happened in the repository.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum GitEvent {
    /// A branch or tag now points at `commit`; `None` when it was deleted.
    Push {
        ref_name: String,
        commit: Option<String>,
    },
    PullRequest(PullRequest),
    /// A comment approving a pull request from a fork (`/offshoot approve`), by someone the host
    /// says belongs to the repository (GitHub: an owner, member or collaborator).
    Approve {
        number: u64,
        by: String,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PrAction {
    Opened,
    Reopened,
    /// New commits on the head branch.
    Synchronize,
    /// Closed or merged.
    Closed,
    /// Its labels changed.
    Labeled,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PullRequest {
    pub provider: Provider,
    pub action: PrAction,
    pub number: u64,
    pub head_branch: String,
    pub head_commit: String,
    /// Every label the pull request carries now.
    pub labels: Vec<String>,
    /// GitHub: `owner/name` of the base repository; GitLab: the target project's id.
    pub repo: String,
    /// The pull request's page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// The fork it comes from (`owner/name`, or `a deleted fork`): its code is not trusted until
    /// approved, and its head is fetched from [`PullRequest::head_ref`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fork: Option<String>,
}

impl PullRequest {
    /// A stable key for the pull request: `github:owner/name#12`.
    pub fn key(&self) -> String {
        format!("{}:{}#{}", self.provider.as_str(), self.repo, self.number)
    }

    /// The ref the base repository keeps the pull request's head at: `refs/pull/N/head`
    /// (GitHub) or `refs/merge-requests/N/head` (GitLab). A fork's branches are not the
    /// repository's: its head is fetched from there.
    pub fn head_ref(&self) -> String {
        match self.provider {
            Provider::Github => format!("refs/pull/{}/head", self.number),
            Provider::Gitlab => format!("refs/merge-requests/{}/head", self.number),
        }
    }
}

/// The comment that approves a pull request from a fork (its first line).
pub const APPROVE_COMMAND: &str = "/offshoot approve";

/// The label that approves a pull request from a fork (only those who may label it can).
pub const APPROVE_LABEL: &str = "offshoot-approved";

/// Whether `name` is a ref where a host keeps a pull request's head (see
/// [`PullRequest::head_ref`]).
pub fn is_pull_ref(name: &str) -> bool {
    let number =
        name.strip_prefix("refs/pull/").or_else(|| name.strip_prefix("refs/merge-requests/")).and_then(|r| r.strip_suffix("/head"));
    // Any number a payload may carry (a `u64`: the parsers take no other).
    number.is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()) && n.parse::<u64>().is_ok())
}

/// A payload understood, or why it asks for nothing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Parsed {
    Event(GitEvent),
    Ignored(String),
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{event} payload: {message}")]
pub struct PayloadError {
    pub event: String,
    pub message: String,
}

/// Whether `header` (`sha256=<hex>`) is the HMAC-SHA256 of `body` under `secret`; compared in
/// constant time.
pub fn verify_github(secret: &[u8], body: &[u8], header: Option<&str>) -> bool {
    let Some(given_hex) = header.and_then(|h| h.trim().strip_prefix("sha256=")) else { return false };
    let Ok(given) = hex::decode(given_hex) else { return false };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) else { return false };
    mac.update(body);
    mac.verify_slice(&given).is_ok()
}

/// The `X-Hub-Signature-256` value GitHub sends for `body`.
pub fn sign_github(secret: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(body);
    let bytes = mac.finalize().into_bytes();
    format!("sha256={}", hex::encode(bytes))
}

/// Whether GitLab's `X-Gitlab-Token` equals the secret; compared in constant time.
pub fn verify_gitlab(secret: &str, header: Option<&str>) -> bool {
    header.is_some_and(|h| !secret.is_empty() && bool::from(h.as_bytes().ct_eq(secret.as_bytes())))
}

struct Reader<'a> {
    event: &'a str,
}

impl Reader<'_> {
    fn err(&self, message: impl Into<String>) -> PayloadError {
        PayloadError { event: self.event.to_owned(), message: message.into() }
    }

    fn get<'v>(&self, v: &'v Value, path: &str) -> Result<&'v Value, PayloadError> {
        let mut cur = v;
        for part in path.split('.') {
            cur = cur.get(part).filter(|x| !x.is_null()).ok_or_else(|| self.err(format!("`{path}` is missing")))?;
        }
        Ok(cur)
    }

    fn str<'v>(&self, v: &'v Value, path: &str) -> Result<&'v str, PayloadError> {
        self.get(v, path)?.as_str().ok_or_else(|| self.err(format!("`{path}` is not a string")))
    }

    fn name(&self, v: &Value, path: &str) -> Result<String, PayloadError> {
        let s = self.str(v, path)?;
        check_name(s).map_err(|m| self.err(format!("`{path}`: {m}")))?;
        Ok(s.to_owned())
    }

    fn commit(&self, v: &Value, path: &str) -> Result<String, PayloadError> {
        let s = self.str(v, path)?;
        if is_commit(s) { Ok(s.to_ascii_lowercase()) } else { Err(self.err(format!("`{path}` is not a commit id"))) }
    }

    fn number(&self, v: &Value, path: &str) -> Result<u64, PayloadError> {
        self.get(v, path)?.as_u64().ok_or_else(|| self.err(format!("`{path}` is not a number")))
    }

    /// A repository id: a number or a bounded name.
    fn repo(&self, v: &Value, path: &str) -> Result<String, PayloadError> {
        match self.get(v, path)? {
            Value::Number(n) => Ok(n.to_string()),
            _ => self.name(v, path),
        }
    }

    fn labels(&self, list: Option<&Value>, key: &str) -> Result<Vec<String>, PayloadError> {
        let Some(list) = list.and_then(Value::as_array) else { return Ok(Vec::new()) };
        if list.len() > MAX_LABELS {
            return Err(self.err(format!("more than {MAX_LABELS} labels")));
        }
        let mut out = Vec::new();
        for l in list {
            let name = self.name(l, key)?;
            if !out.contains(&name) {
                out.push(name);
            }
        }
        Ok(out)
    }
}

/// A full commit id (SHA-1 or SHA-256), not the all-zero id of a deleted ref.
fn is_commit(s: &str) -> bool {
    (s.len() == 40 || s.len() == 64) && s.bytes().all(|b| b.is_ascii_hexdigit()) && s.bytes().any(|b| b != b'0')
}

/// A ref, branch, label or repository name as a payload may carry it.
fn check_name(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err("empty".into());
    }
    if s.len() > MAX_NAME {
        return Err(format!("longer than {MAX_NAME} bytes"));
    }
    if s.chars().any(char::is_control) {
        return Err("contains a control character".into());
    }
    if s.contains("..") {
        return Err("contains `..`".into());
    }
    Ok(())
}

fn parse_json(event: &str, body: &[u8]) -> Result<Value, PayloadError> {
    serde_json::from_slice(body).map_err(|e| PayloadError { event: event.to_owned(), message: format!("not JSON: {e}") })
}

/// A GitHub delivery: `event` is the `X-GitHub-Event` header.
pub fn parse_github(event: &str, body: &[u8]) -> Result<Parsed, PayloadError> {
    let r = Reader { event };
    match event {
        "ping" => Ok(Parsed::Ignored("ping: the webhook is set up".into())),
        "push" => {
            let v = parse_json(event, body)?;
            let ref_name = r.name(&v, "ref")?;
            let deleted = v.get("deleted").and_then(Value::as_bool).unwrap_or(false);
            let commit = if deleted { None } else { Some(r.commit(&v, "after")?) };
            push(ref_name, commit)
        }
        "pull_request" => {
            let v = parse_json(event, body)?;
            let action = match r.str(&v, "action")? {
                "opened" => PrAction::Opened,
                "reopened" => PrAction::Reopened,
                "synchronize" => PrAction::Synchronize,
                "closed" => PrAction::Closed,
                "labeled" | "unlabeled" => PrAction::Labeled,
                other => return Ok(Parsed::Ignored(format!("pull_request action `{other}` asks for nothing"))),
            };
            let pr = r.get(&v, "pull_request")?;
            // From a fork (or a fork since deleted: `head.repo` null).
            let base = r.name(&v, "repository.full_name")?;
            let fork = match pr.get("head").and_then(|h| h.get("repo")) {
                Some(head_repo) => {
                    let from = head_repo.get("full_name").and_then(Value::as_str);
                    (from != Some(base.as_str())).then(|| from.filter(|f| check_name(f).is_ok()).unwrap_or("a deleted fork").to_owned())
                }
                None => None,
            };
            Ok(Parsed::Event(GitEvent::PullRequest(PullRequest {
                provider: Provider::Github,
                action,
                number: r.number(&v, "number").or_else(|_| r.number(pr, "number"))?,
                head_branch: r.name(pr, "head.ref")?,
                head_commit: r.commit(pr, "head.sha")?,
                labels: r.labels(pr.get("labels"), "name")?,
                repo: r.name(&v, "repository.full_name")?,
                url: pr.get("html_url").and_then(Value::as_str).filter(|u| check_name(u).is_ok()).map(str::to_owned),
                fork,
            })))
        }
        "issue_comment" => {
            let v = parse_json(event, body)?;
            if r.str(&v, "action")? != "created" || v.get("issue").and_then(|i| i.get("pull_request")).is_none_or(Value::is_null) {
                return Ok(Parsed::Ignored("a comment that is not a new one on a pull request asks for nothing".into()));
            }
            let text = r.str(&v, "comment.body")?;
            if text.lines().next().map(str::trim) != Some(APPROVE_COMMAND) {
                return Ok(Parsed::Ignored(format!("a comment asks for nothing unless its first line is `{APPROVE_COMMAND}`")));
            }
            let number = r.number(&v, "issue.number")?;
            let by = r.name(&v, "comment.user.login")?;
            // GitHub says how the author is related to the repository; only its own may approve.
            let association = v.get("comment").and_then(|c| c.get("author_association")).and_then(Value::as_str).unwrap_or("NONE");
            if !matches!(association, "OWNER" | "MEMBER" | "COLLABORATOR") {
                return Ok(Parsed::Ignored(format!(
                    "`{by}` may not approve pull request #{number}: only an owner, member or collaborator of the repository may (GitHub says `{association}`)"
                )));
            }
            Ok(Parsed::Event(GitEvent::Approve { number, by }))
        }
        other => Ok(Parsed::Ignored(format!("`{other}` events ask for nothing"))),
    }
}

/// A GitLab delivery: `event` is the `X-Gitlab-Event` header.
pub fn parse_gitlab(event: &str, body: &[u8]) -> Result<Parsed, PayloadError> {
    let r = Reader { event };
    match event {
        "Push Hook" | "Tag Push Hook" => {
            let v = parse_json(event, body)?;
            let ref_name = r.name(&v, "ref")?;
            let after = r.str(&v, "after")?;
            let commit = if is_commit(after) { Some(after.to_ascii_lowercase()) } else { None };
            if commit.is_none() && after.bytes().any(|b| b != b'0') {
                return Err(r.err("`after` is not a commit id"));
            }
            push(ref_name, commit)
        }
        "Merge Request Hook" => {
            let v = parse_json(event, body)?;
            let attrs = r.get(&v, "object_attributes")?;
            let label_change = v.get("changes").and_then(|c| c.get("labels")).is_some();
            let action = match r.str(attrs, "action")? {
                "open" => PrAction::Opened,
                "reopen" => PrAction::Reopened,
                "close" | "merge" => PrAction::Closed,
                "update" if attrs.get("oldrev").is_some_and(|o| !o.is_null()) => PrAction::Synchronize,
                "update" if label_change => PrAction::Labeled,
                other => return Ok(Parsed::Ignored(format!("merge request action `{other}` asks for nothing"))),
            };
            let project = |k: &str| attrs.get(k).and_then(Value::as_u64);
            let fork = match (project("source_project_id"), project("target_project_id")) {
                (Some(source), Some(target)) if source != target => {
                    let from = attrs.get("source").and_then(|s| s.get("path_with_namespace")).and_then(Value::as_str);
                    Some(from.filter(|f| check_name(f).is_ok()).map_or_else(|| format!("project {source}"), str::to_owned))
                }
                _ => None,
            };
            Ok(Parsed::Event(GitEvent::PullRequest(PullRequest {
                provider: Provider::Gitlab,
                action,
                number: r.number(attrs, "iid")?,
                head_branch: r.name(attrs, "source_branch")?,
                head_commit: r.commit(attrs, "last_commit.id")?,
                labels: r.labels(v.get("labels"), "title")?,
                repo: r.repo(attrs, "target_project_id").or_else(|_| r.repo(&v, "project.id"))?,
                url: attrs.get("url").and_then(Value::as_str).filter(|u| check_name(u).is_ok()).map(str::to_owned),
                fork,
            })))
        }
        other => Ok(Parsed::Ignored(format!("`{other}` events ask for nothing"))),
    }
}

fn push(ref_name: String, commit: Option<String>) -> Result<Parsed, PayloadError> {
    if !ref_name.starts_with("refs/heads/") && !ref_name.starts_with("refs/tags/") {
        return Ok(Parsed::Ignored(format!("`{ref_name}` is neither a branch nor a tag")));
    }
    Ok(Parsed::Event(GitEvent::Push { ref_name, commit }))
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "0123456789abcdef0123456789abcdef01234567";

    #[test]
    fn pull_requests_from_forks_name_the_fork() {
        let gh = |head_repo: &str| {
            format!(
                r#"{{"action":"opened","number":7,"pull_request":{{"number":7,"head":{{"ref":"main","sha":"{A}","repo":{head_repo}}},"labels":[]}},"repository":{{"full_name":"acme/shop"}}}}"#
            )
        };
        let fork = |parsed: Result<Parsed, PayloadError>| match parsed {
            Ok(Parsed::Event(GitEvent::PullRequest(p))) => (p.fork.clone(), p.head_ref()),
            other => panic!("{other:?}"),
        };
        assert_eq!(
            fork(parse_github("pull_request", gh(r#"{"full_name":"mallory/shop"}"#).as_bytes())),
            (Some("mallory/shop".into()), "refs/pull/7/head".into())
        );
        assert_eq!(fork(parse_github("pull_request", gh("null").as_bytes())).0.as_deref(), Some("a deleted fork"));
        assert_eq!(fork(parse_github("pull_request", gh(r#"{"full_name":"acme/shop"}"#).as_bytes())).0, None);
        let gl = |source: u64| {
            format!(
                r#"{{"object_attributes":{{"iid":3,"action":"open","source_branch":"main","last_commit":{{"id":"{A}"}},"source_project_id":{source},"target_project_id":1,"source":{{"path_with_namespace":"mallory/shop"}}}},"labels":[]}}"#
            )
        };
        assert_eq!(
            fork(parse_gitlab("Merge Request Hook", gl(9).as_bytes())),
            (Some("mallory/shop".into()), "refs/merge-requests/3/head".into())
        );
        assert_eq!(fork(parse_gitlab("Merge Request Hook", gl(1).as_bytes())).0, None);
        assert!(is_pull_ref("refs/pull/7/head") && is_pull_ref("refs/merge-requests/3/head"));
        // Found by fuzzing: a pull request's number as large as a payload may give.
        assert!(is_pull_ref(&format!("refs/pull/{}/head", u64::MAX)) && is_pull_ref("refs/pull/770149358736003887/head"));
        for not in [
            "refs/pull//head",
            "refs/pull/7/merge",
            "refs/heads/main",
            "refs/pull/7a/head",
            "refs/pull/7/head/x",
            "refs/pull/+7/head",
            "refs/pull/18446744073709551616/head",
        ] {
            assert!(!is_pull_ref(not), "{not}");
        }
    }

    #[test]
    fn a_comment_approves_only_from_the_repository_s_own_people() {
        let comment = |body: &str, association: &str, on_pr: bool| {
            let pr = if on_pr { r#","pull_request":{"url":"x"}"# } else { "" };
            format!(
                r#"{{"action":"created","issue":{{"number":7{pr}}},"comment":{{"body":{},"user":{{"login":"maintainer"}},"author_association":"{association}"}},"repository":{{"full_name":"acme/shop"}}}}"#,
                serde_json::to_string(body).expect("json")
            )
        };
        for association in ["OWNER", "MEMBER", "COLLABORATOR"] {
            let parsed = parse_github("issue_comment", comment("/offshoot approve\nlooks fine", association, true).as_bytes());
            assert_eq!(parsed, Ok(Parsed::Event(GitEvent::Approve { number: 7, by: "maintainer".into() })), "{association}");
        }
        for association in ["CONTRIBUTOR", "FIRST_TIME_CONTRIBUTOR", "NONE"] {
            let parsed = parse_github("issue_comment", comment("/offshoot approve", association, true).as_bytes());
            assert!(
                matches!(&parsed, Ok(Parsed::Ignored(why)) if why.contains("may not approve") && why.contains(association)),
                "{parsed:?}"
            );
        }
        assert!(matches!(
            parse_github("issue_comment", comment("lgtm /offshoot approve", "OWNER", true).as_bytes()),
            Ok(Parsed::Ignored(_))
        ));
        assert!(matches!(parse_github("issue_comment", comment("/offshoot approve", "OWNER", false).as_bytes()), Ok(Parsed::Ignored(_))));
    }

    #[test]
    fn github_signature_round_trips_and_rejects_tampering() {
        let body = br#"{"zen":"hi"}"#;
        let sig = sign_github(b"s3cret", body);
        assert!(verify_github(b"s3cret", body, Some(&sig)));
        assert!(!verify_github(b"other", body, Some(&sig)));
        assert!(!verify_github(b"s3cret", br#"{"zen":"ho"}"#, Some(&sig)));
        assert!(!verify_github(b"s3cret", body, None));
        assert!(!verify_github(b"s3cret", body, Some("sha1=abc")));
        assert!(!verify_github(b"s3cret", body, Some("sha256=zz")));
        // GitHub's documented example.
        let doc = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
        assert!(verify_github(b"It's a Secret to Everybody", b"Hello, World!", Some(doc)));
    }

    #[test]
    fn gitlab_token_must_match_exactly() {
        assert!(verify_gitlab("tok", Some("tok")));
        assert!(!verify_gitlab("tok", Some("tok ")));
        assert!(!verify_gitlab("tok", None));
        assert!(!verify_gitlab("", Some("")));
    }

    #[test]
    fn github_push_and_branch_deletion() {
        let body = format!(r#"{{"ref":"refs/heads/feature/x","after":"{A}","deleted":false}}"#);
        assert_eq!(
            parse_github("push", body.as_bytes()),
            Ok(Parsed::Event(GitEvent::Push { ref_name: "refs/heads/feature/x".into(), commit: Some(A.into()) }))
        );
        let body = r#"{"ref":"refs/heads/x","after":"0000000000000000000000000000000000000000","deleted":true}"#;
        assert_eq!(
            parse_github("push", body.as_bytes()),
            Ok(Parsed::Event(GitEvent::Push { ref_name: "refs/heads/x".into(), commit: None }))
        );
        assert!(matches!(parse_github("push", br#"{"ref":"refs/heads/x","after":"nope"}"#), Err(e) if e.message.contains("after")));
        assert!(parse_github("push", b"{").is_err());
        assert!(matches!(parse_github("ping", b"{}"), Ok(Parsed::Ignored(_))));
        assert!(matches!(parse_github("issues", b"{}"), Ok(Parsed::Ignored(_))));
    }

    #[test]
    fn github_pull_request_actions_and_labels() {
        let pr = |action: &str| {
            format!(
                r#"{{"action":"{action}","number":7,"pull_request":{{"number":7,"html_url":"https://github.com/o/r/pull/7",
                "head":{{"ref":"feature/x","sha":"{A}"}},"labels":[{{"name":"preview"}},{{"name":"preview"}}]}},
                "repository":{{"full_name":"o/r"}}}}"#
            )
        };
        let Ok(Parsed::Event(GitEvent::PullRequest(p))) = parse_github("pull_request", pr("opened").as_bytes()) else { panic!() };
        assert_eq!((p.action, p.number, p.head_branch.as_str(), p.repo.as_str()), (PrAction::Opened, 7, "feature/x", "o/r"));
        assert_eq!(p.labels, vec!["preview".to_owned()]);
        assert_eq!(p.key(), "github:o/r#7");
        for (a, want) in [("unlabeled", PrAction::Labeled), ("synchronize", PrAction::Synchronize), ("closed", PrAction::Closed)] {
            let Ok(Parsed::Event(GitEvent::PullRequest(p))) = parse_github("pull_request", pr(a).as_bytes()) else { panic!() };
            assert_eq!(p.action, want);
        }
        assert!(matches!(parse_github("pull_request", pr("assigned").as_bytes()), Ok(Parsed::Ignored(_))));
        let bad = pr("opened").replace("feature/x", "a/../b");
        assert!(matches!(parse_github("pull_request", bad.as_bytes()), Err(e) if e.message.contains("head.ref")));
    }

    #[test]
    fn gitlab_push_and_merge_requests() {
        let body = format!(r#"{{"object_kind":"push","ref":"refs/heads/main","after":"{A}"}}"#);
        assert_eq!(
            parse_gitlab("Push Hook", body.as_bytes()),
            Ok(Parsed::Event(GitEvent::Push { ref_name: "refs/heads/main".into(), commit: Some(A.into()) }))
        );
        let mr = |action: &str, extra: &str| {
            format!(
                r#"{{"object_kind":"merge_request","project":{{"id":42}},"labels":[{{"title":"preview"}}],{extra}
                "object_attributes":{{"iid":3,"action":"{action}","source_branch":"feature/x","target_project_id":42,
                "last_commit":{{"id":"{A}"}},"url":"https://gitlab.example/g/p/-/merge_requests/3"{}}}}}"#,
                if action == "update" && extra.is_empty() { r#","oldrev":"1111111111111111111111111111111111111111""# } else { "" }
            )
        };
        let Ok(Parsed::Event(GitEvent::PullRequest(p))) = parse_gitlab("Merge Request Hook", mr("open", "").as_bytes()) else { panic!() };
        assert_eq!((p.action, p.number, p.repo.as_str(), p.labels.len()), (PrAction::Opened, 3, "42", 1));
        let Ok(Parsed::Event(GitEvent::PullRequest(p))) = parse_gitlab("Merge Request Hook", mr("update", "").as_bytes()) else { panic!() };
        assert_eq!(p.action, PrAction::Synchronize);
        let labels = r#""changes":{"labels":{"previous":[],"current":[{"title":"preview"}]}},"#;
        let Ok(Parsed::Event(GitEvent::PullRequest(p))) = parse_gitlab("Merge Request Hook", mr("update", labels).as_bytes()) else {
            panic!()
        };
        assert_eq!(p.action, PrAction::Labeled);
        let Ok(Parsed::Event(GitEvent::PullRequest(p))) = parse_gitlab("Merge Request Hook", mr("merge", "").as_bytes()) else { panic!() };
        assert_eq!(p.action, PrAction::Closed);
    }
}
