//! Semantic checks over a decoded template (and its variables): references resolve, no
//! cycles, well-formed ports, quantities, hostnames and expressions.

use crate::diag::{Diagnostics, Severity, did_you_mean};
use crate::envvars::EnvVarsFile;
use crate::interp::{self, Bare};
use crate::model::{OrderItem, Service, Task, Template, VolumeType};
use crate::span::{Sp, Text};
use std::collections::{HashMap, HashSet};

/// Placeholders a hostname template may use.
pub const HOSTNAME_PLACEHOLDERS: &[&str] = &["env_id", "domain"];

pub const WORKFLOW_NAMES: &[&str] = &["setup", "patch", "teardown"];

struct Names<'t> {
    services: Vec<&'t str>,
    jobs: Vec<&'t str>,
    /// With app imports, an unknown service may belong to an imported app.
    imports: bool,
    /// With Helm charts, an unknown service may be defined by a chart.
    charts: bool,
}

impl Names<'_> {
    /// Reports a reference to a service that does not exist: an error, or a warning when the
    /// template imports apps (checked against them when an environment is created).
    fn service(&self, d: &mut Diagnostics, name: &Text, what: &str) {
        if self.services.contains(&name.as_str()) {
            return;
        }
        let (sev, tail) = if self.imports {
            (Severity::Warning, "; it may belong to an imported app, which is checked when an environment is created")
        } else if self.charts {
            (Severity::Warning, "; it may be defined by one of the Helm charts")
        } else {
            (Severity::Error, "")
        };
        d.push(sev, name.span, "unknown-service", format!("{what} refers to service `{name}`, which is not defined{tail}"), None);
        hint_name(d, name, &self.services);
    }
}

fn hint_name(d: &mut Diagnostics, name: &str, candidates: &[&str]) {
    let mut unique: Vec<&str> = Vec::with_capacity(candidates.len());
    for c in candidates {
        if !unique.contains(c) {
            unique.push(c);
        }
    }
    let candidates = &unique[..];
    match did_you_mean(name, candidates.iter().copied()) {
        Some(s) => d.hint(format!("did you mean `{s}`?")),
        None if !candidates.is_empty() && candidates.len() <= 12 => d.hint(format!("defined: {}", candidates.join(", "))),
        None => {}
    }
}

/// Each parameter's declared type is one Offshoot knows, and its default fits its type and
/// options.
fn parameters(t: &Template, d: &mut Diagnostics) {
    unique(d, t.parameters.iter().map(|p| &p.name), "parameter");
    for p in &t.parameters {
        if let Some(k) = &p.kind
            && !crate::params::TYPES.contains(&k.as_str())
        {
            d.error(
                k.span,
                "invalid-value",
                format!("parameter `{}` has type `{k}`; the types are {}", p.name, crate::params::TYPES.join(", ")),
            );
            continue;
        }
        if let Some(def) = &p.default
            && let Some(why) = crate::params::check_value(p, def)
        {
            d.error(def.span, "invalid-value", format!("the default of {why}"));
        }
    }
}

