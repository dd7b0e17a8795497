//! docker-compose → Application Template and Environment Variables, the way Release generates
//! them (reference §20), with a report of everything that was dropped and why.

use crate::decode::text;
use crate::diag::Diagnostics;
use crate::envvars::{EnvVarsFile, Var, VarValue};
use crate::model::{
    Build, ConfigMapFile, EnvironmentTemplate, ExecAction, Hostname, Port, PortType, Probe, Quantities, Resources, SecretFile, Service,
    Step, Task, Template, Volume, VolumeType, Workflow,
};
use crate::span::{Sp, Span, Text};
use crate::yaml::{Node, Value};
use serde::Serialize;
use std::collections::BTreeMap;

/// Reads a repository file by relative path.
pub type ReadFile<'a> = dyn Fn(&str) -> Option<String> + 'a;

/// Inputs besides the compose file itself.
#[derive(Default)]
pub struct Options<'a> {
    /// Application name; defaults to the last part of `repo_name`, else `app`.
    pub app: Option<String>,
    /// `owner/repo`, used for built images (`owner/repo/service`).
    pub repo_name: Option<String>,
    pub domain: Option<String>,
    /// Values for `${VAR}` in the compose file (the repository's `.env`).
    pub vars: BTreeMap<String, String>,
    /// Reads a file of the repository by relative path (env files, Dockerfiles for `EXPOSE`).
    pub read_file: Option<&'a ReadFile<'a>>,
    /// What a repository path is (bind mounts and `configs` of repository files become
    /// `configmap` entries); without it, only what `read_file` reads counts as there.
    pub path_kind: Option<&'a PathKindOf<'a>>,
}

/// What is at a repository path: a file, a folder, or nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PathKind {
    File,
    Folder,
}

/// Tells what is at a relative repository path (`.` is the repository itself).
pub type PathKindOf<'a> = dyn Fn(&str) -> Option<PathKind> + 'a;

/// One thing of the compose file that has no place in the template.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Dropped {
    pub line: u32,
    pub service: Option<String>,
    pub item: String,
    pub reason: String,
}

#[derive(Debug)]
pub struct Generated {
    pub template: Template,
    pub env_vars: EnvVarsFile,
    pub dropped: Vec<Dropped>,
    /// The file secrets the services mount (compose's `secrets` of a repository `file`): each
    /// one's value is that file's content, stored encrypted by whoever keeps the application,
    /// never written into the template.
    pub secret_files: Vec<SecretSource>,
}

/// A file secret of the generated application and the repository file its value is read from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SecretSource {
    pub name: String,
    pub path: String,
}

/// Parses a compose file and generates the template.
pub fn generate(file: &str, src: &str, opts: &Options<'_>) -> (Option<Generated>, Vec<crate::diag::Diagnostic>) {
    let mut d = Diagnostics::new(file);
    let g = crate::yaml::parse(src, &mut d).and_then(|root| generate_from_node(&root, opts, &mut d));
    (g, d.into_sorted())
}

/// Compose interpolation: `$$`, `$VAR`, `${VAR}`, `${VAR:-default}`, `${VAR-default}`,
/// `${VAR:?error}`, `${VAR?error}`, `${VAR:+alt}`, `${VAR+alt}`. Returns the text and the
/// names that were unset with no default; or why it is no valid interpolation, as
/// `docker compose` refuses it: a `${` not closed, or a `${...}` that is no variable reference
/// (`${secrets.x}`, `${}`).
pub fn interpolate(s: &str, vars: &BTreeMap<String, String>) -> Result<(String, Vec<String>), String> {
    let shown = |t: &str| if t.chars().count() > 60 { format!("{}…", t.chars().take(60).collect::<String>()) } else { t.to_owned() };
    let mut out = String::new();
    let mut unset = Vec::new();
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(r) = after.strip_prefix('$') {
            out.push('$');
            rest = r;
        } else if let Some(body) = after.strip_prefix('{') {
            let Some(end) = matching_brace(body) else {
                return Err(format!("`${{{}` is not closed", shown(body)));
            };
            let expr = &body[..end];
            let name_end = expr.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(expr.len());
            let (name, op) = expr.split_at(name_end);
            // The operator, and the text after it (a default, an error message, an alternative).
            let (op, text) = match op.get(..2) {
                Some(two @ (":-" | ":?" | ":+")) => (two, &op[2..]),
                _ if op.starts_with(['-', '?', '+']) => (&op[..1], &op[1..]),
                _ if op.is_empty() => ("", ""),
                _ => return Err(format!("`${{{}}}` is not a variable reference", shown(expr))),
            };
            if name.is_empty() {
                return Err(format!("`${{{}}}` names no variable", shown(expr)));
            }
            let (inner, _) = interpolate(text, vars)?;
            let val = vars.get(name);
            let set_nonempty = val.is_some_and(|v| !v.is_empty());
            let v = match op {
                ":-" => {
                    if set_nonempty {
                        val.cloned().unwrap_or_default()
                    } else {
                        inner
                    }
                }
                ":+" => {
                    if set_nonempty {
                        inner
                    } else {
                        String::new()
                    }
                }
                "-" => val.cloned().unwrap_or(inner),
                "+" => {
                    if val.is_some() {
                        inner
                    } else {
                        String::new()
                    }
                }
                ":?" if !set_nonempty => {
                    unset.push(name.to_owned());
                    String::new()
                }
                _ => match val {
                    Some(v) => v.clone(),
                    None => {
                        unset.push(name.to_owned());
                        String::new()
                    }
                },
            };
            out.push_str(&v);
            rest = &body[end + 1..];
        } else {
            let n = after.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(after.len());
            if n == 0 {
                out.push('$');
            } else {
                let name = &after[..n];
                match vars.get(name) {
                    Some(v) => out.push_str(v),
                    None => unset.push(name.to_owned()),
                }
            }
            rest = &after[n..];
        }
    }
    out.push_str(rest);
    Ok((out, unset))
}

