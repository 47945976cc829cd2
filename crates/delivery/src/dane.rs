//! DANE for SMTP (RFC 7672): a recipient domain whose MX records, MX host addresses and TLSA
//! records `_<port>._tcp.<host>` are DNSSEC-signed says which certificates its MX hosts
//! present. Where it does, mail goes to such a host only over TLS with a certificate its TLSA
//! records match (DANE-EE: the host's own certificate or key; DANE-TA: the authority it is
//! issued under), never in clear text.
//!
//! The relay does not validate DNSSEC itself: it asks its resolver (`[delivery] dns_resolver`,
//! else the system's first one) with the DO bit and trusts the answer's AD bit, as Postfix
//! does. So the resolver must validate, and be one the relay trusts (on the same host, or
//! reached over a network an attacker is not on). An answer without AD is insecure: DANE does
//! not apply, and delivery goes as without it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::dns::DnsError;

/// How long what DNS said of a host is used before it is asked again.
const KEEP: Duration = Duration::from_secs(300);
/// Hosts and domains remembered at most (past it, the oldest half goes).
const MAX_KEPT: usize = 10_000;
/// One DNS exchange, over UDP and again over TCP when the answer was cut short.
const DNS_TIMEOUT: Duration = Duration::from_secs(5);

/// One TLSA record (RFC 6698 2.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tlsa {
    pub usage: u8,
    pub selector: u8,
    pub matching: u8,
    pub data: Vec<u8>,
}

impl Tlsa {
    /// RFC 7672 3.1: DANE-TA(2) and DANE-EE(3), over the whole certificate or its public key,
    /// exact or SHA-256/512; PKIX-TA(0) and PKIX-EE(1) are not for SMTP.
    fn usable(&self) -> bool {
        matches!(self.usage, 2 | 3) && self.selector <= 1 && self.matching <= 2
    }

    /// Whether `cert` is the one this record names.
    fn matches(&self, cert: &CertificateDer<'_>) -> bool {
        let selected: Vec<u8> = match self.selector {
            0 => cert.as_ref().to_vec(),
            _ => match webpki::EndEntityCert::try_from(cert) {
                Ok(c) => c.subject_public_key_info().as_ref().to_vec(),
                Err(_) => return false,
            },
        };
        let digest = |alg| aws_lc_rs::digest::digest(alg, &selected).as_ref().to_vec();
        let value = match self.matching {
            0 => selected,
            1 => digest(&aws_lc_rs::digest::SHA256),
            _ => digest(&aws_lc_rs::digest::SHA512),
        };
        value == self.data
    }
}

/// What DANE asks of one MX host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostDane {
    /// Signed TLSA records: TLS is required; the certificate must match one of the usable
    /// ones (none usable: TLS without a check of the certificate, RFC 7672 2.2).
    Records(Vec<Tlsa>, Alias),
    /// The host's TLSA records could not be had although its address is signed (a failing
    /// lookup may be an attacker's): the host is not tried now.
    Indeterminate(String),
}

/// The name a host's signed CNAME records lead to (RFC 7672 2.2.2), when its TLSA records are
/// that name's: a certificate may name it instead of the host (3.2.2).
pub type Alias = Option<String>;

/// One DNS answer, with whether the resolver vouched for it (AD).
struct Answer {
    secure: bool,
    records: Vec<Record>,
    /// Where the answer's CNAME records lead from the name asked, if it has any.
    target: Option<String>,
}

/// DANE lookups, through one validating resolver, remembered for a few minutes.
pub struct Dane {
    server: SocketAddr,
    domains: Mutex<HashMap<String, (Instant, bool)>>,
    hosts: Mutex<HashMap<String, (Instant, Option<HostDane>)>>,
}

