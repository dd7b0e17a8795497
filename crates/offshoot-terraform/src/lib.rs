//! Terraform `infrastructure`, the pure part: what a module declares (its variables, its own
//! backend), the variables a run gets, the script the runner container runs, and what a run
//! leaves (its outcome, its outputs as variables, the state's serial). No I/O: the server reads
//! the module from the repository, runs the script in a container and keeps the state.

use offshoot_template::envvars::VarValue;
use std::collections::{BTreeMap, BTreeSet};

/// Where the runner finds the repository, and where it leaves what the server collects.
pub const REPO_DIR: &str = "/offshoot/repo";
pub const OUT_DIR: &str = "/offshoot/out";
/// The values file converted from YAML, written into the module's folder.
pub const YAML_VALUES_FILE: &str = "offshoot-values.auto.tfvars.json";

/// What a module's root folder declares.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Module {
    /// Its input variables (`variable "NAME" {}`).
    pub variables: BTreeSet<String>,
    /// The type of the backend its `terraform` block names (`s3`), when it has one: it keeps its
    /// own state.
    pub backend: Option<String>,
    /// Files Offshoot could not read, with why (Terraform reports them in its own words).
    pub unreadable: Vec<String>,
}

/// Reads the `.tf` and `.tf.json` files of a module's root folder: `(file name, text)`.
pub fn scan<'a>(files: impl IntoIterator<Item = (&'a str, &'a str)>) -> Module {
    let mut m = Module::default();
    for (name, text) in files {
        if name.ends_with(".tf.json") {
            match serde_json::from_str::<serde_json::Value>(text) {
                Ok(v) => scan_json(&v, &mut m),
                Err(e) => m.unreadable.push(format!("{name}: {e}")),
            }
        } else if name.ends_with(".tf") {
            match hcl::parse(text) {
                Ok(body) => scan_hcl(&body, &mut m),
                Err(e) => m.unreadable.push(format!("{name}: {e}")),
            }
        }
    }
    m
}

fn scan_hcl(body: &hcl::Body, m: &mut Module) {
    for b in body.blocks() {
        match (b.identifier(), b.labels()) {
            ("variable", [name, ..]) => {
                m.variables.insert(name.as_str().to_owned());
            }
            ("terraform", _) => {
                if let Some(backend) = b.body().blocks().find(|x| x.identifier() == "backend" || x.identifier() == "cloud") {
                    let kind = backend.labels().first().map_or_else(|| backend.identifier().to_owned(), |l| l.as_str().to_owned());
                    m.backend = Some(kind);
                }
            }
            _ => {}
        }
    }
}

fn scan_json(v: &serde_json::Value, m: &mut Module) {
    if let Some(vars) = v.get("variable").and_then(serde_json::Value::as_object) {
        m.variables.extend(vars.keys().cloned());
    }
    // `"terraform": {...}` or `"terraform": [{...}]`.
    let blocks = match v.get("terraform") {
        Some(serde_json::Value::Array(list)) => list.iter().collect(),
        Some(t) => vec![t],
        None => vec![],
    };
    for t in blocks {
        for key in ["backend", "cloud"] {
            if let Some(b) = t.get(key) {
                let kind = b.as_object().and_then(|o| o.keys().next().cloned()).filter(|_| key == "backend");
                m.backend = Some(kind.unwrap_or_else(|| key.to_owned()));
            }
        }
    }
}

/// The `TF_VAR_*` a run gets: each variable the module declares that `vars` has, by its exact
/// name or, failing that, its name in upper case (`release_env_id` gets `RELEASE_ENV_ID`).
/// What the module does not declare is not passed: a secret goes only where it is used.
pub fn tf_vars(module: &Module, vars: &BTreeMap<String, VarValue>) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for name in &module.variables {
        let value = vars.get(name).or_else(|| vars.get(&name.to_ascii_uppercase()));
        if let Some(v) = value {
            out.insert(format!("TF_VAR_{name}"), v.expose().to_owned());
        }
    }
    out
}

/// What a run does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Apply,
    Destroy,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Apply => "apply",
            Action::Destroy => "destroy",
        }
    }
}

/// What the runner is given for one run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Run<'a> {
    pub action: Action,
    /// The module's folder in the repository (`.` for its root).
    pub directory: &'a str,
    /// The values file, as a path in the repository; `yaml` when it was converted into
    /// [`YAML_VALUES_FILE`] in the module's folder.
    pub values: Option<(&'a str, bool)>,
    /// A state the server kept from the last run, put in place before `init`.
    pub with_state: bool,
}

