//! The command layer: parses arguments, reads files, prints results. Errors are `anyhow` with
//! action-phrased context; `main` prints the chain and any hint and picks the exit code.

mod app_cmd;
mod cert_cmd;
pub mod client;
mod dataset_cmd;
pub mod doctor_cmd;
mod env_cmd;
mod files;
mod registry_cmd;
mod template_cmd;
mod user_cmd;
mod validate_cmd;

use clap::{Parser, Subcommand, ValueEnum};
use std::io::Write as _;
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "offshoot", version, about = "Every git branch its own running environment, from Release's configuration files.")]
pub struct Cli {
    /// Output format.
    #[arg(long, global = true, value_enum, default_value_t = Output::Human)]
    output: Output,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Output {
    Human,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Check an Application Template, Environment Variables file, `.release.yaml`, or a whole
    /// repository; report every problem with file, line and column.
    Validate(validate_cmd::Args),
    /// Generate and resolve templates.
    #[command(subcommand)]
    Template(template_cmd::Command),
    /// Run the control plane: API, environment controller and router.
    Server(Box<ServerArgs>),
    /// Applications: a repository's template and variables.
    #[command(subcommand)]
    App(app_cmd::Command),
    /// Environments: one running copy of an application per branch.
    #[command(subcommand)]
    Env(env_cmd::Command),
    /// Instant Datasets: pools of database clones that environments check out at creation.
    #[command(subcommand)]
    Dataset(dataset_cmd::Command),
    /// Credentials for container registries (private images, pushes).
    #[command(subcommand)]
    Registry(registry_cmd::Command),
    /// Certificates from ACME (automatic HTTPS).
    #[command(subcommand)]
    Cert(cert_cmd::Command),
    /// Users and their roles (admin, developer, viewer).
    #[command(subcommand)]
    User(user_cmd::UserCommand),
    /// API tokens: made (shown once), listed, revoked.
    #[command(subcommand)]
    Token(user_cmd::TokenCommand),
    /// Environments running and sleeping, and the server's limits in use.
    Status,
    /// What was done on the server, by whom (user, token, address), and how it ended (refusals
    /// included), newest first. `offshoot audit` is the same.
    #[command(alias = "audit")]
    Activity {
        /// How many entries (1 to 1000).
        #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(i64).range(1..=1000))]
        limit: i64,
        /// Only on this application and its environments.
        #[arg(long)]
        app: Option<String>,
        /// Only by this user (or `webhook`, `poller`, ...).
        #[arg(long)]
        user: Option<String>,
        /// Only the last so long (`24h`, `7d`).
        #[arg(long, value_name = "DURATION")]
        since: Option<String>,
    },
    /// Check that this machine can run `offshoot server`: the engine, base images, ports, the
    /// domain, the data directory, free disk and the database; each problem with its fix.
    Doctor(doctor_cmd::DoctorArgs),
}

/// Where a server listens and keeps its state: options of `offshoot server` that `offshoot
/// doctor` takes too, so that it checks what that server would use.
#[derive(clap::Args, Clone, Debug)]
pub struct ServerBase {
    /// The API's address (the dashboard is served there too).
    #[arg(long, default_value = "127.0.0.1:7878")]
    pub listen: std::net::SocketAddr,
    /// The router's address: every environment's hostnames are served there.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub router_listen: std::net::SocketAddr,
    /// Default: $OFFSHOOT_DATA_DIR, else ~/.local/share/offshoot.
    #[arg(long)]
    pub data_dir: Option<std::path::PathBuf>,
    /// `postgres://...` to keep state in PostgreSQL (default: SQLite in the data directory).
    #[arg(long, env = "OFFSHOOT_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// Hostnames are `<name>.<domain>`; `localhost` resolves to this machine with no DNS set-up.
    #[arg(long, default_value = "localhost")]
    pub domain: String,
    /// Where environment networks on the Docker engine take their subnets from: a private
    /// IPv4 range, a /24 per environment (the default holds 256). It must not overlap the
    /// machine's other networks; databases the environments reach on the host must accept it.
    #[arg(long, value_name = "CIDR", default_value = "10.213.0.0/16")]
    pub network_pool: String,
}

/// Arguments of `offshoot server`, handed to the server by the binary (this crate does not
/// depend on it).
#[derive(clap::Args, Clone, Debug)]
pub struct ServerArgs {
    #[command(flatten)]
    pub base: ServerBase,
    /// Networks (CIDR) allowed on `private` routes, and whose X-Forwarded-* headers are kept.
    /// Repeat for several.
    #[arg(long = "trusted-network", value_name = "CIDR", default_values = ["127.0.0.0/8", "::1/128"])]
    pub trusted_networks: Vec<String>,
    /// Also serve the router over TLS (HTTP/2 by ALPN) on this address; needs --tls-cert and
    /// --tls-key, or --acme.
    #[arg(long)]
    pub tls_listen: Option<std::net::SocketAddr>,
    /// PEM certificate chain (e.g. a wildcard for the domain); reloaded when the file changes.
    #[arg(long, requires_all = ["tls_listen", "tls_key"])]
    pub tls_cert: Option<std::path::PathBuf>,
    /// PEM private key of the certificate.
    #[arg(long, requires_all = ["tls_listen", "tls_cert"])]
    pub tls_key: Option<std::path::PathBuf>,
    #[command(flatten)]
    pub acme: AcmeArgs,
    /// Router client connections served at once.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: u32,
    /// Seconds a client has to send a request head (also the HTTP/1 keep-alive wait).
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub header_timeout: u64,
    /// Threads serving the router, each its own event loop (0: one per core).
    #[arg(long, default_value_t = 0)]
    pub router_threads: usize,
    /// Seconds without traffic after which a router connection is closed.
    #[arg(long, default_value_t = 75, value_parser = clap::value_parser!(u64).range(1..=86400))]
    pub idle_timeout: u64,
    /// Seconds a request for a sleeping environment is held while it wakes; then 503 with
    /// `Retry-After` (a browser gets a page that reloads itself after 2 s).
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub wake_timeout: u64,
    /// Where git hosts reach this server's webhooks (default: http://<--listen>).
    #[arg(long, env = "OFFSHOOT_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// Also poll every application's repository this often, in seconds (for repositories
    /// without webhooks); off by default.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=86400))]
    pub poll_interval: Option<u64>,
    /// GitHub's REST API, for pull-request comments and commit statuses.
    #[arg(long, default_value = "https://api.github.com")]
    pub github_api_url: String,
    /// Token for GitHub's API (no feedback on pull requests without one).
    #[arg(long, env = "OFFSHOOT_GITHUB_TOKEN", hide_env_values = true)]
    pub github_token: Option<String>,
    /// GitLab's REST API, for merge-request notes and commit statuses.
    #[arg(long, default_value = "https://gitlab.com/api/v4")]
    pub gitlab_api_url: String,
    /// Token for GitLab's API (no feedback on merge requests without one).
    #[arg(long, env = "OFFSHOOT_GITLAB_TOKEN", hide_env_values = true)]
    pub gitlab_token: Option<String>,
    /// How long an environment waits for a clone when its dataset's pool is empty (seconds).
    #[arg(long, default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..=86400))]
    pub dataset_wait: u64,
    /// Most environments running at once: past it, a creation or a wake puts the least recently
    /// used idle environment to sleep first, or is refused (409).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub max_environments: Option<u64>,
    /// Most memory the running environments' services may take, counting each service's memory
    /// limit (`20GiB`, `512Mi`); past it, as --max-environments.
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub memory_budget: Option<u64>,
    /// Every container's memory limit unless its template gives one (`2GiB`, `512Mi`): no
    /// environment can starve the machine.
    #[arg(long, value_name = "SIZE", value_parser = parse_container_memory, default_value = "2GiB")]
    pub container_memory: u64,
    /// Most processes (and threads) in one container: a fork bomb stays in its container.
    #[arg(long, value_name = "N", default_value_t = 4096, value_parser = clap::value_parser!(i64).range(64..=4_194_304))]
    pub container_pids: i64,
    /// Let containers reach every service of this machine. By default (as root, with
    /// iptables) they reach only the router, their datasets' database servers and the
    /// `--allow-host-port`s: never the API, SSH or another database.
    #[arg(long)]
    pub no_host_firewall: bool,
    /// A port of this machine containers may reach besides those (a package mirror, say);
    /// repeatable.
    #[arg(long = "allow-host-port", value_name = "PORT", value_parser = clap::value_parser!(u16).range(1..))]
    pub allow_host_ports: Vec<u16>,
    /// Where static sites are stored: a directory, `file:///dir` or `s3://bucket[/prefix]`
    /// (S3 settings from AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION,
    /// AWS_ALLOW_HTTP). Default: `static` in the data directory.
    #[arg(long, value_name = "LOCATION")]
    pub static_store: Option<String>,
    /// The image static sites are built in, unless an application names its own
    /// (`offshoot app set NAME --static-builder IMAGE`).
    #[arg(long, value_name = "IMAGE", default_value = "node:22")]
    pub static_builder: String,
    /// The image Terraform `infrastructure` runs in, unless an application names its own
    /// (`offshoot app set NAME --terraform-image IMAGE`); it needs `terraform` and `/bin/sh`.
    #[arg(long, value_name = "IMAGE", default_value = "hashicorp/terraform:1.11")]
    pub terraform_image: String,
    /// How long the audit trail keeps its records (`365d`); older ones are dropped daily.
    #[arg(long, value_name = "DAYS", default_value = "365d", value_parser = parse_days)]
    pub audit_retention: u64,
    /// Where environments run: the local Docker engine, or a Kubernetes cluster (one namespace
    /// per environment; the engine still builds images).
    #[arg(long, value_enum, default_value = "docker")]
    pub runtime: ServerRuntime,
    /// Kubernetes: the kubeconfig (default: KUBECONFIG, ~/.kube/config, or in-cluster).
    #[arg(long, env = "KUBECONFIG")]
    pub kubeconfig: Option<std::path::PathBuf>,
    /// Kubernetes: the kubeconfig context (default: its current one).
    #[arg(long)]
    pub context: Option<String>,
    /// Kubernetes: push built images to this registry (`host:port[/prefix]`) and run them by digest.
    #[arg(long)]
    pub registry: Option<String>,
    /// Kubernetes: ingress class of public routes.
    #[arg(long, default_value = "nginx")]
    pub ingress_class: String,
    /// Kubernetes: ingress class of `visibility: private` routes.
    #[arg(long, default_value = "nginx-internal")]
    pub private_ingress_class: String,
    /// Kubernetes: the router's address as the cluster reaches it (`IP:PORT`); static sites'
    /// ingresses send their traffic there (the router serves them from the site storage).
    #[arg(long, value_name = "IP:PORT")]
    pub static_upstream: Option<std::net::SocketAddr>,
    /// Kubernetes: serve every Ingress over HTTPS with a certificate cert-manager issues from
    /// this ClusterIssuer (without it, the ACME wildcard of --acme-dns, when there is one).
    #[arg(long, value_name = "NAME")]
    pub cert_manager_issuer: Option<String>,
    #[command(flatten)]
    pub oidc: OidcArgs,
}

/// Automatic HTTPS: certificates from an ACME certificate authority for the TLS listener.
#[derive(clap::Args, Clone, Debug)]
#[command(next_help_heading = "Automatic HTTPS")]
pub struct AcmeArgs {
    /// Get certificates from Let's Encrypt (or --acme-directory) for the router's hosts: one
    /// wildcard for the domain with --acme-dns, else one per host (HTTP-01 on the router's port).
    #[arg(long, requires = "tls_listen")]
    pub acme: bool,
    /// The ACME directory URL (default: Let's Encrypt's production directory).
    #[arg(long, value_name = "URL", requires = "tls_listen")]
    pub acme_directory: Option<String>,
    /// The contact e-mail of the ACME account.
    #[arg(long, value_name = "EMAIL")]
    pub acme_email: Option<String>,
    /// Roots (PEM) to trust for the ACME server's own HTTPS, such as a test CA's.
    #[arg(long, value_name = "PEM")]
    pub acme_ca_bundle: Option<std::path::PathBuf>,
    /// DNS-01 for a wildcard certificate: `rfc2136://SERVER:PORT?zone=ZONE&key-name=KEY`
    /// (dynamic updates signed with TSIG; `&algorithm=hmac-sha512` for another HMAC).
    #[arg(long, value_name = "URL", requires = "acme_dns_key_file")]
    pub acme_dns: Option<String>,
    /// The TSIG key's secret: base64, or a BIND `key` clause.
    #[arg(long, value_name = "PATH", requires = "acme_dns")]
    pub acme_dns_key_file: Option<std::path::PathBuf>,
}

/// Single sign-on for the dashboard (OpenID Connect, authorization code with PKCE). The client
/// secret comes from --oidc-client-secret-file or the environment variable
/// OFFSHOOT_OIDC_CLIENT_SECRET, never from the command line.
#[derive(clap::Args, Clone, Debug)]
#[command(next_help_heading = "Single sign-on")]
pub struct OidcArgs {
    /// The identity provider's issuer URL (https; discovery below it). Register the client's
    /// redirect URI as PUBLIC_URL/ui/sso/callback and its post-logout URI as PUBLIC_URL/ui/login.
    #[arg(long, value_name = "URL", requires = "oidc_client_id")]
    pub oidc_issuer: Option<String>,
    /// The client id registered with the provider.
    #[arg(long, value_name = "ID", requires = "oidc_issuer")]
    pub oidc_client_id: Option<String>,
    /// A file holding the client secret (omit both it and the variable for a public client).
    #[arg(long, value_name = "PATH", requires = "oidc_issuer")]
    pub oidc_client_secret_file: Option<std::path::PathBuf>,
    /// E-mail domains whose users are made at their first sign-in (comma-separated); others
    /// sign in only if an admin made their user.
    #[arg(long, value_name = "DOMAINS", value_delimiter = ',', requires = "oidc_issuer")]
    pub oidc_allowed_domains: Vec<String>,
    /// The role of a user made at sign-in whose groups map to no role.
    #[arg(long, value_name = "ROLE", default_value = "viewer", value_parser = ["admin", "developer", "viewer"])]
    pub oidc_default_role: String,
    /// The claim listing the user's groups (in the ID token or from the userinfo endpoint).
    #[arg(long, value_name = "CLAIM", default_value = "groups")]
    pub oidc_role_claim: String,
    /// Members of this group are admins; the role follows the groups at each sign-in.
    #[arg(long, value_name = "GROUP", requires = "oidc_issuer")]
    pub oidc_admin_group: Option<String>,
    /// Members of this group are developers (unless admins).
    #[arg(long, value_name = "GROUP", requires = "oidc_issuer")]
    pub oidc_developer_group: Option<String>,
    /// The scopes asked for, besides `openid` (space- or comma-separated).
    #[arg(long, value_name = "SCOPES", default_value = "email profile")]
    pub oidc_scopes: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ServerRuntime {
    Docker,
    Kubernetes,
}

/// What the binary should do after parsing.
pub enum Dispatch {
    Exit(ExitCode),
    Server(Box<ServerArgs>),
    /// `offshoot doctor`: the binary runs the checks, then prints them with
    /// [`doctor_cmd::report`] (`json`: `--output json`).
    Doctor {
        args: doctor_cmd::DoctorArgs,
        json: bool,
    },
}

/// Parses arguments and runs client commands; `offshoot server` is handed back to the binary.
/// Exit codes: 0 success, 1 failure, 2 usage error.
pub fn main() -> Dispatch {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return Dispatch::Exit(ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(2)));
        }
    };
    let result = match cli.command {
        Command::Validate(args) => validate_cmd::run(args, cli.output),
        Command::Template(cmd) => template_cmd::run(cmd, cli.output),
        Command::Server(args) => return Dispatch::Server(args),
        Command::Doctor(args) => return Dispatch::Doctor { args, json: cli.output == Output::Json },
        Command::App(cmd) => app_cmd::run(cmd, cli.output),
        Command::Env(cmd) => env_cmd::run(cmd, cli.output),
        Command::Dataset(cmd) => dataset_cmd::run(cmd, cli.output),
        Command::Registry(cmd) => registry_cmd::run(cmd, cli.output),
        Command::Cert(cmd) => cert_cmd::run(cmd, cli.output),
        Command::Activity { limit, app, user, since } => activity(limit, (app, user, since), cli.output),
        Command::User(cmd) => user_cmd::run_user(cmd, cli.output),
        Command::Token(cmd) => user_cmd::run_token(cmd, cli.output),
        Command::Status => status(cli.output),
    };
    Dispatch::Exit(exit_code(result))
}

