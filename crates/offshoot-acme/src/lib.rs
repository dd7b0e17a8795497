//! Certificates from ACME (RFC 8555) for the router: an account and its orders (`issue`), the
//! DNS-01 records written by RFC 2136 updates signed with TSIG (`dns`), and, pure, when a
//! certificate renews and how long a failure waits (`names`). The server keeps
//! the certificates (sealed, in the store), drives renewals and hands them to the router.

pub mod dns;
mod issue;
pub mod names;

pub use dns::{DnsError, Rfc2136};
pub use issue::{Acme, AcmeError, Http01, Issued, LETS_ENCRYPT, Solver};
pub use names::{Leaf, backoff, leaf, renew_at};