/// Runs every semantic check on a template.
pub fn check_template(t: &Template, d: &mut Diagnostics) {
    let names = Names {
        services: t.services.iter().map(|s| s.name.as_str()).collect(),
        jobs: t.jobs.iter().map(|j| j.name.as_str()).collect(),
        imports: !t.app_imports.is_empty(),
        charts: !t.charts.is_empty(),
    };
    unique(d, t.services.iter().map(|s| &s.name), "service");
    unique(d, t.jobs.iter().map(|j| &j.name), "job");
    unique(d, t.environment_templates.iter().map(|e| &e.name), "environment template");
    unique(d, t.builds.iter().map(|b| &b.name).filter(|n| !n.is_empty()), "build");
    unique(d, t.app_imports.iter().map(|a| &a.name), "app import");
    parameters(t, d);

    for h in &t.hostnames {
        names.service(d, &h.service, "hostname");
        hostname_template(d, &h.template);
    }
    for r in t.rules.iter().chain(t.environment_templates.iter().flat_map(|e| &e.rules)) {
        names.service(d, &r.service, "rule");
        for h in &r.hostnames {
            hostname_template(d, h);
        }
        if let Some(p) = &r.path
            && !p.starts_with('/')
        {
            d.error(p.span, "invalid-path", format!("rule path `{p}` must start with `/`"));
        }
    }
    if let Some(r) = &t.resources {
        resources(d, r);
    }
    for i in t.ingress.iter().chain(t.environment_templates.iter().filter_map(|e| e.ingress.as_ref())) {
        ingress_settings(d, i);
    }
    let shared: Vec<&str> = t.shared_volumes.iter().map(|v| v.name.as_str()).collect();
    for v in &t.shared_volumes {
        quantity(d, v.size.as_ref(), Unit::Bytes);
    }
    let params: Vec<&str> = t.parameters.iter().map(|p| p.name.as_str()).collect();
    for s in &t.services {
        service(d, s, &names, &shared, &params);
        if let Some(flag) = s.add.as_ref().or(s.remove.as_ref()) {
            d.warn(
                flag.span,
                "misplaced-key",
                format!("`add`/`remove` on service `{}` only mean something inside `environment_templates`", s.name),
            );
        }
    }
    depends_on_cycles(d, &t.services);
    unique(d, t.jobs.iter().chain(&t.cron_jobs).map(|j| &j.name), "job or cron job");
    for j in &t.jobs {
        if let Some(s) = &j.schedule {
            d.warn(
                s.span,
                "misplaced-key",
                format!("job `{}` has a `schedule`, which only `cron_jobs` entries have; it runs only from workflows", j.name),
            );
            d.hint("move it to `cron_jobs` to run it on the schedule");
        }
    }
    for j in &t.cron_jobs {
        match &j.schedule {
            None => d.error(j.name.span, "missing-field", format!("cron job `{}` needs a `schedule` (five cron fields, UTC)", j.name)),
            Some(s) => {
                if let Err(why) = crate::schedule::Schedule::parse(s.as_str()) {
                    d.error(s.span, "invalid-value", format!("the `schedule` of cron job `{}`: {why}", j.name));
                    d.hint("five fields: minute hour day-of-month month day-of-week, e.g. `0 3 * * *`");
                }
            }
        }
    }
    for (j, what) in t.jobs.iter().map(|j| (j, "job")).chain(t.cron_jobs.iter().map(|j| (j, "cron job"))) {
        if let Some(from) = &j.from_services {
            names.service(d, from, &format!("{what} `{}`", j.name));
        } else if j.image.is_none() && j.build.is_none() {
            d.error(j.name.span, "missing-field", format!("{what} `{}` needs `from_services`, `image` or `build`", j.name));
        }
        if let Some(t) = &j.completed_timeout
            && t.value == 0
        {
            d.error(t.span, "invalid-value", "`completed_timeout` must be at least 1 second");
        }
        for v in j.volumes.iter().flatten() {
            if let Some(c) = &v.claim {
                claim(d, c, &shared);
            }
        }
        envs(d, &j.envs, &params);
    }
    for b in &t.builds {
        for a in &b.args {
            expression(d, a, Bare::Literal);
        }
    }
    for e in &t.environment_templates {
        if let Some(r) = &e.resources {
            resources(d, r);
        }
        for h in &e.hostnames {
            hostname_template(d, &h.template);
            if !(names.services.contains(&h.service.as_str()) || e.services.iter().any(|s| s.name.value == h.service.value)) {
                names.service(d, &h.service, "hostname");
            }
        }
        for o in &e.services {
            let add = o.add.as_ref().is_some_and(|b| b.value);
            let exists = names.services.contains(&o.name.as_str());
            if !exists && !add {
                d.error(
                    o.name.span,
                    "unknown-service",
                    format!("environment template `{}` overrides service `{}`, which is not defined", e.name, o.name),
                );
                d.hint("add `add: true` to introduce a new service in this environment template");
            } else if exists && add {
                d.warn(o.name.span, "add-existing", format!("service `{}` already exists; `add: true` merges into it", o.name));
            }
            if add {
                service(d, o, &names, &shared, &params);
            }
        }
    }
    unique(d, t.infrastructure.iter().map(|i| &i.name), "infrastructure entry");
    for i in &t.infrastructure {
        infrastructure(d, i);
    }
    workflows(d, t, &names);
}

