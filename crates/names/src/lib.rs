//! Domain names and addresses in the one form the relay compares them in. An internationalised
//! domain is one name written two ways (RFC 5890): in Unicode, as SMTPUTF8 clients write it,
//! and as its A-labels (`bücher.example` is `xn--bcher-kva.example`), as DNS, DKIM and the
//! directory know it. The directory, the store, the scanner and the queue all compare names
//! here, so that the two ways are one name everywhere.

use std::borrow::Cow;

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

#[cfg(test)]
mod tests {
    use super::*;

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