fn matching_brace(s: &str) -> Option<usize> {
    let mut depth = 0usize;
    for (i, c) in s.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => return Some(i),
            '}' => depth -= 1,
            _ => {}
        }
    }
    None
}

/// Applies compose interpolation to every string in the tree, reporting unset variables.
fn interpolate_tree(n: &mut Node, vars: &BTreeMap<String, String>, d: &mut Diagnostics) {
    match &mut n.value {
        Value::Scalar(s) if s.text.contains('$') => {
            let (t, unset) = match interpolate(&s.text, vars) {
                Ok(done) => done,
                Err(why) => {
                    d.error(n.span, "invalid-interpolation", format!("invalid interpolation: {why}"));
                    d.hint("write `$$` for a literal `$`");
                    return;
                }
            };
            for name in unset {
                d.warn(n.span, "unset-variable", format!("`{name}` is not set; it is replaced by an empty string"));
                d.hint("set it in the repository's `.env` file, or give a default: `${NAME:-value}`");
            }
            s.text = t;
        }
        Value::Seq(items) => items.iter_mut().for_each(|i| interpolate_tree(i, vars, d)),
        Value::Map(entries) => entries.iter_mut().for_each(|(_, v)| interpolate_tree(v, vars, d)),
        _ => {}
    }
}

struct Gen<'o, 'a> {
    opts: &'o Options<'a>,
    dropped: Vec<Dropped>,
    named_volumes: Vec<String>,
    /// Top-level `configs` of repository files: name → the file's repository path.
    configs: BTreeMap<String, Result<String, String>>,
    /// Top-level `secrets` likewise, and those the services mount.
    secrets: BTreeMap<String, Result<String, String>>,
    used_secrets: Vec<SecretSource>,
}

impl Gen<'_, '_> {
    /// What is at a repository path.
    fn path_kind(&self, rel: &str) -> Option<PathKind> {
        match self.opts.path_kind {
            Some(kind) => kind(rel),
            None => self.opts.read_file.and_then(|read| read(rel)).map(|_| PathKind::File),
        }
    }

    fn drop(&mut self, span: Span, service: Option<&str>, item: impl Into<String>, reason: impl Into<String>) {
        self.dropped.push(Dropped { line: span.line, service: service.map(str::to_owned), item: item.into(), reason: reason.into() });
    }
}

fn t(s: impl Into<String>, span: Span) -> Text {
    Sp::new(s.into(), span)
}

/// Words of a compose `command`/`entrypoint`: a list as is, a string split as a shell would.
fn words(d: &mut Diagnostics, n: &Node) -> Option<Vec<Text>> {
    match &n.value {
        Value::Seq(items) => Some(items.iter().filter_map(|i| text(d, i)).collect()),
        Value::Scalar(s) => match shell_words::split(&s.text) {
            Ok(w) => Some(w.into_iter().map(|w| t(w, n.span)).collect()),
            Err(e) => {
                d.error(n.span, "invalid-value", format!("cannot split `{}` into words: {e}", s.text));
                None
            }
        },
        _ => None,
    }
}

/// A hostname label from a name: lower case, `_` and other characters as `-`.
fn label(s: &str) -> String {
    let l: String = s.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '-' }).collect();
    l.trim_matches('-').to_owned()
}

/// A hostname's first label before `-${env_id}` (7 characters): at most 55 characters, so the
/// label stays within DNS's 63, and not one `taken` already begins with.
fn host_label(wanted: &str, taken: &[Hostname]) -> String {
    const MAX: usize = 63 - 1 - 7;
    let cut = |s: &str, n: usize| s.chars().take(n).collect::<String>().trim_end_matches('-').to_owned();
    let used = |l: &str| taken.iter().any(|h| h.template.value.starts_with(&format!("{l}-${{env_id}}")));
    let mut l = cut(wanted, MAX);
    let mut n = 2;
    while used(&l) {
        let suffix = format!("-{n}");
        l = format!("{}{suffix}", cut(wanted, MAX - suffix.len()));
        n += 1;
    }
    l
}

