//! Domain names and addresses in the one form the relay compares them in. An internationalised
//! domain is one name written two ways (RFC 5890): in Unicode, as SMTPUTF8 clients write it,
//! and as its A-labels (`bücher.example` is `xn--bcher-kva.example`), as DNS, DKIM and the
//! directory know it. The directory, the store, the scanner and the queue all compare names
//! here, so that the two ways are one name everywhere.

use std::borrow::Cow;

/// Within RFC 5321's lengths: a local part of at most 64 octets, a path of at most 256 with its
/// brackets. An address a tenant's objects or accounts hold is never larger than mail can carry.
pub fn within_mail_lengths(s: &str) -> bool {
    s.len() <= 254 && s.rsplit_once('@').is_some_and(|(l, _)| l.len() <= 64)
}

/// A domain name as the directory keeps it: lower case, no final dot, and an internationalised
/// name in its ASCII form (`bücher.example` is `xn--bcher-kva.example`: RFC 5890's one name,
/// which SMTPUTF8 clients write in Unicode and the directory stores as A-labels); borrowed when
/// it is so already, as `tenancy::domain_of` gives it. The directory and the store look every
/// domain up in this form. A Unicode name that is no valid IDN stays as it is, and matches
/// nothing stored.
pub fn domain_key(domain: &str) -> Cow<'_, str> {
    let domain = domain.trim_end_matches('.');
    if !domain.is_ascii() {
        return idna::domain_to_ascii(domain)
            .map(|a| a.trim_end_matches('.').to_string())
            .unwrap_or_else(|_| domain.to_lowercase())
            .into();
    }
    if domain.bytes().any(|b| b.is_ascii_uppercase()) {
        domain.to_ascii_lowercase().into()
    } else {
        domain.into()
    }
}

/// An address with its domain as `domain_key` gives it, for addresses whose domain is written
/// in Unicode (borrowed otherwise: letter case is left to the lookups, which ignore it).
pub fn address_key(address: &str) -> Cow<'_, str> {
    match address.rsplit_once('@') {
        Some((local, domain)) if !domain.is_ascii() => {
            format!("{local}@{}", domain_key(domain)).into()
        }
        _ => address.into(),
    }
}

/// The two forms an address can be written in, for a search of what was kept as given: its
/// domain as A-labels and in Unicode (one name, RFC 5890; the trace keeps a sender as the client
/// wrote it). An address without an IDN is the same in both.
pub fn address_forms(address: &str) -> [String; 2] {
    let address = address.trim();
    match address.rsplit_once('@') {
        Some((local, domain)) => {
            let ascii = domain_key(domain);
            let (unicode, _) = idna::domain_to_unicode(&ascii);
            [format!("{local}@{ascii}"), format!("{local}@{unicode}")]
        }
        None => [address.to_string(), address.to_string()],
    }
}

/// An address in RFC 6533's `utf-8-addr-xtext`, the ASCII form of an `ORCPT=utf-8;` value and of
/// a DSN's `Original-Recipient: utf-8;`: every character outside `!`..`~`, and `+`, `=` and `\`,
/// written as `\x{HEX}` (`bob@m\x{FC}ller.example`).
pub fn utf8_addr_xtext(address: &str) -> String {
    let mut out = String::with_capacity(address.len());
    for c in address.chars() {
        if c.is_ascii_graphic() && !matches!(c, '+' | '=' | '\\') {
            out.push(c);
        } else {
            out.push_str(&format!("\\x{{{:X}}}", u32::from(c)));
        }
    }
    out
}

/// An original recipient as the relay keeps it (`type;address`, or a bare address for
/// `rfc822;`), in its ASCII form when it names an address in UTF-8: `utf-8;` and
/// `utf8_addr_xtext`, as the SMTP client passes it on and a DSN names it. That is an
/// `ORCPT=utf-8;` read off a RCPT line, and an `rfc822;` one whose address is not ASCII,
/// which that type cannot name (RFC 6533 3). `None` for anything else.
pub fn utf8_orcpt_ascii(orcpt: &str) -> Option<String> {
    let address = match orcpt.split_once(';') {
        Some((kind, address)) if kind.eq_ignore_ascii_case("utf-8") => address,
        Some((kind, address)) if kind.eq_ignore_ascii_case("rfc822") && !address.is_ascii() => {
            address
        }
        None if !orcpt.is_ascii() => orcpt,
        _ => return None,
    };
    Some(format!("utf-8;{}", utf8_addr_xtext(address)))
}

