//! Integration tests of the template engine (one binary; see the modules).

mod compose_cmp;
mod compose_gen;
mod corpus;
mod diagnostics;
mod props;
mod resolving;
mod schema;

use std::path::PathBuf;

/// The conformance corpus beside the repository (`../shared/corpus/release`).
pub(crate) fn corpus_dir() -> PathBuf {
    let dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into()))
        .join("../../../shared/corpus/release");
    assert!(dir.is_dir(), "the conformance corpus is missing at {}: it is part of the test suite", dir.display());
    dir
}
