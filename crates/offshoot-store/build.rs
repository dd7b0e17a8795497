//! The migrations are embedded by `sqlx::migrate!`: a changed or new migration rebuilds the crate.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