/// An `infrastructure` entry: a Terraform module in a folder of the repository, with an
/// optional values file.
fn infrastructure(d: &mut Diagnostics, i: &crate::model::Infrastructure) {
    match &i.kind {
        Some(k) if k.value != "terraform" => {
            d.error(k.span, "unsupported-value", format!("infrastructure entry `{}` has type `{k}`; only `terraform` runs", i.name));
            d.hint("Helm charts go under `charts`, which Offshoot does not run");
        }
        Some(_) => {}
        None => {
            d.warn(
                i.name.span,
                "missing-field",
                format!("infrastructure entry `{}` has no `type`; it runs as Terraform, the only type", i.name),
            );
            d.hint("add `type: terraform`");
        }
    }
    match &i.directory {
        None => {
            d.error(i.name.span, "missing-field", format!("infrastructure entry `{}` needs a `directory` (its Terraform module)", i.name));
        }
        Some(dir) => {
            if module_dir(&dir.value) != "."
                && let Err(why) = crate::envvars::normalize_repo_path(&dir.value)
            {
                d.error(dir.span, "invalid-path", format!("the `directory` of infrastructure entry `{}`: {why}", i.name));
            }
        }
    }
    if let Some(v) = &i.values
        && let Err(why) = crate::envvars::normalize_repo_path(&v.value)
    {
        d.error(v.span, "invalid-path", format!("the `values` of infrastructure entry `{}`: {why}", i.name));
    }
}

/// A module's folder as a path in the repository: `.` for its root.
pub fn module_dir(dir: &str) -> String {
    crate::envvars::normalize_repo_path(dir).unwrap_or_else(|_| ".".to_owned())
}

fn unique<'a>(d: &mut Diagnostics, items: impl Iterator<Item = &'a Text>, what: &str) {
    let mut seen: HashMap<&str, &Text> = HashMap::new();
    for n in items {
        if let Some(first) = seen.get(n.as_str()) {
            d.error(n.span, "duplicate-name", format!("{what} `{n}` is defined twice (first at line {})", first.span.line));
        } else {
            seen.insert(n.as_str(), n);
        }
    }
}

/// A service's `secret_files`: names a file secret can have, a target without `..` mounted
/// once, an octal mode, numeric owners.
fn secret_files(d: &mut Diagnostics, s: &Service) {
    let mut targets: Vec<String> = Vec::new();
    for f in &s.secret_files {
        let what = format!("secret file `{}` of service `{}`", f.name, s.name);
        if !crate::model::valid_secret_file_name(&f.name) {
            d.error(
                f.name.span,
                "invalid-value",
                format!("{what}: a name has letters, digits, `.`, `_` and `-` (at most 100), not starting with `.`"),
            );
            continue;
        }
        let target = f.target();
        if target.split('/').any(|p| p == "..") {
            let span = f.mount_path.as_ref().map_or(f.name.span, |m| m.span);
            d.error(span, "invalid-path", format!("{what}: `{target}` must not contain `..`"));
        } else if targets.contains(&target) {
            d.error(f.name.span, "duplicate-name", format!("{what}: `{target}` is mounted twice"));
        }
        targets.push(target);
        if let Some(m) = &f.mode
            && u32::from_str_radix(m.trim_start_matches("0o"), 8).ok().is_none_or(|b| b > 0o777)
        {
            d.error(m.span, "invalid-value", format!("{what}: mode `{m}` is not an octal mode such as `0400`"));
        }
        for id in [&f.uid, &f.gid].into_iter().flatten() {
            if id.parse::<u32>().is_err() {
                d.error(id.span, "invalid-value", format!("{what}: `{id}` is not a numeric user or group id"));
            }
        }
    }
}

