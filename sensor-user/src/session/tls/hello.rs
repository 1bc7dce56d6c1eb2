//! The clear handshake: ClientHello and ServerHello (RFC 8446 §4.1.2–4.1.4, RFC 5246 §7.4.1),
//! and the JA4 fingerprint of the ClientHello (FoxIO's JA4 specification).
//!
//! Every length is checked against what is left; a malformed hello gives `None`.

use crate::decode::kit::text;
use sha2::{Digest, Sha256};

/// What the sensor keeps of a ClientHello.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClientHello {
    pub random: [u8; 32],
    pub legacy_version: u16,
    pub suites: Vec<u16>,
    /// Extension types in the order sent.
    pub extensions: Vec<u16>,
    pub sni: Option<String>,
    pub alpn: Vec<String>,
    pub versions: Vec<u16>,
    pub sig_algs: Vec<u16>,
}

/// What the sensor keeps of a ServerHello (or HelloRetryRequest).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServerHello {
    pub random: [u8; 32],
    /// The version it chose: `supported_versions` when present, else the legacy field.
    pub version: u16,
    pub suite: u16,
    /// A HelloRetryRequest (RFC 8446 §4.1.3: a ServerHello with this fixed random).
    pub retry: bool,
}

const HRR_RANDOM: [u8; 32] = [
    0xcf, 0x21, 0xad, 0x74, 0xe5, 0x9a, 0x61, 0x11, 0xbe, 0x1d, 0x8c, 0x02, 0x1e, 0x65, 0xb8, 0x91,
    0xc2, 0xa2, 0x11, 0x16, 0x7a, 0xbb, 0x8c, 0x5e, 0x07, 0x9e, 0x09, 0xe2, 0xc8, 0xa8, 0x33, 0x9c,
];

const EXT_SNI: u16 = 0x0000;
const EXT_SIG_ALGS: u16 = 0x000d;
const EXT_ALPN: u16 = 0x0010;
const EXT_VERSIONS: u16 = 0x002b;

/// A cursor over a handshake body.
struct Rd<'a>(&'a [u8]);

impl<'a> Rd<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Some(a)
    }
    fn u8(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }
    fn u16(&mut self) -> Option<u16> {
        let b = self.take(2)?;
        Some(u16::from_be_bytes([b[0], b[1]]))
    }
    fn vec8(&mut self) -> Option<&'a [u8]> {
        let n = self.u8()? as usize;
        self.take(n)
    }
    fn vec16(&mut self) -> Option<&'a [u8]> {
        let n = self.u16()? as usize;
        self.take(n)
    }
    fn u16s(b: &[u8]) -> Vec<u16> {
        b.chunks_exact(2)
            .map(|p| u16::from_be_bytes([p[0], p[1]]))
            .collect()
    }
}

/// A name the client chose (SNI, ALPN), fit for a record: at most 255 bytes, control
/// characters replaced.
fn name_text(b: &[u8]) -> String {
    text(b, 255)
        .chars()
        .map(|c| if c.is_control() { '\u{fffd}' } else { c })
        .collect()
}

/// A ClientHello body (after the 4-byte handshake header).
pub fn client_hello(body: &[u8]) -> Option<ClientHello> {
    let mut r = Rd(body);
    let legacy_version = r.u16()?;
    let random: [u8; 32] = r.take(32)?.try_into().ok()?;
    r.vec8()?; // legacy_session_id
    let suites = Rd::u16s(r.vec16()?);
    r.vec8()?; // legacy_compression_methods
    let mut hello = ClientHello {
        random,
        legacy_version,
        suites,
        ..ClientHello::default()
    };
    if r.0.is_empty() {
        return Some(hello);
    }
    let mut exts = Rd(r.vec16()?);
    while !exts.0.is_empty() {
        let typ = exts.u16()?;
        let data = exts.vec16()?;
        hello.extensions.push(typ);
        let mut d = Rd(data);
        match typ {
            EXT_SNI => {
                let mut list = Rd(d.vec16()?);
                while !list.0.is_empty() {
                    let kind = list.u8()?;
                    let name = list.vec16()?;
                    if kind == 0 && hello.sni.is_none() {
                        hello.sni = Some(name_text(name));
                    }
                }
            }
            EXT_ALPN => {
                let mut list = Rd(d.vec16()?);
                while !list.0.is_empty() {
                    let name = list.vec8()?;
                    // A record keeps a few (JA4 reads the first).
                    if hello.alpn.len() < 8 {
                        hello.alpn.push(name_text(name));
                    }
                }
            }
            EXT_VERSIONS => hello.versions = Rd::u16s(d.vec8()?),
            EXT_SIG_ALGS => hello.sig_algs = Rd::u16s(d.vec16()?),
            _ => {}
        }
    }
    Some(hello)
}

/// A ServerHello body (after the 4-byte handshake header).
pub fn server_hello(body: &[u8]) -> Option<ServerHello> {
    let mut r = Rd(body);
    let legacy = r.u16()?;
    let random: [u8; 32] = r.take(32)?.try_into().ok()?;
    r.vec8()?;
    let suite = r.u16()?;
    r.u8()?;
    let mut version = legacy;
    if !r.0.is_empty() {
        let mut exts = Rd(r.vec16()?);
        while !exts.0.is_empty() {
            let typ = exts.u16()?;
            let data = exts.vec16()?;
            if typ == EXT_VERSIONS && data.len() == 2 {
                version = u16::from_be_bytes([data[0], data[1]]);
            }
        }
    }
    Some(ServerHello {
        random,
        version,
        suite,
        retry: random == HRR_RANDOM,
    })
}

