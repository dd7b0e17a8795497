//! Feeds the router: builds its table from the store (what each service should answer for, as
//! recorded when it became ready) and the runtime (where its running replicas are now), then
//! swaps it in; opens and closes the load-balancer ports to match.

use crate::state::Ctx;
use crate::state::RouteConflict;
use offshoot_api_types::{EnvStatus, ServiceStatus};
use offshoot_router::tcp::{TcpKey, TcpRoute};
use offshoot_router::{Backend, IngressSettings, Route, Table, Visibility};
use offshoot_store::IngressRecord;
use offshoot_template::ingress::{parse_duration, parse_size, parse_switch};
use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

/// The router's view of a service's `ingress` record; the values were validated with the
/// template, so one that does not parse keeps the default.
pub(crate) fn settings(record: Option<&IngressRecord>) -> IngressSettings {
    let mut s = IngressSettings::default();
    let Some(r) = record else { return s };
    if let Some(v) = r.proxy_body_size.as_deref().and_then(parse_size) {
        s.body_limit = (v > 0).then_some(v);
    }
    if let Some(v) = r.proxy_read_timeout.as_deref().and_then(parse_duration).filter(|d| !d.is_zero()) {
        s.read_timeout = v;
    }
    if let Some(v) = r.proxy_send_timeout.as_deref().and_then(parse_duration).filter(|d| !d.is_zero()) {
        s.send_timeout = v;
    }
    if let Some(v) = r.proxy_buffering.as_deref().and_then(parse_switch) {
        s.buffering = v;
    }
    if let Some(v) = r.proxy_buffer_size.as_deref().and_then(parse_size).and_then(|v| usize::try_from(v).ok()) {
        s.buffer_size = v.clamp(1024, 1 << 20);
    }
    if let Some(v) = r.proxy_buffers_number.as_deref().and_then(|v| v.trim().parse::<usize>().ok()) {
        s.buffers_number = v.clamp(1, 1024);
    }
    if let Some(v) = r.proxy_max_temp_file_size.as_deref().and_then(parse_size) {
        s.max_temp_file_size = v;
    }
    s
}

impl Ctx {
    /// Rebuilds the routing table from the store and the running containers.
    pub(crate) async fn refresh_routes(&self) {
        use std::sync::atomic::Ordering;
        let ticket = self.refresh_tickets.fetch_add(1, Ordering::SeqCst) + 1;
        let mut covered = self.refreshing.lock().await;
        if *covered >= ticket {
            return;
        }
        // Every request made until now is served by this rebuild, which reads state from now.
        *covered = self.refresh_tickets.load(Ordering::SeqCst);
        if let Err(e) = refresh(self).await {
            tracing::error!(error = format!("{e:#}"), "cannot rebuild the routing table");
        }
    }
}

