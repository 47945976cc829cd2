//! The one field of an X.509 certificate the relay reports: when it stops being valid. A
//! certificate is DER (RFC 5280 4.1): `SEQUENCE { tbsCertificate SEQUENCE { [0] version
//! (optional), serialNumber, signature, issuer, validity SEQUENCE { notBefore, notAfter }, ...
//! } ... }`. Only the lengths on the way there are read, each checked against what is left.

/// The certificate's notAfter as Unix seconds; `None` when the bytes are not shaped so.
pub fn not_after(cert: &[u8]) -> Option<i64> {
    let (tag, cert, _) = element(cert)?;
    if tag != 0x30 {
        return None;
    }
    let (tag, mut tbs, _) = element(cert)?;
    if tag != 0x30 {
        return None;
    }
    // The version is there only in v2 and v3 certificates: context tag [0], constructed.
    if tbs.first() == Some(&0xa0) {
        tbs = element(tbs)?.2;
    }
    // serialNumber, signature, issuer.
    for expected in [0x02, 0x30, 0x30] {
        let (tag, _, rest) = element(tbs)?;
        if tag != expected {
            return None;
        }
        tbs = rest;
    }
    let (tag, validity, _) = element(tbs)?;
    if tag != 0x30 {
        return None;
    }
    let (_, _, rest) = element(validity)?;
    let (tag, time, _) = element(rest)?;
    let text = std::str::from_utf8(time).ok()?;
    match tag {
        // UTCTime, YYMMDDHHMMSSZ: years 50 to 99 are 19xx (RFC 5280 4.1.2.5.1).
        0x17 if text.len() == 13 => {
            let yy: i64 = text.get(..2)?.parse().ok()?;
            let year = if yy >= 50 { 1900 + yy } else { 2000 + yy };
            seconds(year, text.get(2..)?)
        }
        // GeneralizedTime, YYYYMMDDHHMMSSZ.
        0x18 if text.len() == 15 => seconds(text.get(..4)?.parse().ok()?, text.get(4..)?),
        _ => None,
    }
}

/// `MMDDHHMMSSZ` of `year`, as Unix seconds.
fn seconds(year: i64, rest: &str) -> Option<i64> {
    if !rest.ends_with('Z') || !rest[..rest.len() - 1].bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let two = |at: usize| -> Option<i64> { rest.get(at..at + 2)?.parse().ok() };
    let date = format!("{year:04}-{}-{}", rest.get(..2)?, rest.get(2..4)?);
    let days = relayward_clock::days_from_date(&date)?;
    let (h, m, s) = (two(4)?, two(6)?, two(8)?);
    if h > 23 || m > 59 || s > 60 {
        return None;
    }
    Some(days * 86_400 + h * 3600 + m * 60 + s)
}

/// One DER element at the start of `bytes`: its tag, its content and what follows it.
fn element(bytes: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = bytes.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        (len, &rest[n..])
    };
    if rest.len() < len {
        return None;
    }
    Some((tag, &rest[..len], &rest[len..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn made(not_after: (i32, u8, u8)) -> Vec<u8> {
        let mut params =
            rcgen::CertificateParams::new(vec!["relay.test".to_string()]).expect("params");
        params.not_after = rcgen::date_time_ymd(not_after.0, not_after.1, not_after.2);
        let key = rcgen::KeyPair::generate().expect("key");
        params.self_signed(&key).expect("cert").der().to_vec()
    }

    #[test]
    fn reads_when_a_certificate_ends() {
        // 2027-03-01 00:00:00 UTC (UTCTime) and 2051-01-01 (GeneralizedTime past 2049).
        assert_eq!(not_after(&made((2027, 3, 1))), Some(1_803_859_200));
        assert_eq!(not_after(&made((2051, 1, 1))), Some(2_556_144_000));
    }

    #[test]
    fn bytes_that_are_not_a_certificate_give_nothing() {
        let good = made((2030, 6, 15));
        for cut in [0, 1, 2, 10, 100, good.len() / 2] {
            assert_eq!(not_after(&good[..cut]), None, "cut at {cut}");
        }
        assert_eq!(not_after(b"-----BEGIN CERTIFICATE-----"), None);
        assert_eq!(not_after(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]), None);
    }
}
