//! Pull requests from forks. Their code is someone else's, so each is held until someone of the
//! team approves its head commit: `offshoot env approve APP N` (the developer role), the label
//! `offshoot-approved`, or a comment `/offshoot approve` by an owner, member or collaborator of
//! the repository. An approval is of one commit: new commits wait for another, and meanwhile
//! the environment stays at the commit approved. Approved, the head is fetched from where the
//! repository keeps it (`refs/pull/N/head`), and the pull request gets an environment like any
//! other's, whose services run without the application's secrets unless it allows them
//! (`fork_secrets`; see [`withholds_secrets`]).

use crate::Control;
use crate::error::ControlError;
use crate::gate::{Noted, Operation, gate};
use crate::git_events::{FETCH_ATTEMPTS, failed, short};
use crate::ports::Ports;
use offshoot_git::hooks::{APPROVE_COMMAND, APPROVE_LABEL, PrAction, PullRequest};
use offshoot_store::{Environment, ForkPull, Store, StoreError};

/// A fork's pull request as held, with its environment if it has one.
#[derive(Clone, Debug)]
pub struct Held {
    pub record: ForkPull,
    pub pull_request: PullRequest,
    pub env: Option<Environment>,
}

impl Held {
    /// Whether its head commit is approved.
    pub fn approved(&self) -> bool {
        self.record.approved_commit.as_deref() == Some(self.pull_request.head_commit.as_str())
    }
}

/// Whether an environment runs a fork's code, so that the application's secrets are kept from it
/// unless the application allows them.
pub fn from_fork(env: &Environment) -> bool {
    env.pull_request.as_deref().and_then(|p| serde_json::from_str::<PullRequest>(p).ok()).is_some_and(|p| p.fork.is_some())
}

/// Whether an environment's services get none of their application's secrets nor clones of
/// its datasets: the root of its group (itself or the environment importing it) runs a fork's
/// code, and the environment's own application does not allow forks its secrets. Each
/// application decides for its own secrets, imported ones too.
pub async fn secrets_withheld(store: &Store, env: &Environment) -> Result<bool, StoreError> {
    let from_a_fork = match store.root_env(env).await? {
        Some(root) => from_fork(&root),
        None => from_fork(env),
    };
    Ok(from_a_fork && store.app_git(&env.app).await?.is_none_or(|g| g.fork_secrets == 0))
}