/// Rebuilds the routing table and the load-balancer ports.
pub(crate) async fn refresh(ctx: &Ctx) -> anyhow::Result<()> {
    use offshoot_runtime::Runtime as _;
    let observed = ctx.rt.list(None).await?;
    ctx.forget_dead_except(&observed.iter().map(|o| o.name.as_str()).collect());
    let unready = ctx.unready_containers();
    // Running, ready service replicas: (env, service) → addresses.
    let mut replicas: HashMap<(&str, &str), Vec<IpAddr>> = HashMap::new();
    for o in &observed {
        if o.role == "service"
            && o.instance == ctx.instance
            && o.state == offshoot_runtime::State::Running
            && !unready.contains(&o.name)
            && let Some(ip) = o.ip
        {
            replicas.entry((o.env_id.as_str(), o.service.as_str())).or_default().push(ip);
        }
    }
    let mut routes = Vec::new();
    let mut tcp = Vec::new();
    let preferred = ctx.load_balancers();
    // Oldest first: when two environments claim one host and path, the one that had it keeps it.
    let mut envs = ctx.store.envs(None, false).await?;
    envs.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
    let mut serving_sites = std::collections::HashSet::new();
    // Team-only applications, and their bypass tokens for the router.
    let mut team = std::collections::HashSet::new();
    let mut tokens = HashMap::new();
    for (app, sealed) in ctx.store.team_apps().await? {
        if let Some(s) = sealed {
            match ctx.key.decrypt(&s, &offshoot_control::access::bypass_context(&app)) {
                Ok(t) => {
                    tokens.insert(app.clone(), t);
                }
                Err(e) => tracing::error!(%app, error = %e, "cannot open an application's bypass token"),
            }
        }
        team.insert(app);
    }
    ctx.previews.set_tokens(tokens);
    for env in envs {
        let mut ingress: Option<Arc<IngressSettings>> = None;
        for s in ctx.store.services(&env.id).await? {
            let routing = s.detail.routing.clone().unwrap_or_default();
            let settings = ingress.get_or_insert_with(|| Arc::new(settings(routing.ingress.as_ref()))).clone();
            let ips = replicas.get(&(env.id.as_str(), s.name.as_str())).cloned().unwrap_or_default();
            let upstreams: Vec<SocketAddr> =
                routing.port.map(|p| ips.iter().map(|ip| SocketAddr::new(*ip, p)).collect()).unwrap_or_default();
            let mut backend = Backend::new(&env.id, &s.name, upstreams.clone(), settings.clone());
            // A static site: the build recorded when it became ready, kept in the record while a
            // new build is made (or after one failed), so the last site served stays up.
            let site = match &s.detail.site {
                Some(key) => Some(crate::sites::site(ctx, &env.id, &s.name, key, s.detail.fallback.as_deref()).await),
                None => None,
            };
            if site.is_some() {
                serving_sites.insert((env.id.to_string(), s.name.clone()));
            }
            if let Some(Ok(site)) = &site {
                backend = Backend::content(&env.id, &s.name, Arc::new(crate::sites::Served(site.clone())), settings);
            }
            if env.status == EnvStatus::TearingDown {
                backend = backend.unavailable(EnvStatus::TearingDown.as_str());
            } else if matches!(env.status, EnvStatus::Sleeping | EnvStatus::Waking) && site.is_none() {
                // A request wakes it and waits (a static site is served asleep or awake).
                backend = backend.asleep();
            } else if let Some(Err(e)) = &site {
                backend = backend.unavailable(format!("not available: {e}"));
            } else if site.is_some() {
                // Served from storage, whatever the state of a build in progress.
            } else if s.status != ServiceStatus::Ready {
                backend = backend.unavailable(s.status.as_str());
            } else if upstreams.is_empty() {
                backend = backend.unavailable("not ready: no replica is running and passing its readiness probe");
            }
            if team.contains(env.app.as_str()) {
                backend = backend.team_only(&env.app);
            }
            let backend = Arc::new(backend);
            for (host, path, visibility) in &routing.routes {
                routes.push(Route {
                    host: host.clone(),
                    path: path.clone(),
                    visibility: Visibility::parse(visibility).unwrap_or(Visibility::Public),
                    backend: backend.clone(),
                });
            }
            // A sleeping environment's ports stay open: a connection wakes it.
            let asleep = matches!(env.status, EnvStatus::Sleeping | EnvStatus::Waking);
            if s.status == ServiceStatus::Ready || asleep {
                for p in &routing.lb_ports {
                    let key: TcpKey = (env.id.to_string(), s.name.clone(), *p);
                    let preferred = preferred.get(&key).map(SocketAddr::port);
                    let upstreams = if asleep { Vec::new() } else { ips.iter().map(|ip| SocketAddr::new(*ip, *p)).collect() };
                    tcp.push(TcpRoute { key, preferred, upstreams, asleep });
                }
            }
        }
    }
    crate::sites::retain(ctx, &serving_sites);
    let (table, rejected) = Table::build(routes);
    let mut conflicts: BTreeMap<(String, String), Vec<RouteConflict>> = BTreeMap::new();
    for (r, e) in rejected {
        tracing::warn!(env = %r.backend.env_id, service = %r.backend.service, error = %e, "route not served");
        conflicts.entry((r.backend.env_id.to_string(), r.backend.service.to_string())).or_default().push(RouteConflict {
            host: r.host.clone(),
            path: r.path.clone(),
            message: format!("not served: {e}"),
        });
    }
    ctx.set_route_conflicts(conflicts);
    ctx.router.swap(table);
    ctx.certs_wake.notify_one();
    let open = ctx.tcp.sync(tcp).await;
    ctx.set_load_balancers(open);
    Ok(())
}

/// Load-balancer addresses as shown to users: `service:port` → `127.0.0.1:N`.
pub(crate) fn lb_for_env(all: &BTreeMap<TcpKey, SocketAddr>, env_id: &str, service: &str) -> Vec<(u16, SocketAddr)> {
    all.iter().filter(|((e, s, _), _)| e == env_id && s == service).map(|((_, _, p), a)| (*p, *a)).collect()
}
