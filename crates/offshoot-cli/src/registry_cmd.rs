//! `offshoot registry ...`: credentials for container registries.

use crate::client::{Api, enc};
use crate::{Output, out};
use anyhow::{Context as _, Result, bail};
use offshoot_api_types as api;
use std::io::Read as _;
use std::process::ExitCode;

#[derive(clap::Subcommand)]
pub(crate) enum Command {
    /// Store credentials for a registry (encrypted, never shown): used to pull its images, to
    /// build from them and to push to it.
    Login {
        /// The registry as images name it: `registry.example.com`, `127.0.0.1:5001`, `docker.io`.
        host: String,
        #[arg(long)]
        username: String,
        /// Read the password (or token) from standard input.
        #[arg(long, required = true)]
        password_stdin: bool,
        /// Only for this application (it wins over the server's for this host).
        #[arg(long)]
        app: Option<String>,
    },
    /// List the registry logins (never their passwords).
    List,
    /// Forget a registry's credentials.
    Logout {
        host: String,
        #[arg(long)]
        app: Option<String>,
    },
}

pub(crate) fn run(cmd: Command, output: Output) -> Result<ExitCode> {
    let api = Api::from_env()?;
    match cmd {
        Command::Login { host, username, password_stdin: _, app } => {
            let mut password = String::new();
            std::io::stdin().read_to_string(&mut password).context("read the password from standard input")?;
            let password = password.trim_end_matches(['\n', '\r']).to_owned();
            if password.is_empty() {
                bail!("no password on standard input (pipe it in: `printf %s TOKEN | offshoot registry login ...`)");
            }
            api.post_empty("/registries", &api::RegistryLogin { host: host.clone(), app, username, password })?;
            if output == Output::Human {
                out(&format!("logged in to {host}\n"));
            }
        }
        Command::List => {
            let list: Vec<api::RegistryInfo> = api.get("/registries")?;
            crate::emit(&list, output, |l| {
                if l.is_empty() {
                    return "no registry logins\n".to_owned();
                }
                l.iter()
                    .map(|r| {
                        format!(
                            "{}  {}  as {}\n",
                            r.host,
                            r.app.as_deref().map_or("(server)".to_owned(), |a| format!("app {a}")),
                            r.username
                        )
                    })
                    .collect()
            });
        }
        Command::Logout { host, app } => {
            let q = app.map_or_else(String::new, |a| format!("?app={}", enc(&a)));
            api.delete(&format!("/registries/{}{q}", enc(&host)))?;
            if output == Output::Human {
                out(&format!("logged out of {host}\n"));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
