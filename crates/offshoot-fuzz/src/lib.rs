//! What each fuzz target does with its bytes: one parser of outside input, fed anything, and
//! the properties that must hold whatever it is fed. A panic is a finding.
//!
//! The same functions run in two ways: libFuzzer campaigns (`fuzz/`, `scripts/fuzz`, nightly
//! `cargo fuzz`), and this crate's test, which replays the seed corpora and a fixed number of
//! mutations of them on the stable toolchain in every CI run.

use offshoot_template::document::{self, Kind};
use offshoot_template::{compose, masking, resolve};

/// A target: what it does with its bytes.
pub type Target = fn(&[u8]);

/// The targets, by the name `cargo fuzz run` knows them by.
pub const TARGETS: [(&str, Target); 7] = [
    ("template", template),
    ("env_vars", env_vars),
    ("compose", compose),
    ("webhook", webhook),
    ("router_path_host", router_path_host),
    ("api_body", api_body),
    ("repo_url", repo_url),
];

fn text(data: &[u8]) -> Option<&str> {
    std::str::from_utf8(data).ok()
}

/// Every diagnostic names a line and a column inside the file, and says what is wrong.
fn diagnostics_point_into(src: &str, diags: &[offshoot_template::diag::Diagnostic]) {
    // YAML breaks lines at `\r\n`, `\n` and a lone `\r`.
    let lines = src.replace("\r\n", "\n").split(['\n', '\r']).count();
    for d in diags {
        assert!(!d.message.is_empty(), "a diagnostic without a message: {d:?}");
        assert!((d.line as usize) <= lines, "line {} of a {lines}-line file: {d:?}", d.line);
        assert!(d.span.offset + d.span.len <= src.len(), "a span past the end of the file: {d:?}");
    }
}

/// The Application Template loader: checked as the API checks an upload, then, when valid,
/// resolved as a deployment resolves it.
pub fn template(data: &[u8]) {
    let Some(src) = text(data) else { return };
    let doc = document::check("application_template.yaml", src, Some(Kind::Template));
    diagnostics_point_into(src, &doc.diagnostics);
    if doc.diagnostics.iter().any(|d| d.is_error()) {
        return;
    }
    let Some(root) = doc.root else { return };
    let opts = resolve::Options {
        branch: "main".into(),
        env_id: "e1".into(),
        app: Some("fuzz".into()),
        domain: "offshoot.localhost".into(),
        ..Default::default()
    };
    if let Err(diags) = resolve::resolve("application_template.yaml", &root, None, &opts) {
        assert!(!diags.is_empty(), "resolution failed without saying why");
    }
}

/// The Environment Variables loader, and the masking of its secret values: a readable file,
/// masked, reads the same but for its secret values, and saved back as shown is the same file.
pub fn env_vars(data: &[u8]) {
    let Some(src) = text(data) else { return };
    let doc = document::check("environment_variables.yaml", src, Some(Kind::EnvVars));
    diagnostics_point_into(src, &doc.diagnostics);
    if doc.diagnostics.iter().any(|d| d.is_error()) || src.contains(masking::MASK) {
        return;
    }
    let shown = masking::masked(src);
    let again = document::check("environment_variables.yaml", &shown, Some(Kind::EnvVars));
    let errors: Vec<_> = again.diagnostics.iter().filter(|d| d.is_error()).map(|d| &d.message).collect();
    assert!(errors.is_empty(), "the masked file does not read: {errors:?}\n--- file\n{src}\n--- masked\n{shown}");
    assert_eq!(masking::unmasked(&shown, src).as_deref(), Ok(src), "saved as shown, the file changed\n--- masked\n{shown}");
}

/// Compose generation: whatever a compose file says, what is generated from it without an
/// error (what the server keeps) is a valid Application Template and Environment Variables
/// file: a problem is reported against the compose file, where the user can find it.
pub fn compose(data: &[u8]) {
    let Some(src) = text(data) else { return };
    let (generated, diags) = compose::generate("docker-compose.yml", src, &compose::Options::default());
    diagnostics_point_into(src, &diags);
    let Some(g) = generated.filter(|_| !diags.iter().any(|d| d.is_error())) else { return };
    for (file, kind, yaml) in
        [("application_template.yaml", Kind::Template, g.template_yaml()), ("environment_variables.yaml", Kind::EnvVars, g.env_vars_yaml())]
    {
        let doc = document::check(file, &yaml, Some(kind));
        let errors: Vec<_> = doc.diagnostics.iter().filter(|d| d.is_error()).map(|d| (d.line, &d.message)).collect();
        assert!(errors.is_empty(), "generated {file} is invalid: {errors:?}\n--- compose\n{src}\n--- generated\n{yaml}");
    }
}

