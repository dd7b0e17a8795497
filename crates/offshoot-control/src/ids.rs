//! New ids: environments, deployments, activity records.

use offshoot_store::{DeploymentId, EnvId};

/// `N` random bytes as hex.
pub(crate) fn random_hex<const N: usize>() -> String {
    let mut b = [0u8; N];
    getrandom::fill(&mut b).expect("the operating system provides randomness");
    hex::encode(b)
}

/// A new environment id: 7 lower-case letters and digits (it appears in hostnames).
pub fn new_env_id() -> EnvId {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut b = [0u8; 7];
    getrandom::fill(&mut b).expect("the operating system provides randomness");
    EnvId::new(b.iter().map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char).collect::<String>())
}

/// A new deployment id: `d` and 16 hex digits.
pub fn new_deployment_id() -> DeploymentId {
    DeploymentId::new(format!("d{}", random_hex::<8>()))
}

/// A new cron run's id.
pub(crate) fn new_cron_run_id() -> String {
    format!("c{}", random_hex::<8>())
}

/// A new activity record id: ordered as written by this process (microseconds, then a
/// sequence number), unique across processes (a random suffix).
pub(crate) fn new_activity_id() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let micros = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_micros()).unwrap_or(0);
    let seq = SEQ.fetch_add(1, Ordering::Relaxed) % 1_000_000;
    format!("{micros:017}-{seq:06}-{}", random_hex::<4>())
}
