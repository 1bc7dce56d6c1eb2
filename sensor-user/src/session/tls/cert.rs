//! The server certificate: subject, issuer, not-after and key type, read from the first
//! certificate of a Certificate message (RFC 5246 §7.4.2; RFC 8446 §4.4.2 adds a request
//! context and per-entry extensions). A small DER reader (X.690) of only what is needed:
//! every length is checked against what is left, nesting is bounded, and anything
//! unexpected gives `None`.

use crate::model::Certificate;

/// A DER element: tag, contents, and what follows it.
fn tlv(b: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = b.split_first()?;
    // High-tag-number form does not occur in certificates' structure.
    if tag & 0x1f == 0x1f {
        return None;
    }
    let (&l0, rest) = rest.split_first()?;
    let (len, rest) = if l0 < 0x80 {
        (l0 as usize, rest)
    } else {
        let n = (l0 & 0x7f) as usize;
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n].iter().fold(0usize, |a, &x| a << 8 | x as usize);
        (len, &rest[n..])
    };
    if rest.len() < len {
        return None;
    }
    Some((tag, &rest[..len], &rest[len..]))
}

fn expect(b: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    let (t, c, rest) = tlv(b)?;
    (t == tag).then_some((c, rest))
}

const SEQ: u8 = 0x30;
const SET: u8 = 0x31;
const OID: u8 = 0x06;

/// An OID's contents in dotted form.
fn oid(c: &[u8]) -> String {
    let mut parts = Vec::new();
    let mut v: u64 = 0;
    for (i, &b) in c.iter().enumerate() {
        v = v << 7 | u64::from(b & 0x7f);
        if b & 0x80 == 0 {
            if parts.is_empty() && i < c.len() {
                let first = (v / 40).min(2);
                parts.push(first);
                parts.push(v - first * 40);
            } else {
                parts.push(v);
            }
            v = 0;
        }
    }
    parts
        .iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join(".")
}

/// A Name as `CN=…, O=…` (RFC 4514 order is reversed; this keeps the certificate's order,
/// as OpenSSL's one-line form does).
fn name(c: &[u8]) -> Option<String> {
    let mut out = Vec::new();
    let mut rdns = c;
    while !rdns.is_empty() {
        let (set, rest) = expect(rdns, SET)?;
        rdns = rest;
        let mut atvs = set;
        while !atvs.is_empty() {
            let (atv, rest) = expect(atvs, SEQ)?;
            atvs = rest;
            let (o, rest) = expect(atv, OID)?;
            let (_, value, _) = tlv(rest)?;
            let key = match oid(o).as_str() {
                "2.5.4.3" => "CN".to_string(),
                "2.5.4.6" => "C".into(),
                "2.5.4.7" => "L".into(),
                "2.5.4.8" => "ST".into(),
                "2.5.4.10" => "O".into(),
                "2.5.4.11" => "OU".into(),
                other => other.to_string(),
            };
            let v: String = String::from_utf8_lossy(value)
                .chars()
                .map(|c| if c.is_control() { '\u{fffd}' } else { c })
                .take(256)
                .collect();
            out.push(format!("{key}={v}"));
            if out.iter().map(String::len).sum::<usize>() > 1024 {
                // A record keeps the first kilobyte of a name.
                return Some(out.join(", "));
            }
        }
    }
    Some(out.join(", "))
}

/// UTCTime or GeneralizedTime (RFC 5280 §4.1.2.5: `YYMMDDHHMMSSZ`, `YYYYMMDDHHMMSSZ`) as RFC
/// 3339.
fn time(tag: u8, c: &[u8]) -> Option<String> {
    let s = std::str::from_utf8(c).ok()?;
    let digits = s.strip_suffix('Z')?;
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let (year, rest) = match (tag, digits.len()) {
        (0x17, 12) => {
            let yy: u32 = digits[..2].parse().ok()?;
            (if yy >= 50 { 1900 + yy } else { 2000 + yy }, &digits[2..])
        }
        (0x18, 14) => (digits[..4].parse().ok()?, &digits[4..]),
        _ => return None,
    };
    Some(format!(
        "{year:04}-{}-{}T{}:{}:{}Z",
        &rest[..2],
        &rest[2..4],
        &rest[4..6],
        &rest[6..8],
        &rest[8..10]
    ))
}