/// Prints an error chain with its hint and picks the exit code.
pub fn exit_code(result: anyhow::Result<ExitCode>) -> ExitCode {
    match result {
        Ok(code) => code,
        Err(e) => {
            report_error(&e);
            ExitCode::from(if e.downcast_ref::<UsageError>().is_some() { 2 } else { 1 })
        }
    }
}

/// A number of days: `365d` or `365`, 1 to 36,500.
fn parse_days(s: &str) -> Result<u64, String> {
    s.trim()
        .trim_end_matches('d')
        .parse::<u64>()
        .ok()
        .filter(|d| (1..=36_500).contains(d))
        .ok_or_else(|| format!("`{s}` is not a number of days: write it like `365d`"))
}

/// A size such as `20GiB`, `512Mi`, `2G` or bytes.
fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim().trim_end_matches('B');
    offshoot_template::validate::parse_quantity(t)
        .filter(|b| *b >= 1.0)
        .map(|b| b as u64)
        .ok_or_else(|| format!("`{s}` is not a size: write it like `20GiB`, `512Mi` or `2G`"))
}

/// A container's memory limit: a size of at least 16 MiB (the engine refuses less than 6).
fn parse_container_memory(s: &str) -> Result<u64, String> {
    let b = parse_size(s)?;
    if b < 16 << 20 { Err(format!("`{s}` is too little for a container: give at least 16Mi")) } else { Ok(b) }
}

