//! Pull-request feedback: one comment per pull request, created once and then edited, listing
//! the environment (and its imports) with URLs and state; and a commit status on the head
//! commit. GitHub's REST API and GitLab's notes and statuses, each at a configurable base URL.
//! Feedback never holds up a deployment: failures are logged and the next change tries again.

use crate::failure::Failure;
use crate::state::Shared;
use offshoot_api_types::EnvStatus;
use offshoot_git::hooks::{Provider, PullRequest};
use offshoot_store::Environment;
use serde_json::json;
use std::time::Duration;

/// How long one call to a git host may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// Updates the feedback of the pull request an environment belongs to (its own, or its
/// importer's), in the background.
pub(crate) fn notify(ctx: &Shared, env: &Environment) {
    let (shared, env) = (ctx.clone(), env.clone());
    ctx.background.spawn("pull-request feedback", async move {
        let ctx = shared;
        let Ok(Some(root)) = ctx.store.root_env(&env).await else { return };
        let Some(pr) = root.pull_request.as_deref().and_then(|p| serde_json::from_str::<PullRequest>(p).ok()) else { return };
        // One update at a time per pull request, each reading the latest state.
        let lock = ctx.lock_for(&format!("feedback/{}", pr.key()));
        let _guard = lock.lock().await;
        if let Err(e) = update(&ctx, &root.id, &pr).await {
            tracing::warn!(env = %root.id, pull_request = %pr.key(), error = %e, "cannot update the pull request's feedback");
        }
    });
}

/// The commit-status state for an environment state, in the host's words.
fn state(provider: Provider, env_status: EnvStatus) -> &'static str {
    match (provider, env_status) {
        // Deployed; asleep until a request wakes it.
        (Provider::Github | Provider::Gitlab, EnvStatus::Ready | EnvStatus::Sleeping) => "success",
        (Provider::Github, EnvStatus::Failed) => "failure",
        (Provider::Github, _) => "pending",
        (Provider::Gitlab, EnvStatus::Failed) => "failed",
        (Provider::Gitlab, EnvStatus::Deleted) => "canceled",
        (Provider::Gitlab, EnvStatus::Creating) => "pending",
        (Provider::Gitlab, _) => "running",
    }
}

/// The comment's text: the environment and its imports, with state and URLs.
pub(crate) fn comment_body(envs: &[offshoot_api_types::Env], now: i64) -> String {
    let mut out = String::from(
        "<!-- offshoot -->\n### Offshoot environment\n\n| app | environment | branch | commit | state | URLs |\n|---|---|---|---|---|---|\n",
    );
    for e in envs {
        let urls: Vec<String> = e.services.iter().flat_map(|s| s.urls.iter()).map(|u| format!("<{u}>")).collect();
        let commit = e.commit.as_deref().map(|c| c.get(..7).unwrap_or(c)).unwrap_or("–");
        let state = match &e.reason {
            Some(r) if e.status == EnvStatus::Failed => format!("{}: {}", e.status, r.replace(['|', '\n'], " ")),
            _ if e.status == EnvStatus::Sleeping => "sleeping (the first request wakes it)".to_owned(),
            _ => e.status.to_string(),
        };
        let state = match e.expires_at {
            Some(t) if e.status != EnvStatus::Deleted && t - now <= 24 * 3600 * 1000 => format!(
                "{state}; **expires in {}**: `offshoot env extend {} --ttl 48h` keeps it",
                offshoot_api_types::span_ms((t - now).max(0)),
                e.id
            ),
            Some(t) if e.status != EnvStatus::Deleted => format!("{state}; expires in {}", offshoot_api_types::span_ms(t - now)),
            _ => state,
        };
        out.push_str(&format!(
            "| {} | `{}` | `{}` | `{commit}` | {state} | {} |\n",
            e.app,
            e.id,
            e.branch,
            if urls.is_empty() { "–".to_owned() } else { urls.join(" ") }
        ));
    }
    // What the runtime does not apply of each template, so that nobody is surprised.
    let ignored: Vec<String> = envs
        .iter()
        .flat_map(|e| {
            e.compat.iter().map(move |c| {
                format!("- `{}`: `{}` (line {}) is {}: {}", e.app, c.path, c.line, c.support, c.why.replace(['\n', '|'], " "))
            })
        })
        .collect();
    if !ignored.is_empty() {
        out.push_str(&format!(
            "\n<details><summary>Not applied here ({})</summary>\n\n{}\n</details>\n",
            ignored.len(),
            ignored.join("\n")
        ));
    }
    out
}

