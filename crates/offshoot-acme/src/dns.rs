//! DNS-01's records, written to the zone's primary server by RFC 2136 dynamic updates signed
//! with TSIG (RFC 8945): `rfc2136://SERVER:PORT?zone=ZONE&key-name=KEY[&algorithm=hmac-sha256]`,
//! the key's secret (base64, or a BIND `key` clause) read from a file.

use base64::Engine as _;
use hickory_client::client::{Client, ClientHandle as _};
use hickory_client::proto::ProtoError;
use hickory_client::proto::dnssec::rdata::tsig::TsigAlgorithm;
use hickory_client::proto::dnssec::tsig::TSigner;
use hickory_client::proto::op::{Message, MessageFinalizer, MessageVerifier, ResponseCode};
use hickory_client::proto::rr::rdata::TXT;
use hickory_client::proto::rr::{DNSClass, Name, RData, Record, RecordType};
use hickory_client::proto::runtime::TokioRuntimeProvider;
use hickory_client::proto::tcp::TcpClientStream;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// A DNS provider's settings that cannot be used, or an update the server refused.
#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    #[error("--acme-dns `{url}`: {why}")]
    Settings { url: String, why: String },
    #[error("the DNS server {server} cannot be reached: {why}")]
    Unreachable { server: SocketAddr, why: String },
    #[error("the DNS server {server} refused the update of `{name}`: {answer}")]
    Refused { server: SocketAddr, name: String, answer: String },
}

/// A zone's primary server taking signed updates.
#[derive(Clone)]
pub struct Rfc2136 {
    server: SocketAddr,
    zone: Name,
    key_name: Name,
    algorithm: TsigAlgorithm,
    secret: Vec<u8>,
}

impl std::fmt::Debug for Rfc2136 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the secret.
        f.debug_struct("Rfc2136").field("server", &self.server).field("zone", &self.zone).field("key_name", &self.key_name).finish()
    }
}

fn algorithm(name: &str) -> Option<TsigAlgorithm> {
    Some(match name.trim_end_matches('.').to_ascii_lowercase().as_str() {
        "hmac-sha256" => TsigAlgorithm::HmacSha256,
        "hmac-sha384" => TsigAlgorithm::HmacSha384,
        "hmac-sha512" => TsigAlgorithm::HmacSha512,
        _ => return None,
    })
}

/// The secret in a key file: base64 alone, or BIND's `key "name" { algorithm ...; secret "..."; };`.
fn secret_of(text: &str) -> Option<Vec<u8>> {
    let b64 = match text.split_once("secret") {
        Some((_, rest)) => rest.split('"').nth(1)?,
        None => text.trim(),
    };
    base64::engine::general_purpose::STANDARD.decode(b64.trim()).ok().filter(|s| !s.is_empty())
}

/// TSIG signing, and a refusal's answer told as the server gave it: its response code and
/// TSIG error (`NOTAUTH, TSIG error BADSIG`), where a bare signer reports only that the answer
/// is not signed as it expects.
struct Signer(TSigner);

impl MessageFinalizer for Signer {
    fn finalize_message(&self, message: &Message, current_time: u32) -> Result<(Vec<Record>, Option<MessageVerifier>), ProtoError> {
        let (records, verifier) = self.0.finalize_message(message, current_time)?;
        let verifier = verifier.map(|mut verify| -> MessageVerifier {
            Box::new(move |bytes: &[u8]| verify(bytes).map_err(|e| refusal(bytes).map_or(e, ProtoError::from)))
        });
        Ok((records, verifier))
    }

    fn should_finalize_message(&self, message: &Message) -> bool {
        self.0.should_finalize_message(message)
    }
}

/// A refusal's response code and TSIG error, if `bytes` is a refusal.
fn refusal(bytes: &[u8]) -> Option<String> {
    let m = Message::from_vec(bytes).ok()?;
    if m.response_code() == ResponseCode::NoError {
        return None;
    }
    let error = m.signature().iter().find_map(|r| tsig_error(r.data()));
    let named = error.map(|e| match e {
        16 => " (TSIG error BADSIG: the key's secret is not the server's)".to_owned(),
        17 => " (TSIG error BADKEY: the server does not know the key's name or algorithm)".to_owned(),
        18 => " (TSIG error BADTIME: the clocks differ by more than the fudge)".to_owned(),
        0 => String::new(),
        n => format!(" (TSIG error {n})"),
    });
    Some(format!("{}{}", m.response_code(), named.unwrap_or_default()))
}

