//! Whether this machine has Terraform: without it the Terraform end-to-end tests are reported
//! as ignored, with the reason (`offshoot_no_terraform`), never as passed.

fn main() {
    println!("cargo::rustc-check-cfg=cfg(offshoot_no_terraform)");
    println!("cargo::rerun-if-env-changed=PATH");
    let found = std::env::var_os("PATH").is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join("terraform").is_file()));
    if !found {
        println!("cargo::rustc-cfg=offshoot_no_terraform");
    }
}