/// Where a host keeps a pull request's comment and a commit's status.
struct Endpoints {
    /// Creates the comment (POST).
    create: String,
    /// Edits the existing comment.
    edit: Option<(reqwest::Method, String)>,
    /// Sets a commit status (POST).
    status: String,
    /// The status payload's key for the status's name.
    name_key: &'static str,
}

fn endpoints(pr: &PullRequest, base: &str, comment: Option<&str>, sha: &str) -> Endpoints {
    match pr.provider {
        Provider::Github => {
            let repo = format!("{base}/repos/{}", pr.repo);
            Endpoints {
                create: format!("{repo}/issues/{}/comments", pr.number),
                edit: comment.map(|id| (reqwest::Method::PATCH, format!("{repo}/issues/comments/{id}"))),
                status: format!("{repo}/statuses/{sha}"),
                name_key: "context",
            }
        }
        Provider::Gitlab => {
            let project = format!("{base}/projects/{}", pr.repo.replace('/', "%2F"));
            Endpoints {
                create: format!("{project}/merge_requests/{}/notes", pr.number),
                edit: comment.map(|id| (reqwest::Method::PUT, format!("{project}/merge_requests/{}/notes/{id}", pr.number))),
                status: format!("{project}/statuses/{sha}"),
                name_key: "name",
            }
        }
    }
}

/// A call to the host with its token and the headers it asks for.
fn authorize(rb: reqwest::RequestBuilder, provider: Provider, token: &str) -> reqwest::RequestBuilder {
    let rb = rb.header("User-Agent", "offshoot").timeout(CALL_TIMEOUT);
    match provider {
        Provider::Github => {
            rb.bearer_auth(token).header("Accept", "application/vnd.github+json").header("X-GitHub-Api-Version", "2022-11-28")
        }
        Provider::Gitlab => rb.header("PRIVATE-TOKEN", token),
    }
}

