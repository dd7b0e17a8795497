//! The value syntax of `ingress` settings, as NGINX reads them: sizes (`30m`, `8k`, `1g`, bare
//! bytes) and times (`180`, `60s`, `5m`, `1m30s`, `500ms`; bare numbers are seconds); and which
//! hosts a certificate's names cover.

use std::time::Duration;

/// Bytes in an NGINX size: digits with an optional `k`, `m` or `g` (either case).
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let (digits, mult) = match s.as_bytes().last()? {
        b'k' | b'K' => (&s[..s.len() - 1], 1u64 << 10),
        b'm' | b'M' => (&s[..s.len() - 1], 1 << 20),
        b'g' | b'G' => (&s[..s.len() - 1], 1 << 30),
        _ => (s, 1),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse::<u64>().ok()?.checked_mul(mult)
}

/// An NGINX time: one or more `<digits><unit>` parts, units `ms`, `s`, `m`, `h`, `d`; a bare
/// number is seconds.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        return s.parse().ok().map(Duration::from_secs);
    }
    let mut total = Duration::ZERO;
    let mut rest = s;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let n_end = rest.find(|c: char| !c.is_ascii_digit())?;
        if n_end == 0 {
            return None;
        }
        let n: u64 = rest[..n_end].parse().ok()?;
        rest = &rest[n_end..];
        let (unit, len) = if rest.starts_with("ms") {
            (Duration::from_millis(1), 2)
        } else {
            let u = match rest.as_bytes()[0] {
                b's' => Duration::from_secs(1),
                b'm' => Duration::from_secs(60),
                b'h' => Duration::from_secs(3600),
                b'd' => Duration::from_secs(86400),
                _ => return None,
            };
            (u, 1)
        };
        rest = &rest[len..];
        total = total.checked_add(unit.checked_mul(u32::try_from(n).ok()?)?)?;
    }
    Some(total)
}

/// `true`/`false`, `on`/`off` (NGINX), `yes`/`no`.
pub fn parse_switch(s: &str) -> Option<bool> {
    match s.trim().to_ascii_lowercase().as_str() {
        "true" | "on" | "yes" => Some(true),
        "false" | "off" | "no" => Some(false),
        _ => None,
    }
}

/// Whether a certificate name (`web.example.com`, or `*.example.com`) covers `host`: the same
/// name, or one label more under a wildcard's domain (as TLS clients check, RFC 6125).
pub fn covers(name: &str, host: &str) -> bool {
    let (name, host) = (name.trim_end_matches('.'), host.trim_end_matches('.'));
    if name.eq_ignore_ascii_case(host) {
        return true;
    }
    match name.strip_prefix("*.") {
        Some(domain) => host.split_once('.').is_some_and(|(label, rest)| !label.is_empty() && rest.eq_ignore_ascii_case(domain)),
        None => false,
    }
}

/// Whether any of `names` covers `host`.
pub fn any_covers(names: &[String], host: &str) -> bool {
    names.iter().any(|n| covers(n, host))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_times() {
        assert_eq!(parse_size("30m"), Some(30 << 20));
        assert_eq!(parse_size("8K"), Some(8192));
        assert_eq!(parse_size("0"), Some(0));
        assert_eq!(parse_size("1g"), Some(1 << 30));
        for bad in ["", "m", "1.5m", "10mb", "-1", "99999999999999999999g"] {
            assert_eq!(parse_size(bad), None, "{bad}");
        }
        assert_eq!(parse_duration("180"), Some(Duration::from_secs(180)));
        assert_eq!(parse_duration("1m30s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        for bad in ["", "s", "10x", "1.5s", "m1"] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
        assert_eq!(parse_switch("off"), Some(false));
        assert_eq!(parse_switch("maybe"), None);
    }

    #[test]
    fn wildcards_cover_one_label_and_names_match_whole() {
        assert!(covers("*.example.com", "web-1.example.com"));
        assert!(covers("*.example.com", "WEB.Example.com."));
        assert!(!covers("*.example.com", "example.com"));
        assert!(!covers("*.example.com", "a.b.example.com"));
        assert!(!covers("*.example.com", ".example.com"));
        assert!(!covers("*.example.com", "web.example.com.evil.io"));
        assert!(covers("example.com", "EXAMPLE.com"));
        assert!(!covers("example.com", "web.example.com"));
        assert!(any_covers(&["example.com".into(), "*.example.com".into()], "api.example.com"));
    }
}