/// Parses `"8080"`, `"80:8080"`, `"127.0.0.1:80:8080"`, `"8080/tcp"`; `None` for ranges.
fn short_port(s: &str) -> Result<(Option<String>, String, String), String> {
    let (spec, proto) = s.split_once('/').unwrap_or((s, "tcp"));
    let parts: Vec<&str> = spec.rsplitn(3, ':').collect();
    let (container, host) = match parts.as_slice() {
        [c] => (*c, None),
        [c, h] => (*c, Some(*h)),
        [c, h, _ip] => (*c, Some(*h).filter(|h| !h.is_empty())),
        _ => return Err(format!("cannot read port `{s}`")),
    };
    if container.contains('-') || host.is_some_and(|h| h.contains('-')) {
        return Err("port ranges have no equivalent in a template".into());
    }
    Ok((host.map(str::to_owned), container.to_owned(), proto.to_owned()))
}

fn seconds(s: &str) -> Option<u64> {
    let s = s.trim();
    let mut total = 0f64;
    let mut num = String::new();
    let mut rest = s;
    while !rest.is_empty() {
        let n = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        num.clear();
        num.push_str(&rest[..n]);
        rest = &rest[n..];
        let u = rest.find(|c: char| c.is_ascii_digit()).unwrap_or(rest.len());
        let unit = &rest[..u];
        rest = &rest[u..];
        let v: f64 = num.parse().ok()?;
        total += v * match unit {
            "" | "s" => 1.0,
            "ms" => 0.001,
            "us" => 0.000_001,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
    }
    Some(total.ceil().max(1.0) as u64)
}

/// Compose memory (`512m`, `1g`, `1024k`, bytes) as a Kubernetes quantity.
fn memory_quantity(s: &str) -> Option<String> {
    let s = s.trim().to_ascii_lowercase();
    let s = s.strip_suffix('b').unwrap_or(&s);
    let (num, unit) = s.split_at(s.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(s.len()));
    num.parse::<f64>().ok()?;
    let suffix = match unit {
        "" => "",
        "k" => "Ki",
        "m" => "Mi",
        "g" => "Gi",
        _ => return None,
    };
    Some(format!("{num}{suffix}"))
}

fn cpu_quantity(s: &str) -> Option<String> {
    let v: f64 = s.trim().parse().ok()?;
    Some(format!("{}m", (v * 1000.0).round() as u64))
}

/// Keys that have no equivalent, and why.
fn ignored_reason(key: &str) -> Option<&'static str> {
    Some(match key {
        "networks" | "network_mode" | "links" | "external_links" | "extra_hosts" => {
            "all services of an environment share one network and reach each other by name"
        }
        "restart" => "the runtime restarts failed services itself",
        "container_name" | "hostname" | "domainname" => "names are given per environment",
        "extends" => "`extends` is not supported; inline the extended service",
        "logging" => "logs are collected by Offshoot",
        "labels" => "labels are set by Offshoot",
        "privileged" | "cap_add" | "cap_drop" | "security_opt" | "devices" | "pid" | "ipc" | "userns_mode" => {
            "host privileges are not granted to environments"
        }
        "stdin_open" | "tty" | "init" | "stop_signal" | "stop_grace_period" | "ulimits" | "sysctls" | "shm_size" | "user"
        | "working_dir" | "platform" | "pull_policy" | "dns" | "dns_search" | "tmpfs" | "develop" => {
            "no equivalent in an Application Template"
        }
        _ => return None,
    })
}