/// Quotes a word for `/bin/sh`.
fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// The script the runner container runs with `/bin/sh -c`: `init`, then `apply` or `destroy`,
/// then the outputs. It always ends with 0 and leaves in [`OUT_DIR`] what the server collects:
/// `status` (the phase that ran last and its exit code), `terraform.tfstate` (even after a
/// failure: what was made is in it) and `outputs.json`.
pub fn script(run: &Run<'_>) -> String {
    let dir = if run.directory == "." { REPO_DIR.to_owned() } else { format!("{REPO_DIR}/{}", run.directory) };
    let var_file = match run.values {
        None => String::new(),
        Some((_, true)) => format!(" -var-file={}", sh_quote(YAML_VALUES_FILE)),
        Some((path, false)) => format!(" -var-file={}", sh_quote(&format!("{REPO_DIR}/{path}"))),
    };
    let action = match run.action {
        Action::Apply => format!("terraform apply -auto-approve -input=false -no-color{var_file}"),
        Action::Destroy => format!("terraform destroy -auto-approve -input=false -no-color{var_file}"),
    };
    let state = if run.with_state { format!("cp {OUT_DIR}/in.tfstate terraform.tfstate && ") } else { String::new() };
    format!(
        "mkdir -p {OUT_DIR}; phase=setup; rc=0\n\
         cd {dir} && {state}phase=init && terraform init -input=false -no-color && phase={name} && {action} || rc=$?\n\
         if [ -f terraform.tfstate ]; then cp terraform.tfstate {OUT_DIR}/terraform.tfstate; fi\n\
         if [ $rc -eq 0 ]; then phase=output; terraform output -json -no-color > {OUT_DIR}/outputs.json || rc=$?; fi\n\
         echo \"$phase $rc\" > {OUT_DIR}/status\n\
         exit 0\n",
        dir = sh_quote(&dir),
        name = run.action.as_str(),
    )
}

/// How a run ended, as its `status` file says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// `setup` (the folder or the state could not be put in place), `init`, `apply`,
    /// `destroy` or `output`.
    pub phase: String,
    pub exit_code: i64,
}

impl Outcome {
    pub fn parse(text: &str) -> Option<Outcome> {
        let (phase, code) = text.trim().split_once(' ')?;
        Some(Outcome { phase: phase.to_owned(), exit_code: code.trim().parse().ok()? })
    }

    pub fn succeeded(&self) -> bool {
        self.exit_code == 0
    }
}

/// Terraform's own message in a run's output: from its first `Error:` on (at most `lines`
/// lines), else the last lines.
pub fn error_message(log: &str, lines: usize) -> String {
    let all: Vec<&str> = log.lines().collect();
    let start = all.iter().position(|l| l.trim_start_matches(['│', ' ']).starts_with("Error: "));
    let picked: Vec<&str> = match start {
        Some(i) => all[i..].iter().copied().filter(|l| !l.trim().is_empty()).take(lines).collect(),
        None => all[all.len().saturating_sub(lines)..].to_vec(),
    };
    picked.iter().map(|l| l.trim_end()).collect::<Vec<_>>().join("\n")
}

/// The name an output of an entry has as a variable: `<ENTRY>_<OUTPUT>` in upper case, each
/// character that cannot be in a variable's name made `_` (`infra` + `bucket_url` is
/// `INFRA_BUCKET_URL`).
pub fn var_name(entry: &str, output: &str) -> String {
    format!("{entry}_{output}").chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_uppercase() } else { '_' }).collect()
}

/// An entry's outputs as variables: `(plain, sensitive)`, each `{VARIABLE: value}`. A string
/// is its text; anything else (a number, a list, an object) its JSON.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Outputs {
    pub plain: BTreeMap<String, String>,
    pub sensitive: BTreeMap<String, String>,
}

#[derive(Debug, thiserror::Error)]
#[error("the outputs Terraform gave are not what `terraform output -json` prints: {0}")]
pub struct OutputsError(String);

/// Reads what `terraform output -json` printed.
pub fn outputs(entry: &str, json: &str) -> Result<Outputs, OutputsError> {
    let v: serde_json::Value = serde_json::from_str(json).map_err(|e| OutputsError(e.to_string()))?;
    let map = v.as_object().ok_or_else(|| OutputsError("not an object".into()))?;
    let mut out = Outputs::default();
    for (name, o) in map {
        let value = match o.get("value") {
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(other) => other.to_string(),
            None => return Err(OutputsError(format!("output `{name}` has no value"))),
        };
        let sensitive = o.get("sensitive").and_then(serde_json::Value::as_bool).unwrap_or(false);
        let target = if sensitive { &mut out.sensitive } else { &mut out.plain };
        target.insert(var_name(entry, name), value);
    }
    Ok(out)
}

