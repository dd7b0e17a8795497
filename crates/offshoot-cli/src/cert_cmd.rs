//! `offshoot cert ...`: the certificates the server got from ACME.

use crate::Output;
use crate::client::Api;
use anyhow::Result;
use offshoot_api_types as api;
use std::process::ExitCode;

#[derive(clap::Subcommand)]
pub(crate) enum Command {
    /// List the certificates: names, issuer, expiry, renewal, and the last error.
    List,
}

fn when(ms: Option<i64>) -> String {
    ms.map_or_else(|| "-".into(), crate::dataset_cmd::relative)
}

fn print(list: &[api::Certificate]) -> String {
    if list.is_empty() {
        return "no certificates (is the server started with --acme?)\n".into();
    }
    let mut s = String::new();
    for c in list {
        s.push_str(&format!(
            "{}\n  names    {}\n  issuer   {}\n  expires  {}\n  renews   {}\n  orders   {}\n",
            c.name,
            c.names.join(", "),
            c.issuer.as_deref().unwrap_or("- (not issued yet)"),
            when(c.not_after),
            when(c.renew_at),
            c.orders
        ));
        if let Some(e) = &c.last_error {
            s.push_str(&format!("  failing  {} time(s), next try {}: {e}\n", c.failures, when(c.next_attempt)));
        }
    }
    s
}

pub(crate) fn run(cmd: Command, output: Output) -> Result<ExitCode> {
    let api = Api::from_env()?;
    match cmd {
        Command::List => {
            let list: Vec<api::Certificate> = api.get("/certs")?;
            crate::emit(&list, output, |l| print(l));
        }
    }
    Ok(ExitCode::SUCCESS)
}