pub(crate) fn generate_from_node(root: &Node, opts: &Options<'_>, d: &mut Diagnostics) -> Option<Generated> {
    let mut root = root.clone();
    interpolate_tree(&mut root, &opts.vars, d);
    let Some(services_node) = root.get("services") else {
        d.error(root.span, "missing-field", "compose file has no `services`");
        return None;
    };
    let Some(entries) = services_node.as_map() else {
        d.error(services_node.span, "type", format!("expected `services` to be a mapping, found {}", services_node.kind_name()));
        return None;
    };
    let repo_name = opts.repo_name.clone().or_else(|| opts.app.clone()).unwrap_or_else(|| "app".to_owned());
    let app = opts.app.clone().unwrap_or_else(|| repo_name.rsplit('/').next().unwrap_or("app").to_owned());
    let mut g = Gen {
        opts,
        dropped: Vec::new(),
        named_volumes: root
            .get("volumes")
            .and_then(Node::as_map)
            .map(|m| m.iter().filter_map(|(k, _)| k.as_text().map(str::to_owned)).collect())
            .unwrap_or_default(),
        configs: BTreeMap::new(),
        secrets: BTreeMap::new(),
        used_secrets: Vec::new(),
    };
    for (what, top) in [("configs", "config"), ("secrets", "secret")] {
        for (k, c) in root.get(what).and_then(Node::as_map).unwrap_or_default() {
            let Some(name) = k.as_text() else { continue };
            let file = c.get("file").and_then(Node::as_text);
            let found = match file {
                Some(f) => match repo_relative(f) {
                    Some(rel) if g.path_kind(&rel) == Some(PathKind::File) || (top == "config" && g.path_kind(&rel).is_some()) => Ok(rel),
                    Some(_) => Err(format!("its file `{f}` is not in the repository")),
                    None => Err(format!("its file `{f}` is outside the repository")),
                },
                None if c.get("external").is_some() && top == "secret" => Err(format!(
                    "an external secret's value is not in the repository: give the service a `secret_files` entry `{name}` and set it with `offshoot app secret set APP {name} --file < FILE`"
                )),
                None if c.get("external").is_some() => Err("external configs are not available to environments".to_owned()),
                None if top == "secret" => Err(format!(
                    "only secrets of a repository `file` are read: give the service a `secret_files` entry `{name}` and set it with `offshoot app secret set APP {name} --file < FILE`"
                )),
                None => Err("only configs of a repository `file` are available (not `content` or `environment`)".to_owned()),
            };
            if top == "config" {
                g.configs.insert(name.to_owned(), found);
            } else {
                g.secrets.insert(name.to_owned(), found);
            }
        }
    }
    for (k, v) in root.as_map().unwrap_or_default() {
        let key = k.as_text().unwrap_or_default();
        if !matches!(key, "services" | "volumes" | "version" | "name" | "configs" | "secrets") && !key.starts_with("x-") {
            let reason = match key {
                "networks" => "all services of an environment share one network",
                _ => "not part of an Application Template",
            };
            g.drop(k.span, None, format!("top-level `{key}`"), reason);
        }
        let _ = v;
    }

    let mut template = Template {
        app: Some(t(&app, Span::default())),
        auto_deploy: Some(Sp::synthetic(true)),
        domain: opts.domain.as_ref().map(|s| t(s, Span::default())),
        repo_name: Some(t(&repo_name, Span::default())),
        environment_templates: ["ephemeral", "permanent"]
            .iter()
            .map(|n| EnvironmentTemplate { name: t(*n, Span::default()), ..Default::default() })
            .collect(),
        resources: Some(Resources {
            cpu: Some(Quantities { limits: Some(t("1000m", Span::default())), requests: Some(t("100m", Span::default())) }),
            memory: Some(Quantities { limits: Some(t("1Gi", Span::default())), requests: Some(t("100Mi", Span::default())) }),
            replicas: Some(Sp::synthetic(1)),
            storage: None,
        }),
        ..Template::default()
    };
    let mut env_vars = EnvVarsFile::default();
    let mut names: Vec<String> = Vec::new();
    for (k, v) in entries {
        let Some(name) = text(d, k) else { continue };
        if let Some(p) = v.get("profiles") {
            g.drop(p.span, Some(&name), "the whole service", "it belongs to profiles that `docker compose up` does not start by default");
            continue;
        }
        names.push(name.value.clone());
        let (svc, vars) = service(&mut g, d, &name, v, &repo_name);
        if svc.ports.iter().flatten().any(|p| p.kind.as_ref().is_some_and(|k| k.value == PortType::NodePort)) {
            let host = host_label(&format!("{}-{}", label(&name), label(&app)), &template.hostnames);
            template
                .hostnames
                .push(Hostname { service: name.clone(), template: t(format!("{host}-${{env_id}}.${{domain}}"), Span::default()) });
        }
        env_vars.services.push((name.clone(), vars));
        template.services.push(svc);
    }
    // Release lists generated services (and so hostnames and tasks) by name.
    template.services.sort_by(|a, b| a.name.value.cmp(&b.name.value));
    template.hostnames.sort_by(|a, b| a.service.value.cmp(&b.service.value));
    env_vars.services.sort_by(|a, b| a.0.value.cmp(&b.0.value));
    // depends_on may only name services that were kept.
    for s in &mut template.services {
        s.depends_on.retain(|dep| {
            let keep = names.contains(&dep.value);
            if !keep {
                g.dropped.push(Dropped {
                    line: dep.span.line,
                    service: Some(s.name.value.clone()),
                    item: format!("depends_on `{}`", dep.value),
                    reason: "that service is not generated".into(),
                });
            }
            keep
        });
    }
    // Compose refuses a dependency cycle too; it is reported where the compose file has it.
    crate::validate::depends_on_cycles(d, &template.services);
    let step = |label: &str, tasks: Vec<Task>| Step {
        step: Some(t(label, Span::default())),
        tasks: tasks.into_iter().map(Sp::synthetic).collect(),
        wait_for_finish: None,
        halt_on_error: None,
    };
    let all: Vec<Task> = template.services.iter().map(|s| Task::Service(s.name.value.clone())).collect();
    // A patch redeploys what the repository makes: built images, repository files mounted, and
    // file secrets (a service whose files and secrets did not change is left running).
    let built: Vec<Task> = template
        .services
        .iter()
        .filter(|s| s.has_repo.as_ref().is_some_and(|b| b.value) || !s.configmap.is_empty() || !s.secret_files.is_empty())
        .map(|s| Task::Service(s.name.value.clone()))
        .collect();
    template.workflows = vec![
        Workflow { name: t("setup", Span::default()), parallelize: vec![step("services-0", all)], order_from: vec![] },
        Workflow {
            name: t("patch", Span::default()),
            parallelize: if built.is_empty() { vec![] } else { vec![step("services-0", built)] },
            order_from: vec![],
        },
        Workflow {
            name: t("teardown", Span::default()),
            parallelize: vec![step("remove-environment", vec![Task::RemoveEnvironment])],
            order_from: vec![],
        },
    ];
    g.dropped.sort_by_key(|d| d.line);
    Some(Generated { template, env_vars, dropped: g.dropped, secret_files: g.used_secrets })
}

