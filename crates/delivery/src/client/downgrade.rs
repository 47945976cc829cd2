//! A message that asked for SMTPUTF8, for a next hop that does not offer it.

use super::OutMessage;

/// The envelope of a message that asked for SMTPUTF8, for a next hop that does not offer it.
/// RFC 6531 needs the extension only for what holds UTF-8: a client may ask for it on every
/// message, and an internationalised domain has an ASCII form (its A-labels) that any server
/// takes. So the sender and the recipients go with their domains' A-labels, unless a local part
/// or the message's header section is not ASCII: then nothing can carry it there (`None`, and
/// the recipients get 5.6.7).
pub(super) fn ascii_envelope(msg: &OutMessage<'_>) -> Option<(String, Vec<String>)> {
    let ascii = |address: &str| {
        let key = relayward_names::address_key(address);
        key.is_ascii().then(|| key.into_owned())
    };
    let header_section = &msg.body[..relayward_dsn::find_headers_end(msg.body)];
    if !msg.head.is_ascii() || !header_section.is_ascii() {
        return None;
    }
    let from = ascii(msg.mail_from)?;
    let rcpts = msg
        .rcpts
        .iter()
        .map(|r| ascii(r.address))
        .collect::<Option<Vec<_>>>()?;
    Some((from, rcpts))
}

#[cfg(test)]
mod tests {
    use super::super::OutRcpt;
    use super::*;

    fn message<'a>(from: &'a str, to: &'a str, body: &'a [u8]) -> OutMessage<'a> {
        OutMessage {
            mail_from: from,
            smtputf8: true,
            body_8bit: true,
            ret: None,
            env_id: None,
            rcpts: vec![OutRcpt {
                address: to,
                notify: None,
                orcpt: None,
            }],
            head: b"DKIM-Signature: v=1\r\n",
            body,
        }
    }

    #[test]
    fn an_envelope_goes_in_a_labels_when_nothing_else_needs_utf8() {
        let ascii = "Subject: hi\r\n\r\nGr\u{fc}\u{df}e in the body\r\n".as_bytes();
        assert_eq!(
            ascii_envelope(&message(
                "Anna@B\u{fc}cher.example",
                "bob@m\u{fc}ller.example",
                ascii
            )),
            Some((
                "Anna@xn--bcher-kva.example".to_string(),
                vec!["bob@xn--mller-kva.example".to_string()]
            ))
        );
        assert_eq!(
            ascii_envelope(&message("", "bob@remote.example", ascii)),
            Some((String::new(), vec!["bob@remote.example".to_string()]))
        );
        let utf8_header = "Subject: Gr\u{fc}\u{df}e\r\n\r\nhi\r\n".as_bytes();
        assert_eq!(
            ascii_envelope(&message(
                "a@remote.example",
                "b@remote.example",
                utf8_header
            )),
            None
        );
        assert_eq!(
            ascii_envelope(&message(
                "j\u{f6}rg@remote.example",
                "b@remote.example",
                ascii
            )),
            None
        );
        assert_eq!(
            ascii_envelope(&message(
                "a@remote.example",
                "\u{e5}sa@remote.example",
                ascii
            )),
            None
        );
    }
}
