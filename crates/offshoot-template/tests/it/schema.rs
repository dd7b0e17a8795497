//! The committed JSON Schemas match the model. Regenerate with
//! `UPDATE_SCHEMAS=1 cargo test -p offshoot-template schema`.

use offshoot_template::schema;
use std::path::PathBuf;

fn check(file: &str, generated: &str) {
    let path = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into()))
        .join("../../schemas")
        .join(file);
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

/// The compatibility ledger covers the model: every field of every type has an entry (a new
/// key cannot be added without saying what each runtime does with it), and every entry names a
/// field that exists.
#[test]
fn the_ledger_has_an_entry_for_every_key_of_the_model_and_no_other() {
    use offshoot_template::ledger::{LEDGER, entry, field_types};
    let schema: serde_json::Value = serde_json::from_str(&schema::template_schema()).expect("json");
    let fields = field_types(&schema);
    assert!(fields.len() > 200, "the walk found the model's fields: {}", fields.len());
    let missing: Vec<String> = fields.keys().map(|(ty, f)| format!("{ty}.{f}")).filter(|k| entry(k).is_none()).collect();
    assert!(missing.is_empty(), "keys without a ledger entry (add them to ledger.rs): {missing:?}");
    let unknown: Vec<&str> = LEDGER
        .iter()
        .map(|e| e.key)
        .filter(|k| {
            let base = k.split('=').next().unwrap_or(k);
            let (ty, f) = base.split_once('.').unwrap_or((base, ""));
            !fields.contains_key(&(ty.to_owned(), f.to_owned()))
        })
        .collect();
    assert!(unknown.is_empty(), "ledger entries the model does not have: {unknown:?}");
    let mut keys: Vec<&str> = LEDGER.iter().map(|e| e.key).collect();
    keys.sort_unstable();
    let before = keys.len();
    keys.dedup();
    assert_eq!(keys.len(), before, "a key has two entries");
}