fn service(g: &mut Gen<'_, '_>, d: &mut Diagnostics, name: &Text, n: &Node, repo_name: &str) -> (Service, Vec<Var>) {
    let mut s = Service { name: name.clone(), ..Service::default() };
    let mut vars = Vec::new();
    let Some(fields) = n.as_map() else {
        d.error(n.span, "type", format!("expected service `{name}` to be a mapping, found {}", n.kind_name()));
        return (s, vars);
    };
    let mut exposed: Vec<Port> = Vec::new();
    for (k, v) in fields {
        let key = k.as_text().unwrap_or_default();
        match key {
            "image" => s.image = text(d, v),
            "build" => {
                let mut b = Build::default();
                match v.as_map() {
                    None => b.context = text(d, v),
                    Some(_) => {
                        b.context = v.get("context").and_then(|c| text(d, c));
                        b.dockerfile = v.get("dockerfile").and_then(|c| text(d, c));
                        b.target = v.get("target").and_then(|c| text(d, c));
                        b.args = match v.get("args") {
                            Some(a) => match a.as_map() {
                                Some(m) => m
                                    .iter()
                                    .filter_map(|(k, v)| Some(t(format!("{}={}", k.as_text()?, v.as_text().unwrap_or_default()), k.span)))
                                    .collect(),
                                None => a.as_seq().unwrap_or_default().iter().filter_map(|i| text(d, i)).collect(),
                            },
                            None => Vec::new(),
                        };
                        for (bk, _) in v.as_map().unwrap_or_default() {
                            let bk = bk.as_text().unwrap_or_default();
                            if !matches!(bk, "context" | "dockerfile" | "target" | "args") {
                                g.drop(v.span, Some(name), format!("build `{bk}`"), "no equivalent in a template build");
                            }
                        }
                    }
                }
                if let Some(c) = &mut b.context {
                    let trimmed = c.value.trim_start_matches("./").trim_end_matches('/');
                    c.value = if trimmed.is_empty() { ".".to_owned() } else { trimmed.to_owned() };
                }
                s.build = Some(b);
            }
            "command" => s.args = words(d, v),
            "entrypoint" => s.command = words(d, v),
            "depends_on" => {
                s.depends_on = match v.as_map() {
                    Some(m) => m.iter().filter_map(|(k, _)| text(d, k)).collect(),
                    None => crate::decode::strings(d, v),
                }
            }
            "ports" => {
                for p in v.as_seq().unwrap_or_default() {
                    match port(p) {
                        Ok(port) => s.ports.get_or_insert_with(Vec::new).push(port),
                        Err(why) => g.drop(p.span, Some(name), format!("port `{}`", p.as_text().unwrap_or("…")), why),
                    }
                }
            }
            "expose" => {
                for p in v.as_seq().unwrap_or_default() {
                    if let Some(c) = p.as_text() {
                        exposed.push(container_port(c, p.span));
                    }
                }
            }
            "volumes" => {
                for vol in v.as_seq().unwrap_or_default() {
                    match volume(g, vol) {
                        Ok(Mounted::Volume(v)) => s.volumes.get_or_insert_with(Vec::new).push(*v),
                        Ok(Mounted::Files(f)) => add_configmap(&mut s.configmap, f),
                        Err(why) => {
                            let item = vol.as_text().map_or_else(|| "volume".to_owned(), |t| format!("volume `{t}`"));
                            g.drop(vol.span, Some(name), item, why);
                        }
                    }
                }
            }
            "secrets" => {
                for c in v.as_seq().unwrap_or_default() {
                    match secret(g, c) {
                        Ok(f) => s.secret_files.push(f),
                        Err(why) => {
                            let item = c.as_text().or_else(|| c.get("source").and_then(Node::as_text)).unwrap_or("…");
                            g.drop(c.span, Some(name), format!("secret `{item}`"), why);
                        }
                    }
                }
            }
            "configs" => {
                for c in v.as_seq().unwrap_or_default() {
                    match config(g, c) {
                        Ok(f) => add_configmap(&mut s.configmap, f),
                        Err(why) => {
                            let item = c.as_text().or_else(|| c.get("source").and_then(Node::as_text)).unwrap_or("…");
                            g.drop(c.span, Some(name), format!("config `{item}`"), why);
                        }
                    }
                }
            }
            "healthcheck" => s.liveness_probe = healthcheck(v),
            "environment" => vars.extend(environment(g, d, name, v)),
            "env_file" => {
                for f in crate::decode::strings(d, v) {
                    match g.opts.read_file.and_then(|read| read(f.value.trim_start_matches("./"))) {
                        Some(content) => vars.extend(parse_env_file(&content, f.span)),
                        None => {
                            g.drop(f.span, Some(name), format!("env_file `{}`", f.value), "the file could not be read from the repository")
                        }
                    }
                }
            }
            "deploy" => {
                if let Some(r) = v.get("replicas").and_then(|r| r.as_text()).and_then(|r| r.parse().ok()) {
                    s.replicas = Some(Sp::new(r, v.span));
                }
                if let Some(l) = v.get("resources").and_then(|r| r.get("limits")) {
                    if let Some(c) = l.get("cpus").and_then(|c| c.as_text()).and_then(cpu_quantity) {
                        s.cpu = Some(Quantities { limits: Some(t(c, l.span)), requests: None });
                    }
                    if let Some(m) = l.get("memory").and_then(|c| c.as_text()).and_then(memory_quantity) {
                        s.memory = Some(Quantities { limits: Some(t(m, l.span)), requests: None });
                    }
                }
            }
            "profiles" => {}
            other => {
                let reason = ignored_reason(other).unwrap_or("not understood by the generator");
                g.drop(k.span, Some(name), format!("`{other}`"), reason);
            }
        }
    }
    if s.ports.is_none() && !exposed.is_empty() {
        s.ports = Some(exposed);
    }
    if let Some(b) = &s.build {
        s.image = Some(t(format!("{repo_name}/{}", name.value), name.span));
        s.has_repo = Some(Sp::synthetic(true));
        if s.ports.is_none() {
            // No ports: the Dockerfile's EXPOSE, as Release does.
            let ctx = b.context.as_ref().map_or(".", |c| c.as_str());
            let df = b.dockerfile.as_ref().map_or("Dockerfile", |d| d.as_str());
            let path = if ctx == "." { df.to_owned() } else { format!("{ctx}/{df}") };
            if let Some(content) = g.opts.read_file.and_then(|read| read(&path)) {
                let ports: Vec<Port> = dockerfile_expose(&content).into_iter().map(|p| container_port(&p, name.span)).collect();
                if !ports.is_empty() {
                    s.ports = Some(ports);
                }
            }
        }
    } else {
        s.has_repo = Some(Sp::synthetic(false));
        if s.image.is_none() {
            d.error(name.span, "missing-field", format!("compose service `{name}` has neither `image` nor `build`"));
        }
    }
    (s, vars)
}

