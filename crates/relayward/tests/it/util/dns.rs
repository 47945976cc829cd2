//! A DNS server answering MX, A, TXT and TLSA queries from a table; an answer marked signed
//! comes with the AD bit, as a validating resolver's does.

use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket};
use std::sync::{Arc, Mutex};

type Zone = Arc<Mutex<HashMap<(String, String), Answer>>>;

pub struct Dns {
    pub addr: SocketAddr,
    zone: Zone,
}

pub enum Answer {
    Mx(Vec<(u16, &'static str)>),
    A(Vec<std::net::Ipv4Addr>),
    Txt(Vec<String>),
    /// PTR records (under kind "PTR", for a name such as `2.0.0.127.in-addr.arpa`).
    Ptr(Vec<&'static str>),
    /// TLSA records: usage, selector, matching type, data.
    Tlsa(Vec<(u8, u8, u8, Vec<u8>)>),
    /// The answer, with the AD bit (DNSSEC-validated).
    Signed(Box<Answer>),
    /// A CNAME record (under kind "CNAME"): a question of another kind for the name is
    /// answered with it and the target's answer of that kind, with the AD bit when both are
    /// signed.
    Cname(&'static str),
    NxDomain,
    ServFail,
}

impl Dns {
    /// `zone` maps (name, "MX"|"A") to an answer; anything else is an empty NOERROR answer.
    pub fn start(zone: Vec<(&'static str, &'static str, Answer)>) -> Dns {
        use hickory_proto::op::{Message, MessageType, ResponseCode};
        use hickory_proto::rr::{Name, RData, Record, rdata};
        let sock = UdpSocket::bind("127.0.0.1:0").expect("dns bind");
        let addr = sock.local_addr().expect("addr");
        let table: HashMap<(String, String), Answer> = zone
            .into_iter()
            .map(|(n, t, a)| ((n.to_ascii_lowercase(), t.to_string()), a))
            .collect();
        let zone: Zone = Arc::new(Mutex::new(table));
        let shared = zone.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 1500];
            while let Ok((n, from)) = sock.recv_from(&mut buf) {
                let Ok(q) = Message::from_vec(&buf[..n]) else {
                    continue;
                };
                let mut resp = Message::new();
                resp.set_id(q.id())
                    .set_message_type(MessageType::Response)
                    .set_recursion_available(true);
                for query in q.queries() {
                    resp.add_query(query.clone());
                    let name = query
                        .name()
                        .to_ascii()
                        .trim_end_matches('.')
                        .to_ascii_lowercase();
                    let kind = query.query_type().to_string();
                    let table = shared.lock().expect("zone");
                    let (mut signed, mut answer) =
                        unsigned(table.get(&(name.clone(), kind.clone())));
                    let mut owner = query.name().clone();
                    if answer.is_none()
                        && let (cname_signed, Some(Answer::Cname(target))) =
                            unsigned(table.get(&(name.clone(), "CNAME".to_string())))
                    {
                        let to = Name::from_ascii(format!("{target}.")).expect("name");
                        resp.add_answer(Record::from_rdata(
                            owner.clone(),
                            60,
                            RData::CNAME(rdata::CNAME(to.clone())),
                        ));
                        let (target_signed, target_answer) =
                            unsigned(table.get(&(target.to_string(), kind)));
                        signed = cname_signed && target_signed;
                        answer = target_answer;
                        owner = to;
                    }
                    if signed {
                        resp.set_authentic_data(true);
                    }
                    match answer {
                        Some(Answer::Tlsa(records)) => {
                            for (usage, selector, matching, data) in records {
                                resp.add_answer(Record::from_rdata(
                                    owner.clone(),
                                    60,
                                    RData::TLSA(rdata::TLSA::new(
                                        (*usage).into(),
                                        (*selector).into(),
                                        (*matching).into(),
                                        data.clone(),
                                    )),
                                ));
                            }
                        }
                        Some(Answer::Signed(_) | Answer::Cname(_)) => {}
                        Some(Answer::Mx(list)) => {
                            for (pref, host) in list {
                                let exch = Name::from_ascii(format!("{host}.")).expect("name");
                                resp.add_answer(Record::from_rdata(
                                    owner.clone(),
                                    60,
                                    RData::MX(rdata::MX::new(*pref, exch)),
                                ));
                            }
                        }
                        Some(Answer::A(ips)) => {
                            for ip in ips {
                                resp.add_answer(Record::from_rdata(
                                    owner.clone(),
                                    60,
                                    RData::A(rdata::A(*ip)),
                                ));
                            }
                        }
                        Some(Answer::Txt(texts)) => {
                            for t in texts {
                                resp.add_answer(Record::from_rdata(
                                    owner.clone(),
                                    60,
                                    // A record's strings hold 255 octets each (RFC 1035
                                    // 3.3); longer texts (DKIM keys) are split, as published.
                                    RData::TXT(rdata::TXT::new(
                                        t.as_bytes()
                                            .chunks(255)
                                            .map(|c| String::from_utf8_lossy(c).into_owned())
                                            .collect(),
                                    )),
                                ));
                            }
                        }
                        Some(Answer::Ptr(names)) => {
                            for n in names {
                                let to = Name::from_ascii(format!("{n}.")).expect("name");
                                resp.add_answer(Record::from_rdata(
                                    owner.clone(),
                                    60,
                                    RData::PTR(rdata::PTR(to)),
                                ));
                            }
                        }
                        Some(Answer::NxDomain) => {
                            resp.set_response_code(ResponseCode::NXDomain);
                        }
                        Some(Answer::ServFail) => {
                            resp.set_response_code(ResponseCode::ServFail);
                        }
                        None => {
                            let known = table.keys().any(|(n, _)| *n == name);
                            if !known {
                                resp.set_response_code(ResponseCode::NXDomain);
                            }
                        }
                    }
                }
                if let Ok(bytes) = resp.to_vec() {
                    let _ = sock.send_to(&bytes, from);
                }
            }
        });
        Dns { addr, zone }
    }

    /// Adds or replaces one answer while the server runs (`kind` "MX", "A", "TXT" or "PTR").
    pub fn set(&self, name: &str, kind: &str, answer: Answer) {
        self.zone
            .lock()
            .expect("zone")
            .insert((name.to_ascii_lowercase(), kind.to_string()), answer);
    }
}

/// An answer without its `Signed` wrapping, and whether it had one.
fn unsigned(a: Option<&Answer>) -> (bool, Option<&Answer>) {
    match a {
        Some(Answer::Signed(inner)) => (true, Some(&**inner)),
        other => (false, other),
    }
}
