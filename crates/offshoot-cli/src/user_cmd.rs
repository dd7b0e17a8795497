//! `offshoot user ...` and `offshoot token ...`: who may use the server, with which role, and
//! their API tokens (shown once, stored hashed).

use crate::client::{Api, enc};
use crate::{Output, out};
use anyhow::Result;
use offshoot_api_types as api;
use std::process::ExitCode;

#[derive(clap::Subcommand)]
pub(crate) enum UserCommand {
    /// Add a user with a role: admin, developer or viewer.
    Create {
        email: String,
        #[arg(long, value_parser = ["admin", "developer", "viewer"])]
        role: String,
    },
    /// List the users, their roles and their grants.
    List,
    /// Change a user's role.
    Set {
        email: String,
        #[arg(long, value_parser = ["admin", "developer", "viewer"])]
        role: String,
    },
    /// Disable a user: its tokens are revoked and its dashboard sessions end.
    Disable { email: String },
}

#[derive(clap::Subcommand)]
pub(crate) enum TokenCommand {
    /// Make an API token (printed once): yours, or, as an admin, another user's.
    Create {
        #[arg(long)]
        user: Option<String>,
        /// What it is for (`ci`).
        #[arg(long)]
        name: Option<String>,
        /// It stops working after this long (`30d`, `12h`).
        #[arg(long, value_name = "DURATION")]
        expires: Option<String>,
    },
    /// List tokens (never their values): yours, or, as an admin, everyone's.
    List {
        #[arg(long)]
        user: Option<String>,
    },
    /// Revoke a token by its id.
    Revoke { id: String },
}

fn print_users(list: &[api::User]) -> String {
    if list.is_empty() {
        return "no users\n".into();
    }
    let mut s = String::new();
    for u in list {
        let grants: Vec<String> = u.grants.iter().map(|g| format!("{} on {}", g.role, g.app)).collect();
        let grants = if grants.is_empty() { String::new() } else { format!("  ({})", grants.join(", ")) };
        s.push_str(&format!("{:<32} {:<10}{}{grants}\n", u.email, u.role, if u.disabled { " disabled" } else { "" }));
    }
    s
}

pub(crate) fn run_user(cmd: UserCommand, output: Output) -> Result<ExitCode> {
    let api = Api::from_env()?;
    match cmd {
        UserCommand::Create { email, role } => {
            let u: api::User = api.post("/users", &api::UserCreate { email, role })?;
            crate::emit(&u, output, |u| format!("user {} created as {}\n", u.email, u.role));
        }
        UserCommand::List => {
            let list: Vec<api::User> = api.get("/users")?;
            crate::emit(&list, output, |l| print_users(l));
        }
        UserCommand::Set { email, role } => {
            let u: api::User = api.post(&format!("/users/{}", enc(&email)), &api::UserUpdate { role })?;
            crate::emit(&u, output, |u| format!("user {} is now {}\n", u.email, u.role));
        }
        UserCommand::Disable { email } => {
            api.post_empty(&format!("/users/{}/disable", enc(&email)), &serde_json::json!({}))?;
            let done = serde_json::json!({ "email": email, "disabled": true });
            crate::emit(&done, output, |_| format!("user {email} disabled; its tokens are revoked\n"));
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn run_token(cmd: TokenCommand, output: Output) -> Result<ExitCode> {
    let api = Api::from_env()?;
    match cmd {
        TokenCommand::Create { user, name, expires } => {
            let t: api::TokenCreated = api.post("/tokens", &api::TokenCreate { user, name, expires })?;
            match output {
                Output::Json => crate::emit(&t, output, |_| String::new()),
                Output::Human => {
                    crate::err(&format!(
                        "token {} made{}; it is shown only now:\n",
                        t.id,
                        t.expires_at.map(|e| format!(", expires {}", crate::dataset_cmd::relative(e))).unwrap_or_default()
                    ));
                    out(&format!("{}\n", t.token));
                }
            }
        }
        TokenCommand::List { user } => {
            let q = user.map_or_else(String::new, |u| format!("?user={}", enc(&u)));
            let list: Vec<api::Token> = api.get(&format!("/tokens{q}"))?;
            crate::emit(&list, output, |l| {
                if l.is_empty() {
                    return "no tokens\n".to_owned();
                }
                l.iter()
                    .map(|t| {
                        let exp = t.expires_at.map(|e| format!("  expires {}", crate::dataset_cmd::relative(e))).unwrap_or_default();
                        format!("{}  {:<24} {}  made {}{exp}\n", t.id, t.user, t.name, crate::dataset_cmd::relative(t.created_at))
                    })
                    .collect()
            });
        }
        TokenCommand::Revoke { id } => {
            api.delete(&format!("/tokens/{}", enc(&id)))?;
            let done = serde_json::json!({ "id": id, "revoked": true });
            crate::emit(&done, output, |_| format!("token {id} revoked\n"));
        }
    }
    Ok(ExitCode::SUCCESS)
}
