//! Per-environment proxy settings (Release's `ingress` block), with NGINX ingress's defaults.

use std::time::Duration;

/// How the router treats an environment's traffic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IngressSettings {
    /// Largest request body; `None` is unlimited (`proxy_body_size: 0`). Over it: 413.
    pub body_limit: Option<u64>,
    /// Longest wait for the upstream's response head after the request was sent, and longest
    /// silence between two reads of its body. Over it: 504 (or the response is cut).
    pub read_timeout: Duration,
    /// Longest silence while sending the request body upstream. Over it: 504.
    pub send_timeout: Duration,
    /// Read the upstream's response ahead of a slow client, in memory
    /// (`buffers_number × buffer_size`) then in a temporary file (`max_temp_file_size`).
    pub buffering: bool,
    /// Largest upstream response head, and the size of one read-ahead buffer.
    pub buffer_size: usize,
    pub buffers_number: usize,
    pub max_temp_file_size: u64,
}

impl Default for IngressSettings {
    fn default() -> Self {
        IngressSettings {
            body_limit: Some(1 << 20),
            read_timeout: Duration::from_secs(60),
            send_timeout: Duration::from_secs(60),
            buffering: false,
            buffer_size: 4096,
            buffers_number: 4,
            max_temp_file_size: 1 << 30,
        }
    }
}