/// An error in how the command was called (exit code 2).
#[derive(Debug)]
pub(crate) struct UsageError(pub String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// A suggestion shown under an error.
#[derive(Debug)]
pub(crate) struct Hint(pub String);

impl std::fmt::Display for Hint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Hint {}

fn report_error(e: &anyhow::Error) {
    let mut err = std::io::stderr().lock();
    // Hints travel as context layers; the first other layer is the error, the rest its causes.
    let mut hints = Vec::new();
    let mut first = true;
    for cause in e.chain() {
        if let Some(h) = cause.downcast_ref::<Hint>() {
            hints.push(h.0.clone());
            continue;
        }
        let _ = writeln!(err, "{}{cause}", if first { "error: " } else { "  caused by: " });
        first = false;
    }
    for h in hints {
        let _ = writeln!(err, "  hint: {h}");
    }
}

/// Writes to stdout, ignoring a closed pipe (`offshoot ... | head`).
/// Prints `v` as JSON for `--output json`, else its human form.
pub(crate) fn emit<T: serde::Serialize>(v: &T, output: Output, human: impl FnOnce(&T) -> String) {
    match output {
        Output::Json => out(&format!("{}\n", serde_json::to_string_pretty(v).unwrap_or_default())),
        Output::Human => out(&human(v)),
    }
}

/// A spinner for a long wait, ticking on its own; hidden for `--output json`.
pub(crate) fn spinner(output: Output) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new_spinner();
    if output == Output::Json {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    bar.enable_steady_tick(std::time::Duration::from_millis(120));
    bar
}

pub(crate) fn out(s: &str) {
    let mut o = std::io::stdout().lock();
    let _ = o.write_all(s.as_bytes());
}

pub(crate) fn err(s: &str) {
    let mut o = std::io::stderr().lock();
    let _ = o.write_all(s.as_bytes());
}

/// `offshoot activity`: the server's activity log, newest first.
fn status(output: Output) -> anyhow::Result<std::process::ExitCode> {
    let st: offshoot_api_types::Status = client::Api::from_env()?.get("/status")?;
    match output {
        Output::Json => out(&format!("{}\n", serde_json::to_string_pretty(&st).unwrap_or_default())),
        Output::Human => {
            let limit = st.max_environments.map_or_else(|| "no limit".to_owned(), |m| format!("of {m}"));
            let gib = |b: u64| format!("{:.1} GiB", b as f64 / (1u64 << 30) as f64);
            let budget = st.memory_budget.map_or_else(|| "no budget".to_owned(), |b| format!("of {}", gib(b)));
            out(&format!(
                "environments: {} running ({limit}), {} sleeping\nmemory (services' limits): {} ({budget})\n",
                st.running,
                st.sleeping,
                gib(st.memory_used)
            ));
        }
    }
    Ok(std::process::ExitCode::SUCCESS)
}

fn activity(
    limit: i64,
    (app, user, since): (Option<String>, Option<String>, Option<String>),
    output: Output,
) -> anyhow::Result<std::process::ExitCode> {
    let mut q = format!("/activity?limit={limit}");
    for (k, v) in [("app", app), ("user", user), ("since", since)] {
        if let Some(v) = v {
            q.push_str(&format!("&{k}={}", client::enc(&v)));
        }
    }
    let list: Vec<offshoot_api_types::Activity> = client::Api::from_env()?.get(&q)?;
    match output {
        Output::Json => out(&format!("{}\n", serde_json::to_string_pretty(&list).unwrap_or_default())),
        Output::Human if list.is_empty() => out("Nothing was done yet.\n"),
        Output::Human => {
            let mut text = format!("{:<10} {:<24} {:<13} {:<20} {:<8} DETAIL\n", "WHEN", "WHO", "WHAT", "ON", "OUTCOME");
            for a in &list {
                let detail = a.detail.as_deref().unwrap_or("").lines().next().unwrap_or("");
                let who = match (&a.token_id, &a.address) {
                    (Some(t), _) => format!("{} ({t})", a.actor),
                    _ => a.actor.clone(),
                };
                text.push_str(&format!(
                    "{:<10} {:<24} {:<13} {:<20} {:<8} {detail}\n",
                    dataset_cmd::relative(a.at),
                    who,
                    a.operation,
                    a.target,
                    a.outcome
                ));
            }
            out(&text);
        }
    }
    Ok(std::process::ExitCode::SUCCESS)
}
