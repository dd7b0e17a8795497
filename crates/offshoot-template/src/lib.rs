//! Release's configuration formats, read exactly as Release users write them.
//!
//! Three stages: [`yaml`] turns text into spanned nodes; [`decode`] and the `model` modules turn
//! nodes into typed models while collecting every diagnostic at once; [`resolve`] turns a
//! model, variables and an environment into the effective spec. Nothing here does I/O.

pub mod compose;
pub(crate) mod decode;
pub mod diag;
pub mod document;
pub mod envvars;
pub mod ingress;
pub mod interp;
pub mod ledger;
pub mod masking;
pub mod model;
pub mod params;
pub mod repo;
pub mod resolve;
pub mod schedule;
pub mod schema;
pub mod secret;
pub mod span;
pub mod validate;
pub mod yaml;