fn container_port(c: &str, span: Span) -> Port {
    let c = c.split('/').next().unwrap_or(c);
    Port {
        kind: Some(Sp::new(PortType::ContainerPort, span)),
        port: Some(t(c, span)),
        loadbalancer: Some(Sp::new(false, span)),
        ..Port::default()
    }
}

fn port(p: &Node) -> Result<Port, String> {
    let span = p.span;
    let (host, container, proto) = match p.as_map() {
        Some(_) => {
            let get = |k: &str| p.get(k).and_then(|v| v.as_text()).map(str::to_owned);
            let target = get("target").ok_or("long-form port without `target`")?;
            (get("published"), target, get("protocol").unwrap_or_else(|| "tcp".into()))
        }
        None => short_port(p.as_text().ok_or("expected a port")?)?,
    };
    if container.trim().is_empty() || host.as_ref().is_some_and(|h| h.trim().is_empty()) {
        return Err("the port is empty after variable substitution; is a variable unset?".into());
    }
    if proto != "tcp" {
        return Err(format!("{proto} ports cannot be routed; only tcp is supported"));
    }
    for (p, what) in std::iter::once((&container, "container port")).chain(host.as_ref().map(|h| (h, "published port"))) {
        if !p.trim().parse::<u16>().is_ok_and(|n| n > 0) {
            return Err(format!("the {what} `{}` is not a port number (1 to 65535)", p.trim()));
        }
    }
    Ok(match host {
        Some(h) => Port {
            kind: Some(Sp::new(PortType::NodePort, span)),
            target_port: Some(t(container, span)),
            port: Some(t(h, span)),
            loadbalancer: Some(Sp::new(false, span)),
            ..Port::default()
        },
        None => container_port(&container, span),
    })
}

/// Where a compose volume goes in the template.
enum Mounted {
    Volume(Box<Volume>),
    /// Files of the repository: a `configmap` entry.
    Files(ConfigMapFile),
}

/// A path of the compose file as a path inside the repository (`.` for the repository
/// itself); `None` when it is outside (absolute, `~`, or above the repository).
fn repo_relative(p: &str) -> Option<String> {
    let p = p.trim();
    if p.starts_with(['/', '~', '$']) || p.contains('\\') {
        return None;
    }
    if p.split('/').all(|seg| seg.is_empty() || seg == ".") {
        return Some(".".to_owned());
    }
    crate::envvars::normalize_repo_path(p).ok().filter(|_| p.split('/').all(|seg| seg != ".."))
}

/// A `configmap` entry's name for a repository path: its words joined by `-`.
fn configmap_name(rel: &str) -> String {
    let words: Vec<String> =
        rel.split(|c: char| !c.is_ascii_alphanumeric()).filter(|w| !w.is_empty()).map(str::to_ascii_lowercase).collect();
    if words.is_empty() { "repository".to_owned() } else { words.join("-") }
}

/// Adds an entry, its name made unique among the service's.
fn add_configmap(list: &mut Vec<ConfigMapFile>, mut f: ConfigMapFile) {
    let base = f.name.value.clone();
    let mut n = 2;
    while list.iter().any(|x| x.name.value == f.name.value) {
        f.name.value = format!("{base}-{n}");
        n += 1;
    }
    list.push(f);
}