fn service(d: &mut Diagnostics, s: &Service, names: &Names<'_>, shared: &[&str], params: &[&str]) {
    let is_static = s.is_static.as_ref().is_some_and(|b| b.value);
    if !is_static && s.image.is_none() && s.build.is_none() {
        d.error(s.name.span, "missing-field", format!("service `{}` needs an `image`, a `build`, or `static: true`", s.name));
    }
    if is_static && s.build_command.is_none() {
        d.warn(s.name.span, "missing-field", format!("static service `{}` has no `build_command`", s.name));
    }
    // Paths inside the repository or the build's output: relative, and never above it.
    let inside = |p: &str| {
        let p = p.trim().trim_start_matches("./");
        !p.starts_with('/') && !p.contains('\\') && p.split('/').all(|seg| seg != "..")
    };
    for (field, value) in [("build_base", &s.build_base), ("build_output_directory", &s.build_output_directory)] {
        if let Some(v) = value
            && !inside(v)
        {
            d.error(
                v.span,
                "invalid-path",
                format!("`{field}` of service `{}` must be a relative path inside the repository, not `{v}`", s.name),
            );
        }
    }
    for f in &s.configmap {
        let path = f.source();
        if !inside(path) {
            d.error(
                path.span,
                "invalid-path",
                format!(
                    "configmap `{}` of service `{}` must name a file or folder inside the repository, without `..`, not `{path}`",
                    f.name, s.name
                ),
            );
        }
        if let Some(m) = &f.mount_path
            && !m.trim().starts_with('/')
        {
            d.error(
                m.span,
                "invalid-path",
                format!("`mount_path` of configmap `{}` of service `{}` must be an absolute path, not `{m}`", f.name, s.name),
            );
        }
    }
    secret_files(d, s);
    if let Some(v) = &s.static_fallback {
        if !is_static {
            d.warn(v.span, "ignored-field", format!("`static_fallback` of service `{}` is ignored: it is not `static: true`", s.name));
        }
        let off = matches!(v.trim(), "" | "false" | "none" | "off");
        if !off && !inside(v.trim_start_matches('/')) {
            d.error(
                v.span,
                "invalid-path",
                format!("`static_fallback` of service `{}` must be a file of the site or `false`, not `{v}`", s.name),
            );
        }
    }
    for dep in &s.depends_on {
        // Only an ordering hint: a name that is not here (a service of an app that imports this
        // one, say) orders nothing, so it is a warning.
        if !names.services.contains(&dep.as_str()) {
            d.warn(dep.span, "unknown-service", format!("service `{}` depends on `{dep}`, which is not defined here; the dependency is ignored unless an app in the same environment defines it", s.name));
            hint_name(d, dep, &names.services);
        }
    }
    for p in s.ports.iter().flatten() {
        if let Some(v) = &p.port {
            port_number(d, v);
        }
        if let Some(v) = &p.target_port {
            port_number(d, v);
        }
    }
    for v in s.volumes.iter().flatten() {
        match (&v.kind, &v.claim) {
            (_, Some(c)) => claim(d, c, shared),
            (Some(k), None) if matches!(k.value, VolumeType::Persistent | VolumeType::Shmem) && v.name.is_none() => {
                d.error(k.span, "missing-field", format!("a {} volume needs a `name`", k.value));
            }
            (Some(k), None) if k.value == VolumeType::S3 && v.bucket.is_none() => {
                d.error(k.span, "missing-field", "an s3 volume needs a `bucket`");
            }
            (None, None) => {
                if let Some(m) = &v.mount_path {
                    d.error(m.span, "missing-field", "volume needs a `type` (persistent, shmem, s3) or a `claim`");
                }
            }
            _ => {}
        }
        quantity(d, v.size.as_ref(), Unit::Bytes);
    }
    if let Some(st) = &s.storage {
        quantity(d, st.size.as_ref(), Unit::Bytes);
    }
    for q in s.cpu.iter() {
        quantity(d, q.limits.as_ref(), Unit::Cpu);
        quantity(d, q.requests.as_ref(), Unit::Cpu);
    }
    for q in s.memory.iter() {
        quantity(d, q.limits.as_ref(), Unit::Bytes);
        quantity(d, q.requests.as_ref(), Unit::Bytes);
    }
    for probe in s.readiness_probe.iter().chain(s.liveness_probe.iter()) {
        if let Some(p) = probe.http_get.as_ref().and_then(|h| h.port.as_ref()) {
            port_number(d, p);
        }
        if let Some(p) = probe.tcp_socket.as_ref().and_then(|h| h.port.as_ref()) {
            port_number(d, p);
        }
        if let Some(t) = probe.period_seconds.as_ref().filter(|t| t.value == 0) {
            d.error(t.span, "invalid-value", "`period_seconds` must be at least 1");
        }
        if let Some(t) = probe.failure_threshold.as_ref().filter(|t| t.value == 0) {
            d.error(t.span, "invalid-value", "`failure_threshold` must be at least 1");
        }
    }
    unique(d, s.init.iter().map(|i| &i.name), &format!("init container of `{}`", s.name));
    for i in &s.init {
        if i.image.is_none() && is_static {
            d.error(
                i.name.span,
                "missing-field",
                format!("init container `{}` needs an `image`: static service `{}` has none to share", i.name, s.name),
            );
        }
        envs(d, &i.envs, params);
    }
    envs(d, &s.envs, params);
    if let Some(b) = &s.build {
        for a in &b.args {
            expression(d, a, Bare::Literal);
        }
    }
}

