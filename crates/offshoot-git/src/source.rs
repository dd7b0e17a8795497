//! Where a repository may be fetched from, checked before any connection is made: a path on the
//! server (only when the caller may read the server's files), or an `https`, `http`, `ssh` or
//! `git` URL whose host is not a link-local or cloud metadata address, by name or by what the
//! name resolves to. Other transports (`ext::`, `fd::`) are refused.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The longest repository location taken.
pub const MAX_LEN: usize = 2048;

/// A checked repository location.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// A directory on the server.
    Local(String),
    /// A URL, with the host it connects to.
    Remote { url: String, host: String },
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SourceError {
    #[error("`{0}` is a path on the server: only an administrator may fetch from one")]
    LocalRefused(String),
    #[error("`{0}` is neither a directory nor a git URL")]
    Unknown(String),
    #[error("`{url}` is refused: {why}")]
    Refused { url: String, why: String },
}

/// Host names of cloud metadata services.
const METADATA_NAMES: [&str; 6] =
    ["metadata", "metadata.google.internal", "metadata.goog", "instance-data", "instance-data.ec2.internal", "metadata.azure.internal"];

/// Why an address may not be fetched from, if it may not.
pub fn refused_address(ip: IpAddr) -> Option<&'static str> {
    let metadata_v4 = [Ipv4Addr::new(169, 254, 169, 254), Ipv4Addr::new(100, 100, 100, 200), Ipv4Addr::new(192, 0, 0, 192)];
    match ip {
        IpAddr::V4(v4) if metadata_v4.contains(&v4) => Some("a cloud metadata address"),
        IpAddr::V4(v4) if v4.is_link_local() => Some("a link-local address"),
        IpAddr::V4(v4) if v4.is_unspecified() || v4.is_broadcast() || v4.is_multicast() => Some("not a host's address"),
        IpAddr::V6(v6) if v6 == Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254) => Some("a cloud metadata address"),
        IpAddr::V6(v6) if v6.is_unicast_link_local() => Some("a link-local address"),
        IpAddr::V6(v6) if v6.is_unspecified() || v6.is_multicast() => Some("not a host's address"),
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).and_then(refused_address),
        IpAddr::V4(_) => None,
    }
}

/// Checks a repository location as given (no I/O): `local_allowed` when the caller may read the
/// server's own files (an administrator).
pub fn check(repo: &str, local_allowed: bool) -> Result<Source, SourceError> {
    let refused = |why: &str| SourceError::Refused { url: repo.to_owned(), why: why.to_owned() };
    if repo.len() > MAX_LEN {
        return Err(refused(&format!("longer than {MAX_LEN} bytes")));
    }
    if repo.is_empty() || repo.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(SourceError::Unknown(repo.to_owned()));
    }
    let local =
        |path: &str| if local_allowed { Ok(Source::Local(path.to_owned())) } else { Err(SourceError::LocalRefused(path.to_owned())) };
    if repo.starts_with('/') || repo.starts_with("./") || repo.starts_with("../") || repo.starts_with('~') {
        return local(repo);
    }
    let url = gix::url::parse(repo.as_bytes()).map_err(|_| SourceError::Unknown(repo.to_owned()))?;
    match url.scheme {
        gix::url::Scheme::File => return local(&url.path.to_string()),
        gix::url::Scheme::Https | gix::url::Scheme::Http | gix::url::Scheme::Ssh | gix::url::Scheme::Git => {}
        gix::url::Scheme::Ext | gix::url::Scheme::Helper(_) | gix::url::Scheme::HelperUrl(_) => {
            return Err(refused("only https, http, ssh and git URLs are fetched"));
        }
    }
    let host = url.host().map(|h| h.trim_start_matches('[').trim_end_matches(']').to_ascii_lowercase()).unwrap_or_default();
    if host.is_empty() {
        return Err(refused("it names no host"));
    }
    if let Ok(ip) = host.parse::<IpAddr>()
        && let Some(why) = refused_address(ip)
    {
        return Err(refused(&format!("{ip} is {why}")));
    }
    if METADATA_NAMES.contains(&host.trim_end_matches('.')) {
        return Err(refused(&format!("`{host}` is a cloud metadata service")));
    }
    Ok(Source::Remote { url: repo.to_owned(), host })
}

