//! The committed JSON Schemas match the model. Regenerate with
//! `UPDATE_SCHEMAS=1 cargo test -p offshoot-template schema`.

use offshoot_template::schema;
use std::path::PathBuf;

fn check(file: &str, generated: &str) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../schemas").join(file);
    if std::env::var_os("UPDATE_SCHEMAS").is_some() {
        std::fs::write(&path, generated).expect("write schema");
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "{} is out of date with the model; run `UPDATE_SCHEMAS=1 cargo test -p offshoot-template schema`",
        path.display()
    );
}

#[test]
fn template_schema_is_current() {
    let s = schema::template_schema();
    for key in ["hostnames", "environment_templates", "readiness_probe", "init", "order_from", "shared_volumes"] {
        assert!(s.contains(&format!("\"{key}\"")), "schema lacks {key}");
    }
    check("application-template.schema.json", &s);
}

#[test]
fn env_vars_schema_is_current() {
    check("environment-variables.schema.json", &schema::env_vars_schema());
}