async fn update(ctx: &Shared, root_id: &str, pr: &PullRequest) -> Result<(), Failure> {
    let forge = match pr.provider {
        Provider::Github => &ctx.forges.github,
        Provider::Gitlab => &ctx.forges.gitlab,
    };
    let Some(token) = forge.token.as_deref() else { return Ok(()) };
    let root = ctx.store.env(root_id).await?.ok_or_else(|| Failure::from("the environment is gone"))?;
    let mut envs = vec![crate::views::env_dto(ctx, root.clone()).await.map_err(|e| e.message)?];
    for c in ctx.store.child_envs(root_id).await? {
        envs.push(crate::views::env_dto(ctx, c).await.map_err(|e| e.message)?);
    }
    let body = json!({ "body": comment_body(&envs, offshoot_store::now_ms()) });
    let key = pr.key();
    let existing = ctx.store.pr_comment(&root.app, &key).await?;
    // The commit status is of the deployed commit (the head until it is known).
    let sha = root.commit_sha.clone().unwrap_or_else(|| pr.head_commit.clone());
    let at = endpoints(pr, forge.api_url.trim_end_matches('/'), existing.as_deref(), &sha);
    let call = |rb: reqwest::RequestBuilder| async move {
        let resp = authorize(rb, pr.provider, token).send().await?;
        let code = resp.status();
        let value: serde_json::Value = resp.json().await.unwrap_or_default();
        Ok::<_, Failure>((code, value))
    };
    // The comment: edited when it exists, created when it does not (or was deleted).
    let mut edited = false;
    if let Some((method, url)) = at.edit {
        let (code, _) = call(ctx.http.request(method, url).json(&body)).await?;
        edited = code.is_success();
        if !edited && code != reqwest::StatusCode::NOT_FOUND {
            return Err(format!("editing the comment answered {code}").into());
        }
    }
    if !edited {
        let (code, value) = call(ctx.http.post(at.create).json(&body)).await?;
        if !code.is_success() {
            return Err(format!("creating the comment answered {code}").into());
        }
        let id = match &value["id"] {
            serde_json::Value::Number(n) => n.to_string(),
            serde_json::Value::String(s) if s.bytes().all(|b| b.is_ascii_alphanumeric()) => s.clone(),
            _ => return Err("the created comment has no id".into()),
        };
        ctx.store.set_pr_comment(&root.app, &key, &id).await?;
    }
    // GitHub has no state for "gone": its last status (success or failure) stays.
    if pr.provider == Provider::Github && root.status == EnvStatus::Deleted {
        return Ok(());
    }
    let target = envs.first().and_then(|e| e.services.iter().flat_map(|s| s.urls.first()).next().cloned());
    let mut payload = json!({
        "state": state(pr.provider, root.status),
        "target_url": target,
        "description": format!("environment {} {}", root.id, root.status),
    });
    payload[at.name_key] = json!(format!("offshoot/{}", root.app));
    let (code, _) = call(ctx.http.post(at.status).json(&payload)).await?;
    if !code.is_success() {
        return Err(format!("setting the commit status answered {code}").into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_in_each_hosts_words() {
        assert_eq!(state(Provider::Github, EnvStatus::Ready), "success");
        assert_eq!(state(Provider::Gitlab, EnvStatus::Sleeping), "success");
        assert_eq!(state(Provider::Github, EnvStatus::Waking), "pending");
        assert_eq!(state(Provider::Github, EnvStatus::Deploying), "pending");
        assert_eq!(state(Provider::Github, EnvStatus::Failed), "failure");
        assert_eq!(state(Provider::Gitlab, EnvStatus::Failed), "failed");
        assert_eq!(state(Provider::Gitlab, EnvStatus::Deploying), "running");
    }

    #[test]
    fn the_comment_lists_each_environment_with_urls_and_escapes_reasons() {
        let env = |app: &str, st: EnvStatus, reason: Option<&str>, url: Option<&str>| offshoot_api_types::Env {
            id: format!("{app}1"),
            app: app.into(),
            branch: "feature/x".into(),
            commit: Some("0123456789abcdef".into()),
            status: st,
            reason: reason.map(str::to_owned),
            environment_template: None,
            services: url
                .map(|u| offshoot_api_types::Service {
                    name: "web".into(),
                    status: if st == EnvStatus::Ready {
                        offshoot_api_types::ServiceStatus::Ready
                    } else {
                        offshoot_api_types::ServiceStatus::Failed
                    },
                    reason: None,
                    hostnames: vec![],
                    urls: vec![u.into()],
                    load_balancers: vec![],
                })
                .into_iter()
                .collect(),
            deployments: vec![],
            created_at: 0,
            expires_at: None,
            sleeping_since: None,
            last_request_at: None,
            idle_sleep_seconds: None,
            imports: vec![],
            parent: None,
            warnings: vec![],
            pull_request: None,
            datasets: vec![],
            parameters: vec![],
            compat: vec![],
            infrastructure: vec![],
        };
        let mut expiring = env("front", EnvStatus::Sleeping, None, None);
        expiring.expires_at = Some(5 * 3600 * 1000);
        let mut later = env("later", EnvStatus::Ready, None, None);
        later.expires_at = Some(3 * 86_400 * 1000);
        later.compat = vec![offshoot_api_types::CompatItem {
            key: "Service.registry".into(),
            path: "services[0].registry".into(),
            line: 8,
            support: "ignored".into(),
            why: "built images stay on the engine".into(),
        }];
        let body = comment_body(
            &[
                env("front", EnvStatus::Ready, None, Some("http://web-x.localhost:8080/")),
                env("api", EnvStatus::Failed, Some("step | a\nb"), None),
                expiring,
                later,
            ],
            0,
        );
        assert!(
            body.contains("| sleeping (the first request wakes it); **expires in 5h**: `offshoot env extend front1 --ttl 48h` keeps it |"),
            "{body}"
        );
        assert!(body.contains("| ready; expires in 3d |"), "{body}");
        assert!(body.contains("| front | `front1` | `feature/x` | `0123456` | ready | <http://web-x.localhost:8080/> |"), "{body}");
        assert!(body.contains("| api | `api1` | `feature/x` | `0123456` | failed: step   a b | – |"), "{body}");
        assert!(
            body.contains("<summary>Not applied here (1)</summary>\n\n- `later`: `services[0].registry` (line 8) is ignored: built images stay on the engine"),
            "{body}"
        );
    }
}