fn envs(d: &mut Diagnostics, envs: &[crate::model::EnvEntry], params: &[&str]) {
    for e in envs {
        if crate::ledger::is_secret_reference(&e.value) {
            d.error(e.value.span, "unsupported", format!("`{}` is `{}`: {}", e.key, e.value, crate::ledger::SECRET_REFERENCES));
            continue;
        }
        if let Some(pieces) = expression(d, &e.value, Bare::Literal) {
            for name in interp::names(&pieces) {
                if let Some(p) = name.strip_prefix("parameters.")
                    && !params.contains(&p)
                {
                    d.error(e.value.span, "unknown-parameter", format!("`${{{name}}}` refers to parameter `{p}`, which is not defined"));
                    hint_name(d, p, params);
                }
            }
        }
    }
}

fn claim(d: &mut Diagnostics, c: &Text, shared: &[&str]) {
    if !shared.contains(&c.as_str()) {
        d.error(c.span, "unknown-volume", format!("volume claim `{c}` names no entry of `shared_volumes`"));
        hint_name(d, c, shared);
    }
}

/// Checks an interpolated string; returns its pieces when well formed.
pub(crate) fn expression(d: &mut Diagnostics, s: &Text, bare: Bare) -> Option<Vec<interp::Piece>> {
    match interp::parse(s, bare) {
        Ok(p) => Some(p),
        Err(e) => {
            d.error(s.span, "invalid-expression", e.message);
            None
        }
    }
}

fn hostname_template(d: &mut Diagnostics, h: &Text) {
    let Some(pieces) = expression(d, h, Bare::Literal) else { return };
    for name in interp::names(&pieces) {
        if !HOSTNAME_PLACEHOLDERS.contains(&name) {
            d.error(
                h.span,
                "unknown-placeholder",
                format!("hostname `{h}` uses `${{{name}}}`; hostnames may only use `${{env_id}}` and `${{domain}}`"),
            );
            return;
        }
    }
    let (sample, _) = interp::render(&pieces, &mut |n| Some(if n == "env_id" { "ted1bc4" } else { "example.com" }.to_owned()));
    if let Err(why) = dns_name(&sample) {
        d.error(h.span, "invalid-hostname", format!("hostname `{h}` is not a valid DNS name: {why}"));
    }
}