impl Dane {
    /// DANE through the resolver at `server`, or the system's first one.
    pub fn new(server: Option<SocketAddr>) -> Result<Dane, String> {
        let server = match server {
            Some(s) => s,
            None => {
                let (config, _) = hickory_resolver::system_conf::read_system_conf()
                    .map_err(|e| format!("cannot read the system resolver configuration: {e}"))?;
                config
                    .name_servers()
                    .first()
                    .map(|n| n.socket_addr)
                    .ok_or("the system has no resolver configured")?
            }
        };
        Ok(Dane {
            server,
            domains: Mutex::default(),
            hosts: Mutex::default(),
        })
    }

    /// Whether `domain`'s MX records (its address, when it has none) are signed: only then
    /// are its hosts' TLSA records looked at (RFC 7672 2.2.1: an attacker who may change the
    /// MX records could point them at a host of their own, with TLSA records of their own).
    pub async fn mx_signed(&self, domain: &str, implicit: bool) -> bool {
        let key = domain.to_ascii_lowercase();
        if let Some(signed) = fresh(&self.domains, &key) {
            return signed;
        }
        let kind = if implicit {
            RecordType::A
        } else {
            RecordType::MX
        };
        let signed =
            matches!(self.ask(domain, kind).await, Ok(a) if a.secure && !a.records.is_empty());
        keep(&self.domains, key, signed);
        signed
    }

    /// What DANE asks of `host` at `port`, given that the MX records leading to it are
    /// signed: `None` when its address or its TLSA records are not signed, or it has none.
    pub async fn host(&self, host: &str, port: u16) -> Option<HostDane> {
        let key = format!("{}:{port}", host.to_ascii_lowercase());
        if let Some(known) = fresh(&self.hosts, &key) {
            return known;
        }
        let found = self.look_up_host(host, port).await;
        // A lookup that failed is asked again at the next attempt, not remembered.
        if !matches!(found, Some(HostDane::Indeterminate(_))) {
            keep(&self.hosts, key, found.clone());
        }
        found
    }

    async fn look_up_host(&self, host: &str, port: u16) -> Option<HostDane> {
        let mut address = self.ask(host, RecordType::A).await;
        if matches!(&address, Ok(a) if a.records.is_empty()) {
            address = self.ask(host, RecordType::AAAA).await;
        }
        let target = match address {
            Ok(a) if a.secure && !a.records.is_empty() => a.target,
            _ => return None,
        };
        // An alias whose chain is signed: the TLSA records of the name it leads to, and
        // only when it has none, the host's own (RFC 7672 2.2.2).
        if let Some(target) = target {
            match self.tlsa(&target, port).await {
                Some(HostDane::Records(records, _)) => {
                    return Some(HostDane::Records(records, Some(target)));
                }
                Some(indeterminate) => return Some(indeterminate),
                None => {}
            }
        }
        self.tlsa(host, port).await
    }

    /// The signed TLSA records of `name` at `port`.
    async fn tlsa(&self, name: &str, port: u16) -> Option<HostDane> {
        let name = format!("_{port}._tcp.{name}");
        match self.ask(&name, RecordType::TLSA).await {
            Ok(a) if a.secure => {
                let records: Vec<Tlsa> = a
                    .records
                    .iter()
                    .filter_map(|r| match r.data() {
                        Some(RData::TLSA(t)) => Some(Tlsa {
                            usage: u8::from(t.cert_usage()),
                            selector: u8::from(t.selector()),
                            matching: u8::from(t.matching()),
                            data: t.cert_data().to_vec(),
                        }),
                        _ => None,
                    })
                    .collect();
                (!records.is_empty()).then_some(HostDane::Records(records, None))
            }
            Ok(_) | Err(DnsError::NotFound(_)) => None,
            Err(DnsError::Temporary(why)) => Some(HostDane::Indeterminate(why)),
        }
    }