/// A version's name as the TLS libraries print it.
pub fn version_name(v: u16) -> String {
    match v {
        0x0304 => "TLSv1.3".into(),
        0x0303 => "TLSv1.2".into(),
        0x0302 => "TLSv1.1".into(),
        0x0301 => "TLSv1".into(),
        0x0300 => "SSLv3".into(),
        _ => format!("0x{v:04x}"),
    }
}

/// GREASE values (RFC 8701): 0x?a?a with both bytes equal.
fn grease(v: u16) -> bool {
    v & 0x0f0f == 0x0a0a && v >> 8 == v & 0xff
}

fn hash12(s: &str) -> String {
    if s.is_empty() {
        return "000000000000".into();
    }
    let d = Sha256::digest(s.as_bytes());
    d.iter().take(6).map(|b| format!("{b:02x}")).collect()
}

/// The JA4 fingerprint (TCP) of a ClientHello.
pub fn ja4(h: &ClientHello) -> String {
    let version = h
        .versions
        .iter()
        .copied()
        .filter(|v| !grease(*v))
        .max()
        .unwrap_or(h.legacy_version);
    let version = match version {
        0x0304 => "13",
        0x0303 => "12",
        0x0302 => "11",
        0x0301 => "10",
        0x0300 => "s3",
        _ => "00",
    };
    let sni = if h.extensions.contains(&EXT_SNI) {
        'd'
    } else {
        'i'
    };
    let suites: Vec<u16> = h.suites.iter().copied().filter(|v| !grease(*v)).collect();
    let exts: Vec<u16> = h
        .extensions
        .iter()
        .copied()
        .filter(|v| !grease(*v))
        .collect();
    let alpn = match h.alpn.first().map(|a| a.as_bytes()) {
        Some([first, .., last]) | Some([first @ last]) => {
            if first.is_ascii_alphanumeric() && last.is_ascii_alphanumeric() {
                format!("{}{}", *first as char, *last as char)
            } else {
                let (f, l) = (format!("{first:02x}"), format!("{last:02x}"));
                format!("{}{}", &f[..1], &l[1..])
            }
        }
        _ => "00".into(),
    };
    let a = format!(
        "t{version}{sni}{:02}{:02}{alpn}",
        suites.len().min(99),
        exts.len().min(99)
    );
    let mut sorted = suites;
    sorted.sort_unstable();
    let b = hash12(&join(&sorted));
    let mut ext_sorted: Vec<u16> = exts
        .into_iter()
        .filter(|e| *e != EXT_SNI && *e != EXT_ALPN)
        .collect();
    ext_sorted.sort_unstable();
    let mut c_in = join(&ext_sorted);
    let sig: Vec<u16> = h.sig_algs.iter().copied().filter(|v| !grease(*v)).collect();
    if !sig.is_empty() {
        c_in.push('_');
        c_in.push_str(&join(&sig));
    }
    let c = if ext_sorted.is_empty() {
        "000000000000".into()
    } else {
        hash12(&c_in)
    };
    format!("{a}_{b}_{c}")
}

fn join(v: &[u16]) -> String {
    v.iter()
        .map(|x| format!("{x:04x}"))
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The ClientHello of JA4's own worked example (Chrome, FoxIO's README: "JA4 =
    /// t13d1516h2_8daaf6152771_e5627efa2ab1"): its suites, extensions and signature
    /// algorithms, put into a hello.
    #[test]
    fn ja4_matches_the_specifications_example() {
        let h = ClientHello {
            random: [0; 32],
            legacy_version: 0x0303,
            suites: vec![
                0x1301, 0x1302, 0x1303, 0xc02b, 0xc02f, 0xc02c, 0xc030, 0xcca9, 0xcca8, 0xc013,
                0xc014, 0x009c, 0x009d, 0x002f, 0x0035,
            ],
            extensions: vec![
                0x001b, 0x0000, 0x0033, 0x0010, 0x4469, 0x0017, 0x002d, 0x000d, 0x0005, 0x0023,
                0x0012, 0x002b, 0xff01, 0x000b, 0x000a, 0x0015,
            ],
            sni: Some("example.com".into()),
            alpn: vec!["h2".into(), "http/1.1".into()],
            versions: vec![0x0304, 0x0303],
            sig_algs: vec![
                0x0403, 0x0804, 0x0401, 0x0503, 0x0805, 0x0501, 0x0806, 0x0601,
            ],
        };
        assert_eq!(ja4(&h), "t13d1516h2_8daaf6152771_e5627efa2ab1");
    }

    #[test]
    fn truncated_hellos_are_none_at_every_cut() {
        let mut body = vec![0x03, 0x03];
        body.extend_from_slice(&[7; 32]);
        body.extend_from_slice(&[0, 0, 2, 0x13, 0x01, 1, 0]);
        let ext = [0x00, 0x2b, 0x00, 0x03, 0x02, 0x03, 0x04];
        body.extend_from_slice(&(ext.len() as u16).to_be_bytes());
        body.extend_from_slice(&ext);
        let h = client_hello(&body).unwrap();
        assert_eq!(h.versions, vec![0x0304]);
        for cut in 1..body.len() {
            // A cut inside the extensions is a malformed hello; a cut right after the
            // compression methods is a hello without extensions.
            let got = client_hello(&body[..cut]);
            assert!(got.is_none() || cut == 2 + 32 + 1 + 4 + 2, "cut {cut}");
        }
    }
}
