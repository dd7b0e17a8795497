//! JSON Schemas of the Application Template and the Environment Variables file, generated from
//! the model so that editors can offer completion. The committed copies live in `schemas/`.

use crate::envvars::EnvVarsFile;
use crate::model::Template;

pub fn template_schema() -> String {
    pretty(schemars::schema_for!(Template))
}

pub fn env_vars_schema() -> String {
    pretty(schemars::schema_for!(EnvVarsFile))
}

fn pretty(s: schemars::Schema) -> String {
    let mut out = serde_json::to_string_pretty(&s).unwrap_or_default();
    out.push('\n');
    out
}