/// The error field of a TSIG record's RDATA (RFC 8945 4.2: algorithm name, time, fudge, MAC
/// size, MAC, original id, error, other length, other data).
fn tsig_error(data: &RData) -> Option<u16> {
    use hickory_client::proto::serialize::binary::{BinEncodable as _, BinEncoder};
    if !matches!(data, RData::DNSSEC(_)) {
        return None;
    }
    let mut buf = Vec::new();
    data.emit(&mut BinEncoder::new(&mut buf)).ok()?;
    let mut at = 0;
    while *buf.get(at)? != 0 {
        at += usize::from(*buf.get(at)?) + 1;
    }
    at += 1 + 6 + 2;
    let mac = usize::from(u16::from_be_bytes([*buf.get(at)?, *buf.get(at + 1)?]));
    at += 2 + mac + 2;
    Some(u16::from_be_bytes([*buf.get(at)?, *buf.get(at + 1)?]))
}

impl Rfc2136 {
    /// Reads `rfc2136://SERVER:PORT?zone=Z&key-name=K[&algorithm=A]` and the key file's text.
    pub fn parse(url: &str, key_file: &str) -> Result<Rfc2136, DnsError> {
        let bad = |why: &str| DnsError::Settings { url: url.to_owned(), why: why.to_owned() };
        let u = url::Url::parse(url).map_err(|e| bad(&e.to_string()))?;
        if u.scheme() != "rfc2136" {
            return Err(bad("the only DNS provider is `rfc2136://SERVER:PORT?zone=ZONE&key-name=KEY`"));
        }
        let host = u.host_str().ok_or_else(|| bad("no server"))?;
        let ip: std::net::IpAddr = host.trim_matches(['[', ']']).parse().map_err(|_| bad("the server must be an IP address"))?;
        let server = SocketAddr::new(ip, u.port().unwrap_or(53));
        let q = |k: &str| u.query_pairs().find(|(key, _)| key == k).map(|(_, v)| v.into_owned());
        let zone = q("zone").ok_or_else(|| bad("no `zone=`"))?;
        let zone = Name::from_ascii(format!("{}.", zone.trim_end_matches('.'))).map_err(|e| bad(&format!("zone: {e}")))?;
        let key = q("key-name").ok_or_else(|| bad("no `key-name=`"))?;
        let key_name = Name::from_ascii(format!("{}.", key.trim_end_matches('.'))).map_err(|e| bad(&format!("key-name: {e}")))?;
        let alg = q("algorithm").unwrap_or_else(|| "hmac-sha256".into());
        let algorithm = algorithm(&alg).ok_or_else(|| bad(&format!("algorithm `{alg}`: hmac-sha256, hmac-sha384 or hmac-sha512")))?;
        let secret = secret_of(key_file).ok_or_else(|| bad("the key file holds no base64 secret"))?;
        Ok(Rfc2136 { server, zone, key_name, algorithm, secret })
    }

    /// The zone updated.
    pub fn zone(&self) -> String {
        self.zone.to_ascii().trim_end_matches('.').to_owned()
    }

    async fn client(&self) -> Result<Client, DnsError> {
        let unreachable = |e: &dyn std::fmt::Display| DnsError::Unreachable { server: self.server, why: e.to_string() };
        let signer =
            Signer(TSigner::new(self.secret.clone(), self.algorithm.clone(), self.key_name.clone(), 300).map_err(|e| unreachable(&e))?);
        let (stream, sender) = TcpClientStream::new(self.server, None, Some(Duration::from_secs(10)), TokioRuntimeProvider::new());
        let (client, bg) =
            Client::with_timeout(stream, sender, Duration::from_secs(10), Some(Arc::new(signer))).await.map_err(|e| unreachable(&e))?;
        tokio::spawn(bg);
        Ok(client)
    }