/// The address an `ORCPT=utf-8;` value names, from RFC 6533's `utf-8-addr-xtext` or
/// `utf-8-addr-unitext` (UTF-8 as it is, `\x{HEX}` for any character); `None` for an empty
/// value, a character that is not a code point, a bare `\`, a control character (written
/// either way) or a space.
pub fn from_utf8_addr_xtext(text: &str) -> Option<String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        if c == '\\' {
            let hex = rest.strip_prefix("\\x{")?;
            let end = hex.find('}')?;
            let digits = &hex[..end];
            if digits.is_empty() || digits.len() > 6 {
                return None;
            }
            let c = char::from_u32(u32::from_str_radix(digits, 16).ok()?)?;
            if c.is_control() {
                return None;
            }
            out.push(c);
            rest = &hex[end + 1..];
            continue;
        }
        if c.is_control() || c.is_whitespace() {
            return None;
        }
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    (!out.is_empty()).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_original_recipient_in_utf8_goes_in_ascii_and_back() {
        let address = "b\u{f6}b+1@m\u{fc}ller.example";
        let text = utf8_addr_xtext(address);
        assert_eq!(text, "b\\x{F6}b\\x{2B}1@m\\x{FC}ller.example");
        assert_eq!(from_utf8_addr_xtext(&text).as_deref(), Some(address));
        assert_eq!(
            from_utf8_addr_xtext(address).as_deref(),
            Some(address),
            "unitext"
        );
        assert_eq!(
            utf8_orcpt_ascii(&format!("UTF-8;{address}")),
            Some(format!("utf-8;{text}"))
        );
        assert_eq!(utf8_orcpt_ascii("rfc822;bob@remote.example"), None);
        assert_eq!(utf8_orcpt_ascii("bob@remote.example"), None);
        assert_eq!(utf8_orcpt_ascii("x400;c=fr;a= ;p=m\u{fc}ller"), None);
        // An address in UTF-8 that came typed rfc822, or as the bare address kept for that
        // type: RFC 6533's type and form, not raw UTF-8 where only ASCII may go.
        for kept in [format!("rfc822;{address}"), address.to_string()] {
            assert_eq!(
                utf8_orcpt_ascii(&kept),
                Some(format!("utf-8;{text}")),
                "{kept}"
            );
        }
        for bad in [
            "",
            "a\\b",
            "a\\x{}",
            "a\\x{110000}",
            "a\\x{D800}",
            "a b",
            "a\\x{41",
            "a\\x{D}\\x{A}b",
        ] {
            assert_eq!(from_utf8_addr_xtext(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_domain_is_kept_lower_case_without_its_final_dot_and_in_a_labels() {
        assert_eq!(domain_key("contoso.example"), "contoso.example");
        assert!(matches!(domain_key("contoso.example"), Cow::Borrowed(_)));
        assert_eq!(domain_key("Contoso.Example."), "contoso.example");
        assert_eq!(domain_key("B\u{fc}cher.example"), "xn--bcher-kva.example");
        assert_eq!(domain_key("b\u{fc}cher.example."), "xn--bcher-kva.example");
        assert_eq!(domain_key("XN--BCHER-KVA.example"), "xn--bcher-kva.example");
    }

    #[test]
    fn an_address_keeps_its_local_part_and_gets_its_domains_a_labels() {
        assert_eq!(
            address_key("Anna@B\u{fc}cher.example"),
            "Anna@xn--bcher-kva.example"
        );
        assert_eq!(address_key("Anna@Contoso.example"), "Anna@Contoso.example");
        assert_eq!(address_key("no-domain"), "no-domain");
    }
}
