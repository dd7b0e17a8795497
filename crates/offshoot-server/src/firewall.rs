//! Containers kept from this machine's services. What a container sends to an address of the
//! machine (the Docker gateway, or any other) is accepted only when it is a reply, or goes to a
//! port an application is given: a dataset's database server, the router when it listens
//! beyond loopback, and the operator's `--allow-host-port`s. Anything else (the API, SSH, a
//! database no dataset names) is refused.
//!
//! One iptables chain, `OFFSHOOT-INPUT`, entered from `INPUT` for the server's network pool,
//! ends in `REJECT`; servers sharing a machine share it, each adding the ports it gives and
//! removing none (another may give the same). Rules are checked before they are added, so a
//! restart adds nothing twice.

use std::collections::BTreeSet;
use std::sync::Mutex;

const CHAIN: &str = "OFFSHOOT-INPUT";

#[derive(Debug, thiserror::Error)]
#[error("the host firewall cannot be set up: `iptables {command}`: {message}")]
pub(crate) struct FirewallError {
    command: String,
    message: String,
}

/// The chain for one network pool, and the ports given so far.
pub(crate) struct HostFirewall {
    pool: String,
    given: Mutex<BTreeSet<u16>>,
}

fn iptables(args: &[&str]) -> Result<bool, FirewallError> {
    let o = std::process::Command::new("iptables")
        .arg("-w")
        .args(args)
        .output()
        .map_err(|e| FirewallError { command: args.join(" "), message: format!("{e} (is iptables installed?)") })?;
    // 1 is "no such rule" for a check; anything else is a failure.
    match o.status.code() {
        Some(0) => Ok(true),
        Some(1) if matches!(args.first(), Some(&"-C" | &"-L")) => Ok(false),
        _ => Err(FirewallError { command: args.join(" "), message: String::from_utf8_lossy(&o.stderr).trim().to_owned() }),
    }
}

/// Adds `rule` to `chain` (at its head, or at its end) unless it is there.
fn ensure(chain: &str, rule: &[&str], at_head: bool) -> Result<(), FirewallError> {
    let check: Vec<&str> = ["-C", chain].into_iter().chain(rule.iter().copied()).collect();
    if iptables(&check)? {
        return Ok(());
    }
    let add: Vec<&str> = if at_head { vec!["-I", chain, "1"] } else { vec!["-A", chain] }.into_iter().chain(rule.iter().copied()).collect();
    iptables(&add).map(|_| ())
}

impl HostFirewall {
    /// Sets up the chain for containers of `pool` (a CIDR) and gives them `ports`.
    pub(crate) fn set_up(pool: &str, ports: impl IntoIterator<Item = u16>) -> Result<HostFirewall, FirewallError> {
        // Another server may make it between the check and the creation.
        if !iptables(&["-L", CHAIN, "-n"])? && iptables(&["-N", CHAIN]).is_err() && !iptables(&["-L", CHAIN, "-n"])? {
            iptables(&["-N", CHAIN])?;
        }
        // The catch-all first (appended once, so it stays last), then what is let through.
        ensure(CHAIN, &["-j", "REJECT"], false)?;
        ensure(CHAIN, &["-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED", "-j", "ACCEPT"], true)?;
        ensure("INPUT", &["-s", pool, "-j", CHAIN], true)?;
        let fw = HostFirewall { pool: pool.to_owned(), given: Mutex::default() };
        for p in ports {
            fw.give(p)?;
        }
        tracing::info!(pool = %fw.pool, ports = ?fw.given(), "host firewall: containers reach this machine only on the ports they are given");
        Ok(fw)
    }

    /// Lets containers reach this machine on TCP `port`.
    pub(crate) fn give(&self, port: u16) -> Result<(), FirewallError> {
        if self.given.lock().unwrap_or_else(std::sync::PoisonError::into_inner).contains(&port) {
            return Ok(());
        }
        let p = port.to_string();
        ensure(CHAIN, &["-p", "tcp", "--dport", &p, "-j", "ACCEPT"], true)?;
        self.given.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(port);
        Ok(())
    }

    /// The ports given, in order.
    pub(crate) fn given(&self) -> Vec<u16> {
        self.given.lock().unwrap_or_else(std::sync::PoisonError::into_inner).iter().copied().collect()
    }
}