/// The key type from SubjectPublicKeyInfo: `EC P-256`, `RSA 2048`, `Ed25519`, or the OID.
fn key_type(spki: &[u8]) -> Option<String> {
    let (alg, rest) = expect(spki, SEQ)?;
    let (o, params) = expect(alg, OID)?;
    Some(match oid(o).as_str() {
        "1.2.840.10045.2.1" => {
            let curve = expect(params, OID).map(|(c, _)| oid(c)).unwrap_or_default();
            let name = match curve.as_str() {
                "1.2.840.10045.3.1.7" => "P-256",
                "1.3.132.0.34" => "P-384",
                "1.3.132.0.35" => "P-521",
                other => return Some(format!("EC {other}")),
            };
            format!("EC {name}")
        }
        "1.2.840.113549.1.1.1" => {
            // BIT STRING { unused bits, RSAPublicKey SEQUENCE { modulus INTEGER, … } }
            let bits = (|| {
                let (bs, _) = expect(rest, 0x03)?;
                let (key, _) = expect(bs.get(1..)?, SEQ)?;
                let (m, _) = expect(key, 0x02)?;
                let m = m.strip_prefix(&[0]).unwrap_or(m);
                Some(m.len() * 8)
            })();
            match bits {
                Some(b) => format!("RSA {b}"),
                None => "RSA".into(),
            }
        }
        "1.3.101.112" => "Ed25519".into(),
        "1.3.101.113" => "Ed448".into(),
        other => other.to_string(),
    })
}

/// One DER certificate.
pub fn parse(der: &[u8]) -> Option<Certificate> {
    let (cert, _) = expect(der, SEQ)?;
    let (tbs, _) = expect(cert, SEQ)?;
    let mut r = tbs;
    // [0] EXPLICIT version, when present.
    if let Some((0xa0, _, rest)) = tlv(r) {
        r = rest;
    }
    let (_, _, rest) = tlv(r)?; // serialNumber
    let (_, rest) = expect(rest, SEQ)?; // signature
    let (issuer, rest) = expect(rest, SEQ)?;
    let (validity, rest) = expect(rest, SEQ)?;
    let (subject, rest) = expect(rest, SEQ)?;
    let (spki, _) = expect(rest, SEQ)?;
    let (t1, nb, rest_v) = tlv(validity)?;
    let (t2, na, _) = tlv(rest_v)?;
    Some(Certificate {
        subject: name(subject)?,
        issuer: name(issuer)?,
        not_before: time(t1, nb)?,
        not_after: time(t2, na)?,
        key_type: key_type(spki)?,
    })
}

/// The first (the server's own) certificate of a Certificate message body (after the
/// handshake header).
pub fn first_of_message(body: &[u8], tls13: bool) -> Option<Certificate> {
    let mut b = body;
    if tls13 {
        let (&ctx_len, rest) = b.split_first()?;
        b = rest.get(ctx_len as usize..)?;
    }
    let list_len = u32::from_be_bytes([0, *b.first()?, *b.get(1)?, *b.get(2)?]) as usize;
    let list = b.get(3..3 + list_len)?;
    let len = u32::from_be_bytes([0, *list.first()?, *list.get(1)?, *list.get(2)?]) as usize;
    parse(list.get(3..3 + len)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_and_every_cut_are_none_without_panic() {
        let mut b = vec![0x30, 0x82, 0x01, 0x00];
        b.extend((0..=255u8).cycle().take(300));
        for cut in 0..b.len() {
            let _ = parse(&b[..cut]);
            let _ = first_of_message(&b[..cut], cut % 2 == 0);
        }
        assert!(parse(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]).is_none());
    }

    #[test]
    fn oids_and_times() {
        assert_eq!(oid(&[0x55, 0x04, 0x03]), "2.5.4.3");
        assert_eq!(
            oid(&[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07]),
            "1.2.840.10045.3.1.7"
        );
        assert_eq!(
            time(0x17, b"361201174500Z").as_deref(),
            Some("2036-12-01T17:45:00Z")
        );
        assert_eq!(
            time(0x18, b"20500101000000Z").as_deref(),
            Some("2050-01-01T00:00:00Z")
        );
        assert_eq!(time(0x17, b"3612011745Z"), None);
    }
}