/// The webhook parsers: the first byte picks a provider and an event, the rest is the body.
/// A parsed event carries only names and commit ids that passed their checks.
pub fn webhook(data: &[u8]) {
    use offshoot_git::hooks::{GitEvent, Parsed, parse_github, parse_gitlab};
    const GITHUB: [&str; 4] = ["push", "pull_request", "ping", "issue_comment"];
    const GITLAB: [&str; 4] = ["Push Hook", "Tag Push Hook", "Merge Request Hook", "Note Hook"];
    let Some((&pick, body)) = data.split_first() else { return };
    let (github, event) =
        if pick & 0x80 == 0 { (true, GITHUB[usize::from(pick) % GITHUB.len()]) } else { (false, GITLAB[usize::from(pick) % GITLAB.len()]) };
    let parsed = if github { parse_github(event, body) } else { parse_gitlab(event, body) };
    let commit_ok = |c: &str| (c.len() == 40 || c.len() == 64) && c.bytes().all(|b| b.is_ascii_hexdigit());
    let name_ok = |n: &str| !n.is_empty() && !n.contains("..") && !n.chars().any(char::is_control);
    match parsed {
        Ok(Parsed::Event(GitEvent::Push { ref_name, commit })) => {
            assert!(name_ok(&ref_name), "{ref_name:?}");
            assert!(commit.as_deref().is_none_or(commit_ok), "{commit:?}");
        }
        Ok(Parsed::Event(GitEvent::PullRequest(pr))) => {
            assert!(name_ok(&pr.head_branch) && name_ok(&pr.repo), "{pr:?}");
            assert!(commit_ok(&pr.head_commit), "{pr:?}");
            assert!(pr.labels.iter().all(|l| name_ok(l)), "{pr:?}");
            assert!(pr.fork.as_deref().is_none_or(name_ok), "{pr:?}");
            assert!(offshoot_git::hooks::is_pull_ref(&pr.head_ref()), "{pr:?}");
        }
        Ok(Parsed::Event(GitEvent::Approve { by, .. })) => assert!(name_ok(&by), "{by:?}"),
        Ok(Parsed::Ignored(why)) => assert!(!why.is_empty()),
        Err(e) => assert!(!e.to_string().is_empty()),
    }
}

/// The router's request normalisation: the first line is a `Host` header, the rest a request
/// target. Both normal forms are fixed points, and a normal path has no `.`, `..` or empty
/// segment, so a rule for `/admin` cannot be stepped around.
pub fn router_path_host(data: &[u8]) {
    use offshoot_router::table::{normalize_host, normalize_path};
    let Some(src) = text(data) else { return };
    let (host, path) = src.split_once('\n').unwrap_or((src, "/"));
    if let Some(h) = normalize_host(host) {
        assert_eq!(normalize_host(&h).as_deref(), Some(&*h), "not a fixed point: {host:?}");
        assert!(!h.bytes().any(|b| b.is_ascii_uppercase()), "{h:?}");
        assert!(h.len() <= 253 + 2, "{h:?}");
    }
    if let Some(p) = normalize_path(path) {
        assert!(p.starts_with('/'), "{path:?} gave {p:?}");
        assert_eq!(normalize_path(&p).as_deref(), Some(&*p), "not a fixed point: {path:?}");
        let inner = p.trim_start_matches('/').trim_end_matches('/');
        assert!(inner.is_empty() || inner.split('/').all(|s| !s.is_empty() && s != "." && s != ".."), "{path:?} gave {p:?}");
        assert!(!p.bytes().any(|b| b <= 0x20 || b == 0x7f), "{path:?} gave {p:?}");
    }
}

/// A JSON body read and written back is read the same (the first byte picks the body's type).
fn round_trip<T: serde::de::DeserializeOwned + serde::Serialize>(body: &[u8]) {
    let Ok(v) = serde_json::from_slice::<T>(body) else { return };
    let once = serde_json::to_vec(&v).expect("a body read is written");
    let again: T = serde_json::from_slice(&once).expect("a body written is read");
    assert_eq!(serde_json::to_vec(&again).expect("written"), once, "{}", String::from_utf8_lossy(body));
}

/// The API's JSON request bodies, each type the API reads.
pub fn api_body(data: &[u8]) {
    use offshoot_api_types as t;
    let Some((&pick, body)) = data.split_first() else { return };
    match pick % 14 {
        0 => round_trip::<t::AppCreate>(body),
        1 => round_trip::<t::AppUpdate>(body),
        2 => round_trip::<t::EnvCreate>(body),
        3 => round_trip::<t::EnvDeploy>(body),
        4 => round_trip::<t::EnvUpdate>(body),
        5 => round_trip::<t::EnvExtend>(body),
        6 => round_trip::<t::TemplateUpdate>(body),
        7 => round_trip::<t::SecretSet>(body),
        8 => round_trip::<t::CreateDataset>(body),
        9 => round_trip::<t::UserCreate>(body),
        10 => round_trip::<t::UserUpdate>(body),
        11 => round_trip::<t::TokenCreate>(body),
        12 => round_trip::<t::GrantSet>(body),
        _ => round_trip::<t::ExecRequest>(body),
    }
}

/// Repository locations: whatever is accepted names a host that is no refused address, and a
/// server path only when paths are allowed.
pub fn repo_url(data: &[u8]) {
    use offshoot_git::source::{Source, check, refused_address};
    let Some(url) = text(data) else { return };
    match check(url, false) {
        Ok(Source::Remote { host, .. }) => {
            assert!(!host.is_empty(), "{url:?}");
            if let Ok(ip) = host.parse::<std::net::IpAddr>() {
                assert_eq!(refused_address(ip), None, "{url:?} names {ip}");
            }
        }
        Ok(Source::Local(path)) => panic!("{url:?}: a server path ({path}) accepted where none is allowed"),
        Err(e) => assert!(!e.to_string().is_empty()),
    }
}