    /// One question to the resolver, over UDP and over TCP when the answer does not fit.
    async fn ask(&self, name: &str, kind: RecordType) -> Result<Answer, DnsError> {
        let what = || format!("{kind} lookup for {name}");
        let temporary = |why: String| DnsError::Temporary(format!("{}: {why}", what()));
        let fqdn = Name::from_ascii(format!("{}.", name.trim_end_matches('.')))
            .map_err(|e| temporary(e.to_string()))?;
        let mut query = Message::new();
        let id: u16 = rand::random();
        query
            .set_id(id)
            .set_message_type(MessageType::Query)
            .set_op_code(OpCode::Query)
            .set_recursion_desired(true)
            .set_authentic_data(true)
            .add_query(Query::query(fqdn, kind));
        let mut edns = Edns::new();
        edns.set_dnssec_ok(true).set_max_payload(1232);
        query.set_edns(edns);
        let bytes = query.to_vec().map_err(|e| temporary(e.to_string()))?;
        let mut answer = tokio::time::timeout(DNS_TIMEOUT, self.udp(&bytes, id))
            .await
            .map_err(|_| temporary("no answer".into()))?
            .map_err(|e| temporary(e.to_string()))?;
        if answer.truncated() {
            answer = tokio::time::timeout(DNS_TIMEOUT, self.tcp(&bytes))
                .await
                .map_err(|_| temporary("no answer over TCP".into()))?
                .map_err(|e| temporary(e.to_string()))?;
        }
        let secure = answer.authentic_data();
        match answer.response_code() {
            ResponseCode::NoError => Ok(Answer {
                secure,
                records: answer
                    .answers()
                    .iter()
                    .filter(|r| r.record_type() == kind)
                    .cloned()
                    .collect(),
                target: cname_target(name, answer.answers()),
            }),
            ResponseCode::NXDomain => Err(DnsError::NotFound(format!("{}: no such name", what()))),
            other => Err(temporary(other.to_string())),
        }
    }