/// A service's `configs` entry (`name`, or `{source, target}`): the top-level config's file
/// at `target` (default `/<name>`).
fn config(g: &Gen<'_, '_>, c: &Node) -> Result<ConfigMapFile, String> {
    let span = c.span;
    let (source, target) = match c.as_map() {
        Some(_) => {
            let get = |k: &str| c.get(k).and_then(Node::as_text).map(str::to_owned);
            (get("source").ok_or("long-form config without `source`")?, get("target"))
        }
        None => (c.as_text().ok_or("expected a config name")?.to_owned(), None),
    };
    let rel = match g.configs.get(&source) {
        Some(Ok(rel)) => rel.clone(),
        Some(Err(why)) => return Err(why.clone()),
        None => return Err(format!("no top-level config `{source}`")),
    };
    let target = target.unwrap_or_else(|| format!("/{source}"));
    let target = if target.starts_with('/') { target } else { format!("/{target}") };
    Ok(ConfigMapFile { name: t(configmap_name(&source), span), mount_path: Some(t(target, span)), repo_path: Some(t(rel, span)) })
}

/// A service's `secrets` entry (`name`, or `{source, target, uid, gid, mode}`): the top-level
/// secret's file, read when the application is made, mounted at `/run/secrets/<target>`.
fn secret(g: &mut Gen<'_, '_>, c: &Node) -> Result<SecretFile, String> {
    let span = c.span;
    let get = |k: &str| c.get(k).and_then(Node::as_text).map(str::to_owned);
    let source = match c.as_map() {
        Some(_) => get("source").ok_or("long-form secret without `source`")?,
        None => c.as_text().ok_or("expected a secret name")?.to_owned(),
    };
    let rel = match g.secrets.get(&source) {
        Some(Ok(rel)) => rel.clone(),
        Some(Err(why)) => return Err(why.clone()),
        None => return Err(format!("no top-level secret `{source}`")),
    };
    if !crate::model::valid_secret_file_name(&source) {
        return Err(format!("`{source}` cannot name a file secret: use letters, digits, `.`, `_` and `-`"));
    }
    // Compose writes a mode in octal (`0440`); a plain number is decimal.
    let mode = get("mode").map(|m| match m.strip_prefix('0') {
        Some(octal) if !octal.is_empty() => format!("0{octal}"),
        _ => m.parse::<u32>().map_or(m.clone(), |n| format!("0{n:o}")),
    });
    if !g.used_secrets.iter().any(|u| u.name == source) {
        g.used_secrets.push(SecretSource { name: source.clone(), path: rel });
    }
    Ok(SecretFile {
        name: t(source, span),
        mount_path: get("target").map(|x| t(x, span)),
        mode: Some(t(mode.unwrap_or_else(|| "0400".to_owned()), span)),
        uid: get("uid").map(|x| t(x, span)),
        gid: get("gid").map(|x| t(x, span)),
    })
}

fn volume(g: &Gen<'_, '_>, v: &Node) -> Result<Mounted, String> {
    let span = v.span;
    let (kind, source, target) = match v.as_map() {
        Some(_) => {
            let get = |k: &str| v.get(k).and_then(|x| x.as_text()).map(str::to_owned);
            (get("type").unwrap_or_else(|| "volume".into()), get("source"), get("target").ok_or("long-form volume without `target`")?)
        }
        None => {
            let s = v.as_text().ok_or("expected a volume")?;
            let mut parts = s.splitn(3, ':');
            let first = parts.next().unwrap_or_default().to_owned();
            match parts.next() {
                None => ("volume".to_owned(), None, first),
                Some(target) => {
                    let bind = first.starts_with(['.', '/', '~', '$']) || !g.named_volumes.contains(&first);
                    ((if bind { "bind" } else { "volume" }).to_owned(), Some(first), target.to_owned())
                }
            }
        }
    };
    match kind.as_str() {
        "volume" => {
            let Some(name) = source else {
                return Err("anonymous volumes are not kept between deployments; name it".into());
            };
            Ok(Mounted::Volume(Box::new(Volume {
                kind: Some(Sp::new(VolumeType::Persistent, span)),
                name: Some(t(name, span)),
                mount_path: Some(t(target, span)),
                ..Volume::default()
            })))
        }
        "tmpfs" => Ok(Mounted::Volume(Box::new(Volume {
            kind: Some(Sp::new(VolumeType::Shmem, span)),
            name: Some(t(label(&target), span)),
            mount_path: Some(t(target, span)),
            ..Volume::default()
        }))),
        "bind" => {
            let src = source.ok_or("a bind mount needs a `source`")?;
            let Some(rel) = repo_relative(&src) else {
                return Err(format!(
                    "`{src}` is outside the repository: environments have the repository's files, not the host's (put the files in the repository, or use a named volume)"
                ));
            };
            if g.path_kind(&rel).is_none() {
                return Err(format!(
                    "`{src}` is not in the repository (compose would mount an empty folder there): use a named volume for data a service writes"
                ));
            }
            Ok(Mounted::Files(ConfigMapFile {
                name: t(configmap_name(&rel), span),
                mount_path: Some(t(target, span)),
                repo_path: Some(t(rel, span)),
            }))
        }
        other => Err(format!("{other} volumes are not supported")),
    }
}