impl<P: Ports> Control<'_, P> {
    /// What an event of a fork's pull request does: recorded; deployed when its head is
    /// approved (the label approves it), else held with a word on how to approve it.
    pub(crate) async fn on_fork_pull_request(&self, app: &str, pr: PullRequest) -> Result<String, ControlError> {
        let key = pr.key();
        if pr.action == PrAction::Closed {
            self.store.delete_fork_pull(app, &key).await?;
            return self.on_pull_request(app, pr).await;
        }
        let event = serde_json::to_string(&pr).map_err(|e| failed(e.to_string()))?;
        self.store.set_fork_pull(app, &key, number(&pr), &event).await?;
        let approved = self.store.fork_pull(app, &key).await?.and_then(|h| h.approved_commit);
        if approved.as_deref() != Some(pr.head_commit.as_str()) {
            // Nothing to approve when it would get no environment anyway: said as for any
            // pull request.
            let git = self.app_git(app).await?;
            let unlabelled = git.pull_request_label.as_ref().is_some_and(|l| !pr.labels.contains(l));
            if (git.pull_requests == 0 || unlabelled) && self.pr_env(app, &pr).await?.is_none() {
                return self.on_pull_request(app, pr).await;
            }
            if !pr.labels.iter().any(|l| l == APPROVE_LABEL) {
                return self.waiting(app, &pr).await;
            }
            self.store.approve_fork_pull(app, &key, &pr.head_commit, &format!("the label `{APPROVE_LABEL}`")).await?;
        }
        self.deploy_fork(app, pr).await
    }

    /// What a held pull request waits for.
    async fn waiting(&self, app: &str, pr: &PullRequest) -> Result<String, ControlError> {
        let fork = pr.fork.as_deref().unwrap_or_default();
        let how = format!(
            "`offshoot env approve {app} {}`, the label `{APPROVE_LABEL}`, or a comment `{APPROVE_COMMAND}` by an owner, member or collaborator",
            pr.number
        );
        Ok(match self.pr_env(app, pr).await? {
            Some(env) => format!(
                "pull request #{} from the fork `{fork}`: its new commit {} waits for approval ({how}); {} stays as it is",
                pr.number,
                short(&pr.head_commit),
                env.id
            ),
            None => format!("pull request #{} from the fork `{fork}` waits for approval of {} ({how})", pr.number, short(&pr.head_commit)),
        })
    }

    /// Fetches an approved pull request's head from the repository and deploys it as any pull
    /// request's: its environment follows the ref the head was fetched to.
    async fn deploy_fork(&self, app_name: &str, mut pr: PullRequest) -> Result<String, ControlError> {
        let app = self.store.app(app_name).await?.ok_or_else(|| failed("the application was deleted"))?;
        let mirror = self.fetch_app(&app, FETCH_ATTEMPTS).await?;
        let (m, reference, commit) = (mirror.clone(), pr.head_ref(), pr.head_commit.clone());
        let present = tokio::task::spawn_blocking(move || m.fetch_pull(&reference).and_then(|()| m.has_commit(&commit)))
            .await?
            .map_err(|e| failed(format!("pull request #{}: {e}", pr.number)))?;
        if !present {
            return Err(failed(format!("commit {} is not at `{}` after fetching", short(&pr.head_commit), pr.head_ref())));
        }
        pr.head_branch = pr.head_ref();
        self.on_pull_request(app_name, pr).await
    }

    /// The commit an environment may deploy when `asked` is asked for: any for an environment
    /// that does not run a fork's code; for one that does, the commit approved. Asked for
    /// another (or for its ref's head, which may have moved past it), it is refused.
    pub(crate) async fn approved_for(&self, env: &Environment, asked: Option<String>) -> Result<Option<String>, ControlError> {
        if !from_fork(env) {
            return Ok(asked);
        }
        let pr = env.pull_request.as_deref().and_then(|p| serde_json::from_str::<PullRequest>(p).ok());
        let held = match &pr {
            Some(pr) => self.store.fork_pull(&env.app, &pr.key()).await?,
            None => None,
        };
        let approved = held.and_then(|h| h.approved_commit).or_else(|| env.commit_sha.clone());
        let number = pr.map_or(0, |p| p.number);
        let hint = || Some(format!("`offshoot env approve {} {number}` approves the pull request's head; it is then deployed", env.app));
        match (approved, asked) {
            (Some(a), Some(c)) if a != c => Err(ControlError::Conflict {
                code: "not-approved",
                message: format!("commit {} of a fork's pull request is not the one approved ({})", short(&c), short(&a)),
                hint: hint(),
            }),
            (Some(a), _) => Ok(Some(a)),
            (None, _) => Err(ControlError::Conflict {
                code: "not-approved",
                message: "no commit of this fork's pull request is approved".into(),
                hint: hint(),
            }),
        }
    }

    /// Approves the head commit of a fork's pull request as the actor (the developer role), and
    /// deploys it.
    pub async fn approve_pull_request(&self, app: &str, number: u64) -> Result<String, ControlError> {
        let target = format!("{app}/{number}");
        let work = async {
            self.find_app(app).await?;
            let by = self.actor.name.clone();
            self.approve(app, number, &by).await
        };
        gate(self.store, &self.actor, Operation::ApprovePullRequest, &target, work, |r: &String| Noted::detail(r.clone())).await
    }

    /// Approves the head commit of the held pull request `number`, by `by`, and deploys it.
    pub(crate) async fn approve(&self, app: &str, number: u64, by: &str) -> Result<String, ControlError> {
        let held = self.store.fork_pulls(app).await?.into_iter().filter(|h| h.number == number_of(number)).max_by_key(|h| h.updated_at);
        let Some(held) = held else {
            return Err(ControlError::not_found(
                "pull request from a fork",
                &format!("{app} #{number}"),
                format!(
                    "`offshoot env pending {app}` lists those waiting; pull requests from the repository's own branches need no approval"
                ),
            ));
        };
        let mut pr: PullRequest = serde_json::from_str(&held.event).map_err(|e| failed(format!("unreadable pull request: {e}")))?;
        self.store.approve_fork_pull(app, &held.pull_request, &pr.head_commit, by).await?;
        // Approved now: it gets an environment, or its environment gets the commit approved.
        pr.action = if self.pr_env(app, &pr).await?.is_some() { PrAction::Synchronize } else { PrAction::Opened };
        let done = self.deploy_fork(app, pr.clone()).await?;
        Ok(format!("{} of pull request #{} approved by {by}; {done}", short(&pr.head_commit), pr.number))
    }

    /// The forks' pull requests of an application, held or deployed, by number.
    pub async fn fork_pulls(&self, app: &str) -> Result<Vec<Held>, ControlError> {
        self.find_app(app).await?;
        let mut out = Vec::new();
        for record in self.store.fork_pulls(app).await? {
            let Ok(pull_request) = serde_json::from_str::<PullRequest>(&record.event) else { continue };
            let env = self.pr_env(app, &pull_request).await?;
            out.push(Held { record, pull_request, env });
        }
        Ok(out)
    }
}

fn number_of(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn number(pr: &PullRequest) -> i64 {
    number_of(pr.number)
}