    async fn udp(&self, query: &[u8], id: u16) -> std::io::Result<Message> {
        let local: SocketAddr = if self.server.is_ipv4() {
            ([0, 0, 0, 0], 0).into()
        } else {
            (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
        };
        let sock = tokio::net::UdpSocket::bind(local).await?;
        sock.connect(self.server).await?;
        sock.send(query).await?;
        let mut buf = vec![0u8; 4096];
        // Datagrams that are not the answer (another id) are skipped, a few at most.
        for _ in 0..8 {
            let n = sock.recv(&mut buf).await?;
            if let Ok(m) = Message::from_vec(&buf[..n])
                && m.id() == id
                && m.message_type() == MessageType::Response
            {
                return Ok(m);
            }
        }
        Err(std::io::Error::other("no matching answer"))
    }

    async fn tcp(&self, query: &[u8]) -> std::io::Result<Message> {
        let mut stream = tokio::net::TcpStream::connect(self.server).await?;
        let len = u16::try_from(query.len()).map_err(std::io::Error::other)?;
        let mut out = len.to_be_bytes().to_vec();
        out.extend_from_slice(query);
        stream.write_all(&out).await?;
        let len = stream.read_u16().await?;
        let mut buf = vec![0u8; usize::from(len)];
        stream.read_exact(&mut buf).await?;
        Message::from_vec(&buf).map_err(std::io::Error::other)
    }
}

fn fresh<T: Clone>(map: &Mutex<HashMap<String, (Instant, T)>>, key: &str) -> Option<T> {
    let map = map.lock().unwrap_or_else(|p| p.into_inner());
    map.get(key)
        .filter(|(at, _)| at.elapsed() < KEEP)
        .map(|(_, v)| v.clone())
}

fn keep<T>(map: &Mutex<HashMap<String, (Instant, T)>>, key: String, value: T) {
    let mut map = map.lock().unwrap_or_else(|p| p.into_inner());
    if map.len() >= MAX_KEPT {
        map.retain(|_, (at, _)| at.elapsed() < KEEP);
        if map.len() >= MAX_KEPT {
            let mut ages: Vec<Instant> = map.values().map(|(at, _)| *at).collect();
            ages.sort_unstable();
            let cut = ages[ages.len() / 2];
            map.retain(|_, (at, _)| *at > cut);
        }
    }
    map.insert(key, (Instant::now(), value));
}

/// Where the CNAME records of an answer lead from `name` (a few links at most), if anywhere.
fn cname_target(name: &str, answers: &[Record]) -> Option<String> {
    let mut at = name.trim_end_matches('.').to_ascii_lowercase();
    let mut moved = false;
    for _ in 0..8 {
        let next = answers.iter().find_map(|r| match r.data() {
            Some(RData::CNAME(c))
                if r.name()
                    .to_ascii()
                    .trim_end_matches('.')
                    .eq_ignore_ascii_case(&at) =>
            {
                Some(c.0.to_ascii().trim_end_matches('.').to_ascii_lowercase())
            }
            _ => None,
        });
        match next {
            Some(n) => {
                at = n;
                moved = true;
            }
            None => break,
        }
    }
    moved.then_some(at)
}

/// The trust anchors a host's DANE-TA records allow for the chain it sent: each certificate of
/// the chain (after its own) that a record names; and for each record that gives a public key
/// in full (`2 1 0`), that key under the name of each issuer in the chain, so the certificate
/// it signed leads to it whether or not the host sent the anchor's certificate.
fn ta_anchors(
    usable: &[&Tlsa],
    end_entity: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'_>],
) -> Vec<rustls::pki_types::TrustAnchor<'static>> {
    let ta: Vec<&Tlsa> = usable.iter().copied().filter(|t| t.usage == 2).collect();
    let mut anchors = Vec::new();
    for cert in intermediates {
        if ta.iter().any(|t| t.matches(cert))
            && let Ok(anchor) = webpki::anchor_from_trusted_cert(cert)
        {
            anchors.push(anchor.to_owned());
        }
    }
    let keys: Vec<&[u8]> = ta
        .iter()
        .filter(|t| t.selector == 1 && t.matching == 0)
        .filter_map(|t| der_sequence_contents(&t.data))
        .collect();
    if keys.is_empty() {
        return anchors;
    }
    let mut issuers: Vec<Vec<u8>> = Vec::new();
    for cert in std::iter::once(end_entity).chain(intermediates) {
        if let Ok(c) = webpki::EndEntityCert::try_from(cert) {
            let issuer = c.issuer().to_vec();
            if !issuers.contains(&issuer) {
                issuers.push(issuer);
            }
        }
    }
    for key in keys {
        for issuer in &issuers {
            anchors.push(rustls::pki_types::TrustAnchor {
                subject: issuer.clone().into(),
                subject_public_key_info: key.to_vec().into(),
                name_constraints: None,
            });
        }
    }
    anchors
}

/// What a DER `SEQUENCE` holds (a SubjectPublicKeyInfo without its tag and length, as a trust
/// anchor keeps it); `None` unless `der` is exactly one sequence.
fn der_sequence_contents(der: &[u8]) -> Option<&[u8]> {
    let (&tag, rest) = der.split_first()?;
    let (&first, rest) = rest.split_first()?;
    if tag != 0x30 {
        return None;
    }
    let (len, rest) = match first {
        0..=0x7f => (usize::from(first), rest),
        0x81..=0x84 => {
            let n = usize::from(first & 0x7f);
            if rest.len() < n {
                return None;
            }
            let (bytes, rest) = rest.split_at(n);
            let len = bytes
                .iter()
                .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
            (len, rest)
        }
        _ => return None,
    };
    (rest.len() == len).then_some(rest)
}

/// Checks a server's certificate against a host's TLSA records instead of a CA bundle; with no
/// usable record it checks nothing, as opportunistic TLS does (`client::opportunistic_tls`).
#[derive(Debug)]
pub struct DaneVerifier {
    records: Vec<Tlsa>,
    /// The name the host's signed CNAME records lead to, which a DANE-TA certificate may
    /// name instead of the host's.
    alias: Option<ServerName<'static>>,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl DaneVerifier {
    /// A client configuration for a host with these TLSA records (found at `alias`, the name
    /// its CNAME records lead to, if they were found there).
    pub fn client_config(
        records: Vec<Tlsa>,
        alias: &Alias,
    ) -> Result<Arc<rustls::ClientConfig>, String> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let verifier = DaneVerifier {
            records,
            alias: alias
                .as_deref()
                .and_then(|a| ServerName::try_from(a.to_string()).ok()),
            provider: provider.clone(),
        };
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier))
            .with_no_client_auth();
        Ok(Arc::new(config))
    }
}