    fn record(&self, name: &str, value: &str) -> Result<Record, DnsError> {
        let fqdn = Name::from_ascii(format!("{}.", name.trim_end_matches('.'))).map_err(|e| DnsError::Refused {
            server: self.server,
            name: name.to_owned(),
            answer: e.to_string(),
        })?;
        let mut r = Record::from_rdata(fqdn, 60, RData::TXT(TXT::new(vec![value.to_owned()])));
        r.set_dns_class(DNSClass::IN);
        Ok(r)
    }

    fn check(&self, name: &str, r: Result<hickory_client::proto::xfer::DnsResponse, hickory_client::ClientError>) -> Result<(), DnsError> {
        match r {
            Ok(resp) if resp.response_code() == ResponseCode::NoError => Ok(()),
            Ok(resp) => Err(DnsError::Refused { server: self.server, name: name.to_owned(), answer: resp.response_code().to_string() }),
            Err(e) => {
                // The client's error says "proto error"; what the server answered is inside.
                let answer = match e.kind() {
                    hickory_client::ClientErrorKind::Proto(p) => p.to_string(),
                    _ => e.to_string(),
                };
                Err(DnsError::Refused { server: self.server, name: name.to_owned(), answer })
            }
        }
    }

    /// Adds a TXT record `value` at `name` (kept with the others there).
    pub async fn add_txt(&self, name: &str, value: &str) -> Result<(), DnsError> {
        let record = self.record(name, value)?;
        let mut client = self.client().await?;
        let r = client.append(record, self.zone.clone(), false).await;
        self.check(name, r)
    }

    /// Removes the TXT record `value` at `name`.
    pub async fn remove_txt(&self, name: &str, value: &str) -> Result<(), DnsError> {
        let record = self.record(name, value)?;
        let mut client = self.client().await?;
        let r = client.delete_by_rdata(record, self.zone.clone()).await;
        self.check(name, r)
    }

    /// Whether the server now answers `value` among the TXT records at `name`.
    pub async fn has_txt(&self, name: &str, value: &str) -> Result<bool, DnsError> {
        let fqdn = Name::from_ascii(format!("{}.", name.trim_end_matches('.'))).map_err(|e| DnsError::Refused {
            server: self.server,
            name: name.to_owned(),
            answer: e.to_string(),
        })?;
        let mut client = self.client().await?;
        let resp = client
            .query(fqdn, DNSClass::IN, RecordType::TXT)
            .await
            .map_err(|e| DnsError::Unreachable { server: self.server, why: e.to_string() })?;
        Ok(resp.answers().iter().any(|a| match a.data() {
            RData::TXT(t) => t.txt_data().iter().any(|d| d.as_ref() == value.as_bytes()),
            _ => false,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_are_read_and_bad_ones_named() {
        let key = "key \"offshoot\" {\n  algorithm hmac-sha256;\n  secret \"c2VjcmV0LWtleS1ieXRlcw==\";\n};\n";
        let p = Rfc2136::parse("rfc2136://127.0.0.1:5353?zone=example.test&key-name=offshoot", key).expect("parse");
        assert_eq!(p.server, "127.0.0.1:5353".parse().expect("addr"));
        assert_eq!(p.zone(), "example.test");
        assert_eq!(p.secret, b"secret-key-bytes");
        assert!(!format!("{p:?}").contains("c2Vj"), "the secret is never printed");
        assert!(Rfc2136::parse("rfc2136://127.0.0.1?zone=z.test&key-name=k", "c2VjcmV0").is_ok(), "a bare base64 secret");
        for (url, says) in [
            ("route53://x", "the only DNS provider"),
            ("rfc2136://ns.example.com?zone=z&key-name=k", "IP address"),
            ("rfc2136://127.0.0.1?key-name=k", "zone="),
            ("rfc2136://127.0.0.1?zone=z", "key-name="),
            ("rfc2136://127.0.0.1?zone=z&key-name=k&algorithm=hmac-md5", "algorithm"),
        ] {
            let e = Rfc2136::parse(url, "c2VjcmV0").expect_err(url).to_string();
            assert!(e.contains(says), "{url}: {e}");
        }
        let e = Rfc2136::parse("rfc2136://127.0.0.1?zone=z&key-name=k", "not base64!").expect_err("secret").to_string();
        assert!(e.contains("no base64 secret"), "{e}");
    }
}