/// A DNS name: dot-separated labels of letters, digits and `-`, each at most 63 characters.
pub fn dns_name(s: &str) -> Result<(), String> {
    if s.is_empty() || s.len() > 253 {
        return Err("it must have 1 to 253 characters".into());
    }
    for label in s.split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err(format!("label `{label}` must have 1 to 63 characters"));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(format!("label `{label}` may not start or end with `-`"));
        }
        if let Some(c) = label.chars().find(|c| !(c.is_ascii_alphanumeric() || *c == '-')) {
            return Err(format!("`{c}` is not allowed (letters, digits and `-` only)"));
        }
    }
    Ok(())
}

fn port_number(d: &mut Diagnostics, p: &Text) {
    match p.trim().parse::<u32>() {
        Ok(n) if (1..=65535).contains(&n) => {}
        _ => {
            d.error(p.span, "invalid-port", format!("`{p}` is not a port number (1 to 65535)"));
        }
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Unit {
    Cpu,
    Bytes,
}

fn resources(d: &mut Diagnostics, r: &crate::model::Resources) {
    for q in r.cpu.iter() {
        quantity(d, q.limits.as_ref(), Unit::Cpu);
        quantity(d, q.requests.as_ref(), Unit::Cpu);
    }
    for q in r.memory.iter() {
        quantity(d, q.limits.as_ref(), Unit::Bytes);
        quantity(d, q.requests.as_ref(), Unit::Bytes);
    }
    if let Some(s) = &r.storage {
        quantity(d, s.size.as_ref(), Unit::Bytes);
    }
}

/// Parses a Kubernetes quantity into its value in base units (cores or bytes).
pub fn parse_quantity(s: &str) -> Option<f64> {
    let s = s.trim();
    let split = s.find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-')).unwrap_or(s.len());
    let (num, suffix) = s.split_at(split);
    let mut n: f64 = num.parse().ok()?;
    if !n.is_finite() || n < 0.0 {
        return None;
    }
    let mult = match suffix {
        "" => 1.0,
        "n" => 1e-9,
        "u" => 1e-6,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024.0,
        "Mi" => 1024.0 * 1024.0,
        "Gi" => 1024.0 * 1024.0 * 1024.0,
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        e if e.starts_with(['e', 'E']) => 10f64.powi(e[1..].parse::<i32>().ok()?),
        _ => return None,
    };
    n *= mult;
    Some(n)
}

fn quantity(d: &mut Diagnostics, q: Option<&Text>, unit: Unit) {
    let Some(q) = q else { return };
    match parse_quantity(q) {
        None => {
            let example = if unit == Unit::Cpu { "`500m` or `2`" } else { "`512Mi` or `1Gi`" };
            d.error(q.span, "invalid-quantity", format!("`{q}` is not a quantity"));
            d.hint(format!("write it like {example}"));
        }
        Some(_) if unit == Unit::Bytes && q.trim().ends_with('m') => {
            d.warn(q.span, "suspicious-quantity", format!("`{q}` means thousandths of a byte"));
            d.hint("did you mean `Mi`?");
        }
        Some(_) => {}
    }
}

/// Every `ingress` value must read as NGINX would read it.
fn ingress_settings(d: &mut Diagnostics, i: &crate::model::Ingress) {
    use crate::ingress::{parse_duration, parse_size, parse_switch};
    let sizes = [
        ("proxy_body_size", &i.proxy_body_size),
        ("proxy_buffer_size", &i.proxy_buffer_size),
        ("proxy_max_temp_file_size", &i.proxy_max_temp_file_size),
    ];
    for (key, v) in sizes {
        if let Some(v) = v
            && parse_size(v).is_none()
        {
            d.error(v.span, "invalid-value", format!("`{key}: {v}` is not a size"));
            d.hint("write bytes, or a number with `k`, `m` or `g`, like `30m`");
        }
    }
    let times = [
        ("proxy_read_timeout", &i.proxy_read_timeout),
        ("proxy_send_timeout", &i.proxy_send_timeout),
        ("proxy_connect_timeout", &i.proxy_connect_timeout),
    ];
    for (key, v) in times {
        match v.as_ref().map(|v| (v, parse_duration(v))) {
            Some((v, None)) => {
                d.error(v.span, "invalid-value", format!("`{key}: {v}` is not a duration"));
                d.hint("write seconds, like `180`, or with units, like `1m30s`");
            }
            Some((v, Some(t))) if t.is_zero() => d.error(v.span, "invalid-value", format!("`{key}` must be more than 0")),
            _ => {}
        }
    }
    if let Some(v) = &i.proxy_buffering
        && parse_switch(v).is_none()
    {
        d.error(v.span, "invalid-value", format!("`proxy_buffering: {v}` is neither on nor off"));
        d.hint("write `true` or `false`");
    }
    if let Some(v) = &i.proxy_buffers_number
        && v.trim().parse::<u32>().map_or(true, |n| n == 0 || n > 1024)
    {
        d.error(v.span, "invalid-value", format!("`proxy_buffers_number: {v}` must be a number from 1 to 1024"));
    }
}

/// Reports each `depends_on` cycle once, at the dependency that closes it.
pub(crate) fn depends_on_cycles(d: &mut Diagnostics, services: &[Service]) {
    // The first definition of a name is the one a duplicate is reported against.
    let mut index: HashMap<&str, usize> = HashMap::new();
    for (i, s) in services.iter().enumerate() {
        index.entry(s.name.as_str()).or_insert(i);
    }
    // 0 = unvisited, 1 = on the stack, 2 = done.
    let mut state = vec![0u8; services.len()];
    let mut reported: HashSet<usize> = HashSet::new();
    fn visit(
        i: usize,
        services: &[Service],
        index: &HashMap<&str, usize>,
        state: &mut [u8],
        stack: &mut Vec<usize>,
        d: &mut Diagnostics,
        reported: &mut HashSet<usize>,
    ) {
        state[i] = 1;
        stack.push(i);
        for dep in &services[i].depends_on {
            let Some(&j) = index.get(dep.as_str()) else { continue };
            if state[j] == 1 {
                let from = stack.iter().position(|&k| k == j).unwrap_or(0);
                let cycle = &stack[from..];
                if cycle.iter().all(|k| reported.insert(*k)) || cycle.len() == 1 {
                    let mut path: Vec<&str> = cycle.iter().map(|&k| services[k].name.as_str()).collect();
                    path.push(services[j].name.as_str());
                    d.error(dep.span, "dependency-cycle", format!("depends_on forms a cycle: {}", path.join(" -> ")));
                }
            } else if state[j] == 0 {
                visit(j, services, index, state, stack, d, reported);
            }
        }
        stack.pop();
        state[i] = 2;
    }
    for i in 0..services.len() {
        if state[i] == 0 {
            visit(i, services, &index, &mut state, &mut Vec::new(), d, &mut reported);
        }
    }
}

fn workflows(d: &mut Diagnostics, t: &Template, names: &Names<'_>) {
    let charts: Vec<&str> = t.charts.iter().map(|c| c.name.as_str()).collect();
    let infra: Vec<&str> = t.infrastructure.iter().map(|c| c.name.as_str()).collect();
    let mut seen: HashMap<&str, u32> = HashMap::new();
    for w in &t.workflows {
        if !WORKFLOW_NAMES.contains(&w.name.as_str()) {
            d.warn(w.name.span, "unknown-workflow", format!("workflow `{}` is never run: only setup, patch and teardown are", w.name));
            if let Some(s) = did_you_mean(&w.name, WORKFLOW_NAMES.iter().copied()) {
                d.hint(format!("did you mean `{s}`?"));
            }
        }
        if let Some(line) = seen.insert(w.name.as_str(), w.name.span.line) {
            d.warn(
                w.name.span,
                "duplicate-workflow",
                format!("workflow `{}` is defined twice (first at line {line}); the last one wins", w.name),
            );
            let missing: Vec<&str> =
                WORKFLOW_NAMES.iter().copied().filter(|n| !t.workflows.iter().any(|w| w.name.as_str() == *n)).collect();
            if !missing.is_empty() {
                d.hint(format!("was this one meant to be `{}`?", missing.join("` or `")));
            }
        }
        if !w.parallelize.is_empty() && !w.order_from.is_empty() {
            d.error(w.name.span, "conflicting-keys", format!("workflow `{}` has both `parallelize` and `order_from`; use one", w.name));
        }
        let tasks = w.parallelize.iter().flat_map(|s| s.tasks.iter()).chain(w.order_from.iter().flat_map(|o| match o {
            OrderItem::Task(t) => std::slice::from_ref(t).iter(),
            OrderItem::Step(s) => s.tasks.iter(),
        }));
        for task in tasks {
            task_ref(d, task, names, &charts, &infra);
        }
    }
}

fn task_ref(d: &mut Diagnostics, task: &Sp<Task>, names: &Names<'_>, charts: &[&str], infra: &[&str]) {
    let (kind, name, known) = match &task.value {
        Task::Service(n) => {
            names.service(d, &Sp::new(n.clone(), task.span), "workflow task");
            return;
        }
        Task::Job(n) => ("job", n, &names.jobs[..]),
        Task::Chart(n) => ("chart", n, charts),
        Task::Infrastructure(n) => ("infrastructure entry", n, infra),
        Task::AllServices | Task::RemoveEnvironment => return,
    };
    if !known.contains(&name.as_str()) {
        d.error(task.span, "unknown-task", format!("workflow task `{}` refers to {kind} `{name}`, which is not defined", task.value));
        hint_name(d, name, known);
    }
}

/// Checks between a template and its variables file.
pub fn check_env_vars(vars: &EnvVarsFile, template: Option<&Template>, d: &mut Diagnostics) {
    for (k, v) in &vars.mapping {
        if !crate::envvars::is_env_name(k) {
            d.warn(k.span, "invalid-name", format!("`{k}` is not a portable variable name"));
        }
        expression(d, v, Bare::Expand);
    }
    let check_dups = |list: &[crate::envvars::Var], d: &mut Diagnostics| {
        let mut seen: HashMap<&str, u32> = HashMap::new();
        for v in list {
            if let Some(line) = seen.insert(v.key.as_str(), v.key.span.line) {
                d.warn(
                    v.key.span,
                    "duplicate-variable",
                    format!("variable `{}` is set twice in this list (first at line {line}); the last one wins", v.key),
                );
            }
        }
    };
    check_dups(&vars.defaults, d);
    check_dups(&vars.envs, d);
    for (_, list) in &vars.services {
        check_dups(list, d);
    }
    // References to Release's secret providers are refused, not passed on as text.
    for v in vars.defaults.iter().chain(&vars.envs).chain(vars.services.iter().flat_map(|(_, l)| l)) {
        if let Some(value) = &v.value
            && crate::ledger::is_secret_reference(value.value.expose())
        {
            // The reference is a name, not a secret: it may be shown.
            d.error(value.span, "unsupported", format!("`{}` is `{}`: {}", v.key, value.value.expose(), crate::ledger::SECRET_REFERENCES));
        }
    }
    let Some(t) = template else { return };
    let known: Vec<&str> = t.services.iter().map(|s| s.name.as_str()).chain(t.jobs.iter().map(|j| j.name.as_str())).collect();
    for (svc, _) in &vars.services {
        if !known.contains(&svc.as_str()) {
            let sev = if t.app_imports.is_empty() { "" } else { " (it may belong to an imported app)" };
            d.warn(
                svc.span,
                "unknown-service",
                format!("variables for `{svc}`, which the template does not define{sev}; they are not used"),
            );
            hint_name(d, svc, &known);
        }
    }
}