impl ServerCertVerifier for DaneVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let usable: Vec<&Tlsa> = self.records.iter().filter(|t| t.usable()).collect();
        // RFC 7672 2.2: TLSA records none of which is usable ask for TLS, not for a check.
        if usable.is_empty() {
            return Ok(ServerCertVerified::assertion());
        }
        // DANE-EE: the host's own certificate or key; names and dates are not looked at (RFC
        // 7672 3.1.1).
        if usable.iter().any(|t| t.usage == 3 && t.matches(end_entity)) {
            return Ok(ServerCertVerified::assertion());
        }
        // DANE-TA: the trust anchor is a certificate of the chain the host sent, or a bare
        // public key a record gives in full, which the host need not send (RFC 7671 5.2.2);
        // the chain must lead to it and name the host.
        // All in one store: webpki's own budget bounds the paths it tries to them.
        let roots = rustls::RootCertStore {
            roots: ta_anchors(&usable, end_entity, intermediates),
        };
        if !roots.is_empty()
            && let Ok(webpki) = rustls::client::WebPkiServerVerifier::builder_with_provider(
                Arc::new(roots),
                self.provider.clone(),
            )
            .build()
        {
            // RFC 7672 3.2.2: the host's name, or the name its CNAME records lead to.
            let named = |name: &ServerName<'_>| {
                webpki
                    .verify_server_cert(end_entity, intermediates, name, ocsp, now)
                    .is_ok()
            };
            if named(server_name) || self.alias.as_ref().is_some_and(named) {
                return Ok(ServerCertVerified::assertion());
            }
        }
        Err(rustls::Error::General(
            "its certificate matches none of its TLSA records".into(),
        ))
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_dane_ta_and_dane_ee_with_known_selectors_and_matchings_are_usable() {
        let t = |usage, selector, matching| Tlsa {
            usage,
            selector,
            matching,
            data: vec![],
        };
        assert!(t(3, 1, 1).usable());
        assert!(t(2, 0, 2).usable());
        assert!(t(3, 0, 0).usable());
        assert!(!t(0, 1, 1).usable(), "PKIX-TA");
        assert!(!t(1, 1, 1).usable(), "PKIX-EE");
        assert!(!t(3, 2, 1).usable(), "no such selector");
        assert!(!t(3, 1, 3).usable(), "no such matching type");
    }

    #[test]
    fn a_key_given_in_full_is_taken_only_as_one_whole_der_sequence() {
        assert_eq!(der_sequence_contents(&[0x30, 2, 5, 0]), Some(&[5u8, 0][..]));
        let mut long = vec![0x30, 0x82, 0x01, 0x00];
        long.extend(std::iter::repeat_n(7u8, 256));
        assert_eq!(der_sequence_contents(&long).map(<[u8]>::len), Some(256));
        assert_eq!(der_sequence_contents(&[0x31, 1, 0]), None, "a SET");
        assert_eq!(der_sequence_contents(&[0x30, 3, 5, 0]), None, "cut short");
        assert_eq!(
            der_sequence_contents(&[0x30, 1, 5, 0]),
            None,
            "bytes after it"
        );
        assert_eq!(
            der_sequence_contents(&[0x30, 0x82, 1]),
            None,
            "a length cut short"
        );
        assert_eq!(
            der_sequence_contents(&[0x30, 0x80, 0, 0]),
            None,
            "indefinite (BER)"
        );
        assert_eq!(
            der_sequence_contents(&[0x30, 0x89, 1]),
            None,
            "a length too long"
        );
        assert_eq!(der_sequence_contents(&[]), None);
        assert_eq!(der_sequence_contents(&[0x30]), None);
    }
}