/// Before connecting: what `host` resolves to now may not be a refused address either (a name
/// pointed at the metadata service). A name that does not resolve is left to the fetch to
/// report.
pub fn check_resolved(url: &str, host: &str) -> Result<(), SourceError> {
    use std::net::ToSocketAddrs as _;
    if host.parse::<IpAddr>().is_ok() {
        return Ok(());
    }
    // The port plays no part in the lookup.
    for addr in (host, 0).to_socket_addrs().into_iter().flatten() {
        if let Some(why) = refused_address(addr.ip()) {
            return Err(SourceError::Refused { url: url.to_owned(), why: format!("`{host}` resolves to {}, {why}", addr.ip()) });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn why(repo: &str) -> String {
        check(repo, true).expect_err(repo).to_string()
    }

    #[test]
    fn urls_of_hosts_pass_and_local_paths_only_when_allowed() {
        for ok in [
            "https://github.com/org/repo.git",
            "http://127.0.0.1:8080/repo.git",
            "ssh://git@gitlab.example.com:2222/org/repo.git",
            "git@github.com:org/repo.git",
            "git://10.0.0.5/repo",
            "https://[2001:db8::1]/repo.git",
        ] {
            assert!(matches!(check(ok, false), Ok(Source::Remote { .. })), "{ok}: {:?}", check(ok, false));
        }
        assert_eq!(check("/srv/repos/shop", true), Ok(Source::Local("/srv/repos/shop".into())));
        assert_eq!(check("/srv/repos/shop", false), Err(SourceError::LocalRefused("/srv/repos/shop".into())));
        assert!(matches!(check("file:///srv/repos/shop", false), Err(SourceError::LocalRefused(_))));
        assert_eq!(check("file:///srv/repos/shop", true), Ok(Source::Local("/srv/repos/shop".into())));
        assert_eq!(check("shop", true), Ok(Source::Local("shop".into())));
        assert!(matches!(check("../elsewhere", false), Err(SourceError::LocalRefused(_))));
    }

    #[test]
    fn link_local_metadata_and_odd_transports_are_refused_before_any_connection() {
        assert!(why("http://169.254.169.254/latest/meta-data").contains("169.254.169.254 is a cloud metadata address"));
        assert!(why("https://169.254.10.1/repo.git").contains("a link-local address"));
        assert!(why("http://[fe80::1]/repo.git").contains("a link-local address"));
        assert!(why("http://[fd00:ec2::254]/").contains("cloud metadata"));
        assert!(why("http://[::ffff:169.254.169.254]/").contains("cloud metadata"));
        assert!(why("http://100.100.100.200/").contains("cloud metadata"));
        assert!(why("http://metadata.google.internal/computeMetadata/v1/").contains("cloud metadata service"));
        assert!(why("https://METADATA.google.internal./x").contains("cloud metadata service"));
        assert!(why("http://0.0.0.0/repo").contains("not a host's address"));
        assert!(why("ext::sh -c touch% /tmp/pwned").contains("neither a directory nor a git URL"));
        assert!(why("ext::sh@x").contains("https, http, ssh and git"));
        assert!(why(&format!("https://h/{}", "a".repeat(MAX_LEN))).contains("longer than"));
        assert!(why("https://exa mple.com/r").contains("neither"));
    }

    #[test]
    fn a_name_is_checked_by_what_it_resolves_to() {
        assert_eq!(check_resolved("http://localhost/r", "localhost"), Ok(()));
        assert_eq!(check_resolved("http://127.0.0.1/r", "127.0.0.1"), Ok(()));
        // A name that does not resolve is the fetch's to report.
        assert_eq!(check_resolved("http://nowhere.invalid/r", "nowhere.invalid"), Ok(()));
    }
}