/// A state file's `serial` (each write makes it greater), if it is one.
pub fn serial(state: &str) -> Option<i64> {
    serde_json::from_str::<serde_json::Value>(state).ok()?.get("serial")?.as_i64()
}

/// Whether a state still holds resources (after a destroy it holds none).
pub fn has_resources(state: &str) -> bool {
    serde_json::from_str::<serde_json::Value>(state)
        .ok()
        .and_then(|v| v.get("resources").and_then(serde_json::Value::as_array).map(|r| !r.is_empty()))
        .unwrap_or(false)
}

/// A values file written in YAML, as the JSON variables file Terraform reads.
pub fn yaml_values(file: &str, text: &str) -> Result<String, String> {
    let mut d = offshoot_template::diag::Diagnostics::new(file);
    let node = offshoot_template::yaml::parse(text, &mut d);
    if let Some(first) = d.into_sorted().into_iter().find(|x| x.severity == offshoot_template::diag::Severity::Error) {
        return Err(format!("{file}:{}: {}", first.line, first.message));
    }
    let json = node.map_or(serde_json::Value::Object(Default::default()), |n| to_json(&n));
    if !json.is_object() {
        return Err(format!("{file}: a values file is a mapping of variable names to values"));
    }
    Ok(json.to_string())
}

fn to_json(n: &offshoot_template::yaml::Node) -> serde_json::Value {
    use offshoot_template::yaml::{ScalarKind, Value};
    match &n.value {
        Value::Null => serde_json::Value::Null,
        Value::Map(entries) => {
            serde_json::Value::Object(entries.iter().map(|(k, v)| (k.as_text().unwrap_or_default().to_owned(), to_json(v))).collect())
        }
        Value::Seq(items) => serde_json::Value::Array(items.iter().map(to_json).collect()),
        Value::Scalar(s) => match s.kind {
            ScalarKind::Bool(b) => serde_json::Value::Bool(b),
            ScalarKind::Int(_) | ScalarKind::Float(_) => {
                s.text.parse::<serde_json::Number>().map_or_else(|_| serde_json::Value::String(s.text.clone()), serde_json::Value::Number)
            }
            ScalarKind::Str => serde_json::Value::String(s.text.clone()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use offshoot_template::secret::SecretString;

    #[test]
    fn a_module_declares_its_variables_and_its_backend() {
        let m = scan([
            ("main.tf", "variable \"RELEASE_ENV_ID\" {}\n# variable \"commented\" {}\nresource \"terraform_data\" \"x\" {}\n"),
            ("vars.tf", "variable \"region\" {\n  default = \"eu\"\n}\nterraform {\n  backend \"s3\" {\n    bucket = \"b\"\n  }\n}\n"),
            ("more.tf.json", r#"{"variable": {"db_password": {}}}"#),
            ("README.md", "variable \"not_read\" {}"),
            ("broken.tf", "variable \"x\" {"),
        ]);
        assert_eq!(m.variables.iter().map(String::as_str).collect::<Vec<_>>(), ["RELEASE_ENV_ID", "db_password", "region"]);
        assert_eq!(m.backend.as_deref(), Some("s3"));
        assert_eq!(m.unreadable.len(), 1);
        assert!(m.unreadable[0].starts_with("broken.tf: "), "{:?}", m.unreadable);
        assert_eq!(scan([("main.tf", "terraform {\n  required_version = \">= 1.0\"\n}\n")]).backend, None);
        assert_eq!(scan([("main.tf.json", r#"{"terraform": [{"backend": {"gcs": {}}}]}"#)]).backend.as_deref(), Some("gcs"));
    }

    #[test]
    fn only_declared_variables_are_passed_by_exact_or_upper_case_name() {
        let m = scan([("main.tf", "variable \"RELEASE_ENV_ID\" {}\nvariable \"release_app_name\" {}\nvariable \"db_password\" {}\n")]);
        let vars = BTreeMap::from([
            ("RELEASE_ENV_ID".to_owned(), VarValue::Plain("e1".into())),
            ("RELEASE_APP_NAME".to_owned(), VarValue::Plain("shop".into())),
            ("DB_PASSWORD".to_owned(), VarValue::Secret(SecretString::new("pw"))),
            ("API_TOKEN".to_owned(), VarValue::Secret(SecretString::new("not declared"))),
        ]);
        let got = tf_vars(&m, &vars);
        assert_eq!(
            got,
            BTreeMap::from([
                ("TF_VAR_RELEASE_ENV_ID".to_owned(), "e1".to_owned()),
                ("TF_VAR_db_password".to_owned(), "pw".to_owned()),
                ("TF_VAR_release_app_name".to_owned(), "shop".to_owned()),
            ])
        );
    }

    #[test]
    fn the_script_applies_or_destroys_in_the_modules_folder_and_always_leaves_its_status() {
        let apply =
            script(&Run { action: Action::Apply, directory: "infra/bucket", values: Some(("infra/prod.tfvars", false)), with_state: true });
        assert!(
            apply.contains("cd '/offshoot/repo/infra/bucket' && cp /offshoot/out/in.tfstate terraform.tfstate && phase=init"),
            "{apply}"
        );
        assert!(
            apply.contains("terraform apply -auto-approve -input=false -no-color -var-file='/offshoot/repo/infra/prod.tfvars'"),
            "{apply}"
        );
        assert!(apply.ends_with("exit 0\n"));
        let destroy = script(&Run { action: Action::Destroy, directory: ".", values: Some(("v.yaml", true)), with_state: false });
        assert!(destroy.contains("cd '/offshoot/repo' && phase=init"), "{destroy}");
        assert!(destroy.contains("terraform destroy -auto-approve -input=false -no-color -var-file='offshoot-values.auto.tfvars.json'"));
        let quoted = script(&Run { action: Action::Apply, directory: "it's", values: None, with_state: false });
        assert!(quoted.contains(r"cd '/offshoot/repo/it'\''s'"), "{quoted}");
        assert_eq!(Outcome::parse("apply 1\n"), Some(Outcome { phase: "apply".into(), exit_code: 1 }));
        assert!(Outcome::parse("output 0").is_some_and(|o| o.succeeded()));
        assert_eq!(Outcome::parse("garbage"), None);
    }

    #[test]
    fn terraforms_own_error_is_picked_from_its_output() {
        let log = "terraform_data.x: Creating...\n\nError: local-exec provisioner error\n\n  with terraform_data.x,\nError running command 'exit 3': exit status 3. Output: boom\n";
        let msg = error_message(log, 10);
        assert!(msg.starts_with("Error: local-exec provisioner error\n"), "{msg}");
        assert!(msg.ends_with("Output: boom"), "{msg}");
        assert_eq!(error_message("a\nb\nc\n", 2), "b\nc");
    }

    #[test]
    fn outputs_become_variables_named_after_their_entry() {
        let json = r#"{"bucket_url": {"sensitive": false, "type": "string", "value": "s3://b"},
            "password": {"sensitive": true, "type": "string", "value": "pw"},
            "ports": {"sensitive": false, "type": ["tuple", ["number"]], "value": [80, 443]}}"#;
        let o = outputs("make-s3-bucket", json).expect("outputs");
        assert_eq!(o.plain["MAKE_S3_BUCKET_BUCKET_URL"], "s3://b");
        assert_eq!(o.plain["MAKE_S3_BUCKET_PORTS"], "[80,443]");
        assert_eq!(o.sensitive["MAKE_S3_BUCKET_PASSWORD"], "pw");
        assert!(!o.plain.contains_key("MAKE_S3_BUCKET_PASSWORD"));
        assert!(outputs("x", "[]").is_err());
        assert!(outputs("x", r#"{"a": {}}"#).is_err());
    }

    #[test]
    fn a_states_serial_and_resources() {
        let state = r#"{"version": 4, "serial": 7, "lineage": "l", "resources": [{"type": "terraform_data"}]}"#;
        assert_eq!(serial(state), Some(7));
        assert!(has_resources(state));
        assert!(!has_resources(r#"{"version": 4, "serial": 9, "resources": []}"#));
        assert_eq!(serial("not json"), None);
    }

    #[test]
    fn yaml_values_become_json_variables() {
        let json = yaml_values("values.yaml", "bucket: my-bucket\ncount: 3\nversioned: true\ntags:\n  team: web\nzones: [a, b]\n")
            .expect("values");
        let v: serde_json::Value = serde_json::from_str(&json).expect("json");
        assert_eq!(v["bucket"], "my-bucket");
        assert_eq!(v["count"], 3);
        assert_eq!(v["versioned"], true);
        assert_eq!(v["tags"]["team"], "web");
        assert_eq!(v["zones"][1], "b");
        assert!(yaml_values("values.yaml", "- a\n- b\n").is_err());
        let bad = yaml_values("values.yaml", "a: [\n").expect_err("bad yaml");
        assert!(bad.starts_with("values.yaml:"), "{bad}");
    }
}