fn healthcheck(v: &Node) -> Option<Probe> {
    if v.get("disable").and_then(|x| x.as_text()) == Some("true") {
        return None;
    }
    let test = v.get("test")?;
    let command: Vec<String> = match &test.value {
        Value::Scalar(s) => vec!["sh".into(), "-c".into(), s.text.clone()],
        Value::Seq(items) => {
            let words: Vec<String> = items.iter().filter_map(|i| i.as_text().map(str::to_owned)).collect();
            match words.first().map(String::as_str) {
                Some("NONE") => return None,
                Some("CMD") => words[1..].to_vec(),
                Some("CMD-SHELL") => vec!["sh".into(), "-c".into(), words[1..].join(" ")],
                _ => words,
            }
        }
        _ => return None,
    };
    let num = |k: &str| v.get(k).and_then(|x| x.as_text()).and_then(|x| x.parse::<u64>().ok()).map(|n| Sp::new(n, v.span));
    let secs = |k: &str| v.get(k).and_then(|x| x.as_text()).and_then(seconds).map(|n| Sp::new(n, v.span));
    Some(Probe {
        exec: Some(ExecAction { command: command.into_iter().map(|c| t(c, test.span)).collect() }),
        // `retries: 0` is Docker's "the default" (3), not "never".
        failure_threshold: num("retries").filter(|n| n.value > 0),
        timeout_seconds: secs("timeout"),
        period_seconds: secs("interval").or(Some(Sp::new(30, v.span))),
        initial_delay_seconds: secs("start_period"),
        ..Probe::default()
    })
}

fn plain(key: &str, value: String, span: Span) -> Var {
    Var { key: t(key, span), value: Some(Sp::new(VarValue::Plain(value), span)), secret: false }
}

fn environment(g: &mut Gen<'_, '_>, d: &mut Diagnostics, service: &str, v: &Node) -> Vec<Var> {
    let mut out = Vec::new();
    match &v.value {
        Value::Map(m) => {
            for (k, val) in m {
                let Some(key) = text(d, k) else { continue };
                match val.as_text() {
                    Some(x) => out.push(plain(&key, x.to_owned(), k.span)),
                    None if val.is_null() => g.drop(
                        k.span,
                        Some(service),
                        format!("variable `{key}`"),
                        "it takes its value from the shell running compose; set it in the Environment Variables file",
                    ),
                    None => d.error(val.span, "type", format!("expected a value for `{key}`, found {}", val.kind_name())),
                }
            }
        }
        Value::Seq(items) => {
            for i in items {
                let Some(s) = i.as_text() else { continue };
                match s.split_once('=') {
                    Some((k, val)) => out.push(plain(k, val.to_owned(), i.span)),
                    None => g.drop(
                        i.span,
                        Some(service),
                        format!("variable `{s}`"),
                        "it takes its value from the shell running compose; set it in the Environment Variables file",
                    ),
                }
            }
        }
        _ => {}
    }
    out
}

/// `KEY=VALUE` lines of an env file; comments and blank lines skipped, quotes removed.
pub fn parse_env_file(content: &str, span: Span) -> Vec<Var> {
    content
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            let l = l.strip_prefix("export ").unwrap_or(l);
            let (k, v) = l.split_once('=')?;
            let v = v.trim();
            let v = v
                .strip_prefix('"')
                .and_then(|x| x.strip_suffix('"'))
                .or_else(|| v.strip_prefix('\'').and_then(|x| x.strip_suffix('\'')))
                .unwrap_or(v);
            Some(plain(k.trim(), v.to_owned(), span))
        })
        .collect()
}

/// Ports named by `EXPOSE` lines of a Dockerfile.
pub fn dockerfile_expose(content: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in content.lines() {
        let mut words = line.split_whitespace();
        if words.next().is_some_and(|w| w.eq_ignore_ascii_case("EXPOSE")) {
            for w in words {
                let p = w.split('/').next().unwrap_or(w);
                if p.parse::<u16>().is_ok() && !out.iter().any(|o| o == p) {
                    out.push(p.to_owned());
                }
            }
        }
    }
    out
}

/// A template as YAML, in Release's key order.
pub fn template_to_yaml(t: &Template) -> String {
    to_yaml(t)
}

impl Generated {
    /// The template as YAML, in Release's key order.
    pub fn template_yaml(&self) -> String {
        to_yaml(&self.template)
    }

    pub fn env_vars_yaml(&self) -> String {
        // Release writes every section, even when empty.
        #[derive(Serialize)]
        struct Out<'a> {
            defaults: &'a [Var],
            #[serde(serialize_with = "pairs")]
            services: &'a [(Text, Vec<Var>)],
            mapping: BTreeMap<String, String>,
        }
        fn pairs<S: serde::Serializer>(p: &&[(Text, Vec<Var>)], s: S) -> Result<S::Ok, S::Error> {
            s.collect_map(p.iter().map(|(k, v)| (k, v)))
        }
        to_yaml(&Out { defaults: &self.env_vars.defaults, services: &self.env_vars.services, mapping: BTreeMap::new() })
    }
}

pub(crate) fn to_yaml<T: Serialize>(v: &T) -> String {
    let body = serde_saphyr::to_string(v).unwrap_or_else(|e| format!("# could not serialize: {e}\n"));
    format!("---\n{body}")
}
