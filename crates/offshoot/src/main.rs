//! The `offshoot` binary: the CLI, and `offshoot server`, which it hands to the control plane.

use std::process::ExitCode;

fn main() -> ExitCode {
    match offshoot_cli::main() {
        offshoot_cli::Dispatch::Exit(code) => code,
        offshoot_cli::Dispatch::Server(args) => offshoot_cli::exit_code(server(*args)),
        offshoot_cli::Dispatch::Doctor { args, json } => offshoot_cli::exit_code(doctor(args, json)),
    }
}

fn doctor(args: offshoot_cli::doctor_cmd::DoctorArgs, json: bool) -> anyhow::Result<ExitCode> {
    let base = args.base;
    let config = offshoot_doctor::Config {
        listen: base.listen,
        router_listen: base.router_listen,
        data_dir: base.data_dir.unwrap_or_else(offshoot_cli::client::default_data_dir),
        database_url: base.database_url,
        domain: base.domain,
        images: args.images,
        network_pool: pool(&base.network_pool)?,
    };
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let report = rt.block_on(offshoot_doctor::run(&config));
    Ok(offshoot_cli::doctor_cmd::report(&report, json))
}

/// `--network-pool`, checked.
fn pool(text: &str) -> anyhow::Result<offshoot_server::NetworkPool> {
    text.parse().map_err(|e: String| anyhow::anyhow!("--network-pool: {e}"))
}

/// Automatic HTTPS's settings, with the DNS provider's key read from its file.
fn acme(a: &offshoot_cli::AcmeArgs) -> anyhow::Result<Option<offshoot_server::AcmeConfig>> {
    use anyhow::Context as _;
    if !a.acme && a.acme_directory.is_none() {
        anyhow::ensure!(a.acme_dns.is_none(), "--acme-dns needs --acme");
        return Ok(None);
    }
    let dns = match (&a.acme_dns, &a.acme_dns_key_file) {
        (Some(url), Some(path)) => {
            let key = std::fs::read_to_string(path).with_context(|| format!("--acme-dns-key-file: cannot read `{}`", path.display()))?;
            Some(offshoot_server::Rfc2136::parse(url, &key)?)
        }
        _ => None,
    };
    Ok(Some(offshoot_server::AcmeConfig {
        directory: a.acme_directory.clone().unwrap_or_else(|| offshoot_server::LETS_ENCRYPT.to_owned()),
        email: a.acme_email.clone(),
        ca_bundle: a.acme_ca_bundle.clone(),
        dns,
    }))
}

/// Single sign-on's settings, with the client secret read from its file or the environment.
fn oidc(a: &offshoot_cli::OidcArgs) -> anyhow::Result<Option<offshoot_server::OidcConfig>> {
    use anyhow::Context as _;
    let (Some(issuer), Some(client_id)) = (&a.oidc_issuer, &a.oidc_client_id) else { return Ok(None) };
    let client_secret = match &a.oidc_client_secret_file {
        Some(path) => Some(
            std::fs::read_to_string(path)
                .with_context(|| format!("--oidc-client-secret-file: cannot read `{}`", path.display()))?
                .trim()
                .to_owned(),
        ),
        None => std::env::var("OFFSHOOT_OIDC_CLIENT_SECRET").ok().map(|s| s.trim().to_owned()),
    };
    Ok(Some(offshoot_server::OidcConfig {
        issuer: issuer.clone(),
        client_id: client_id.clone(),
        client_secret,
        allowed_domains: a.oidc_allowed_domains.clone(),
        default_role: a.oidc_default_role.clone(),
        role_claim: a.oidc_role_claim.clone(),
        admin_group: a.oidc_admin_group.clone(),
        developer_group: a.oidc_developer_group.clone(),
        scopes: vec![a.oidc_scopes.clone()],
    }))
}

fn server(args: offshoot_cli::ServerArgs) -> anyhow::Result<ExitCode> {
    let filter = tracing_subscriber::EnvFilter::try_from_env("OFFSHOOT_LOG").unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Logs (an access line per routed request among them) go through a writer thread, so a
    // request never waits on stderr; lines are kept, not dropped, when it falls behind.
    let (writer, _flush_on_exit) = tracing_appender::non_blocking::NonBlockingBuilder::default().lossy(false).finish(std::io::stderr());
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt().with_env_filter(filter).with_ansi(ansi).with_writer(writer).init();
    let base = args.base;
    let config = offshoot_server::Config {
        listen: base.listen,
        router_listen: base.router_listen,
        data_dir: base.data_dir.unwrap_or_else(offshoot_cli::client::default_data_dir),
        database_url: base.database_url,
        domain: base.domain,
        reconcile_every: std::time::Duration::from_secs(5),
        router: offshoot_server::RouterConfig {
            trusted: args.trusted_networks.iter().map(|n| offshoot_server::parse_network(n)).collect::<anyhow::Result<_>>()?,
            max_connections: args.max_connections as usize,
            header_read_timeout: std::time::Duration::from_secs(args.header_timeout),
            idle_timeout: std::time::Duration::from_secs(args.idle_timeout),
            wake_timeout: std::time::Duration::from_secs(args.wake_timeout),
            ..offshoot_server::RouterConfig::default()
        },
        router_threads: args.router_threads,
        public_url: args.public_url,
        poll_interval: args.poll_interval.map(std::time::Duration::from_secs),
        forges: offshoot_server::Forges {
            github: offshoot_server::Forge { api_url: args.github_api_url, token: args.github_token },
            gitlab: offshoot_server::Forge { api_url: args.gitlab_api_url, token: args.gitlab_token },
        },
        dataset_wait: std::time::Duration::from_secs(args.dataset_wait),
        capacity: offshoot_server::Capacity {
            max_environments: args.max_environments.and_then(|n| usize::try_from(n).ok()),
            memory_budget: args.memory_budget,
        },
        network_pool: pool(&base.network_pool)?,
        container_limits: offshoot_server::ContainerLimits { memory_bytes: args.container_memory, pids: args.container_pids },
        host_firewall: (!args.no_host_firewall).then_some(args.allow_host_ports),
        static_store: args.static_store,
        static_builder: args.static_builder,
        terraform_image: args.terraform_image,
        audit_retention: std::time::Duration::from_secs(args.audit_retention * 86_400),
        kubernetes: (args.runtime == offshoot_cli::ServerRuntime::Kubernetes).then(|| offshoot_server::KubernetesConfig {
            kubeconfig: args.kubeconfig.clone(),
            context: args.context.clone(),
            registry: args.registry.clone(),
            ingress_class: args.ingress_class.clone(),
            private_ingress_class: args.private_ingress_class.clone(),
            static_upstream: args.static_upstream,
            cert_manager_issuer: args.cert_manager_issuer.clone(),
        }),
        oidc: oidc(&args.oidc)?,
        acme: acme(&args.acme)?,
        tls: args.tls_listen.map(|listen| offshoot_server::TlsListen { listen, files: args.tls_cert.zip(args.tls_key) }),
    };
    // A webhook's handling awaits use cases inside use cases; an unoptimised build's frames are
    // large, so the workers get 8 MiB of stack rather than tokio's 2 (a stack overflow would
    // take the whole server down).
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().thread_stack_size(8 << 20).build()?;
    rt.block_on(offshoot_server::run(config))?;
    Ok(ExitCode::SUCCESS)
}
