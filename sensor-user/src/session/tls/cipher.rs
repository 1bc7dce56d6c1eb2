//! Suites, key schedules and record protection: TLS 1.3 (RFC 8446 §7) and TLS 1.2 AEAD suites
//! (RFC 5246 §6.3, RFC 5288 for GCM, RFC 7905 for ChaCha20-Poly1305). Records are opened
//! with ring (BoringSSL's AES-GCM, which stitches AES and GHASH into one pass: the README's TLS
//! figure compares it with `openssl speed`), its key schedules zeroized on drop all the same
//! ([`Cipher`]); HKDF, HMAC and SHA-2 are RustCrypto's, their keys zeroized too.

use super::keys::Secret;
use hmac::{Hmac, KeyInit, Mac};
use ring::aead::{self, Aad, LessSafeKey, Nonce, Tag, UnboundKey};
use sha2::{Sha256, Sha384};
use zeroize::Zeroizing;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hash {
    Sha256,
    Sha384,
}

impl Hash {
    pub fn len(self) -> usize {
        match self {
            Hash::Sha256 => 32,
            Hash::Sha384 => 48,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AeadKind {
    Aes128Gcm,
    Aes256Gcm,
    Chacha20Poly1305,
}

impl AeadKind {
    fn key_len(self) -> usize {
        match self {
            AeadKind::Aes128Gcm => 16,
            AeadKind::Aes256Gcm | AeadKind::Chacha20Poly1305 => 32,
        }
    }
}

/// What the sensor knows of a cipher suite.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Suite {
    pub id: u16,
    pub name: &'static str,
    /// `None`: not an AEAD suite the sensor opens (CBC, NULL, export, …).
    pub aead: Option<AeadKind>,
    pub hash: Hash,
}

/// The suites by IANA number. Those not listed are named by number and not opened.
const SUITES: &[(u16, &str, Option<AeadKind>, Hash)] = {
    use AeadKind::*;
    use Hash::*;
    &[
        (0x1301, "TLS_AES_128_GCM_SHA256", Some(Aes128Gcm), Sha256),
        (0x1302, "TLS_AES_256_GCM_SHA384", Some(Aes256Gcm), Sha384),
        (
            0x1303,
            "TLS_CHACHA20_POLY1305_SHA256",
            Some(Chacha20Poly1305),
            Sha256,
        ),
        (
            0xc02b,
            "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
            Some(Aes128Gcm),
            Sha256,
        ),
        (
            0xc02c,
            "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
            Some(Aes256Gcm),
            Sha384,
        ),
        (
            0xc02f,
            "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
            Some(Aes128Gcm),
            Sha256,
        ),
        (
            0xc030,
            "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
            Some(Aes256Gcm),
            Sha384,
        ),
        (
            0xcca8,
            "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
            Some(Chacha20Poly1305),
            Sha256,
        ),
        (
            0xcca9,
            "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
            Some(Chacha20Poly1305),
            Sha256,
        ),
        (
            0xccaa,
            "TLS_DHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
            Some(Chacha20Poly1305),
            Sha256,
        ),
        (
            0x009e,
            "TLS_DHE_RSA_WITH_AES_128_GCM_SHA256",
            Some(Aes128Gcm),
            Sha256,
        ),
        (
            0x009f,
            "TLS_DHE_RSA_WITH_AES_256_GCM_SHA384",
            Some(Aes256Gcm),
            Sha384,
        ),
        // RSA key exchange: with the master secret from a key log, as readable as any other.
        (
            0x009c,
            "TLS_RSA_WITH_AES_128_GCM_SHA256",
            Some(Aes128Gcm),
            Sha256,
        ),
        (
            0x009d,
            "TLS_RSA_WITH_AES_256_GCM_SHA384",
            Some(Aes256Gcm),
            Sha384,
        ),
        (0xc009, "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA", None, Sha256),
        (0xc00a, "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA", None, Sha256),
        (0xc013, "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA", None, Sha256),
        (0xc014, "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA", None, Sha256),
        (
            0xc023,
            "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256",
            None,
            Sha256,
        ),
        (
            0xc027,
            "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256",
            None,
            Sha256,
        ),
        (0x002f, "TLS_RSA_WITH_AES_128_CBC_SHA", None, Sha256),
        (0x0035, "TLS_RSA_WITH_AES_256_CBC_SHA", None, Sha256),
        (0x003c, "TLS_RSA_WITH_AES_128_CBC_SHA256", None, Sha256),
        (0x000a, "TLS_RSA_WITH_3DES_EDE_CBC_SHA", None, Sha256),
    ]
};

impl Suite {
    pub fn from_id(id: u16) -> Suite {
        SUITES
            .iter()
            .find(|s| s.0 == id)
            .map(|&(id, name, aead, hash)| Suite {
                id,
                name,
                aead,
                hash,
            })
            .unwrap_or(Suite {
                id,
                name: "",
                aead: None,
                hash: Hash::Sha256,
            })
    }

    /// The IANA name, or `0xNNNN` for a suite the table does not list.
    pub fn display(&self) -> String {
        if self.name.is_empty() {
            format!("0x{:04x}", self.id)
        } else {
            self.name.to_string()
        }
    }
}

/// An AEAD key: ring's, whose expanded key schedule (AES round keys, GHASH table) lives inline
/// in the value. ring does not clear it on drop, so the value sits in a `MaybeUninit` on the
/// heap and is overwritten with zeros once dropped.
pub struct Cipher {
    key: Box<std::mem::MaybeUninit<LessSafeKey>>,
}

impl Cipher {
    fn new(kind: AeadKind, key: &[u8]) -> Option<Self> {
        let alg = match kind {
            AeadKind::Aes128Gcm => &aead::AES_128_GCM,
            AeadKind::Aes256Gcm => &aead::AES_256_GCM,
            AeadKind::Chacha20Poly1305 => &aead::CHACHA20_POLY1305,
        };
        let k = LessSafeKey::new(UnboundKey::new(alg, key).ok()?);
        Some(Self {
            key: Box::new(std::mem::MaybeUninit::new(k)),
        })
    }

    /// Opens `buf` (ciphertext, tag excluded) in place; `false` if the tag does not verify
    /// (then `buf` holds no plaintext: ring clears what it decrypted).
    pub fn open(&self, nonce: &[u8; 12], aad: &[u8], buf: &mut [u8], tag: &[u8; 16]) -> bool {
        // SAFETY: `key` is initialised in `new` and only de-initialised in `drop`.
        let key = unsafe { self.key.assume_init_ref() };
        key.open_in_place_separate_tag(
            Nonce::assume_unique_for_key(*nonce),
            Aad::from(aad),
            Tag::from(*tag),
            buf,
            0..,
        )
        .is_ok()
    }
}

impl Drop for Cipher {
    fn drop(&mut self) {
        // SAFETY: initialised in `new`, dropped once, here; never read again after.
        unsafe { self.key.assume_init_drop() };
        // The bytes that held the key schedule, now plain memory of a `MaybeUninit`.
        // SAFETY: the pointer and length span exactly the boxed `MaybeUninit`, which any
        // bytes are valid for.
        let bytes = unsafe {
            std::slice::from_raw_parts_mut(
                self.key.as_mut_ptr().cast::<u8>(),
                std::mem::size_of::<LessSafeKey>(),
            )
        };
        zeroize::Zeroize::zeroize(bytes);
    }
}

/// One direction's record protection at one epoch.
pub struct DirKeys {
    pub cipher: Cipher,
    /// TLS 1.3 and ChaCha20 in 1.2: the 12-byte IV the sequence number is XORed into. TLS 1.2
    /// GCM: the 4-byte salt (the rest of the nonce is explicit in each record).
    pub iv: Zeroizing<[u8; 12]>,
    pub explicit_nonce: bool,
}

impl DirKeys {
    /// The nonce for record `seq` (`explicit`: TLS 1.2 GCM's 8 bytes from the record).
    pub fn nonce(&self, seq: u64, explicit: Option<&[u8]>) -> [u8; 12] {
        let mut n = *self.iv;
        match explicit {
            Some(e) if self.explicit_nonce => n[4..].copy_from_slice(&e[..8]),
            _ => {
                for (b, s) in n[4..].iter_mut().zip(seq.to_be_bytes()) {
                    *b ^= s;
                }
            }
        }
        n
    }
}

fn hmac(hash: Hash, key: &[u8], parts: &[&[u8]]) -> Zeroizing<Vec<u8>> {
    macro_rules! run {
        ($h:ty) => {{
            let mut m = <Hmac<$h> as KeyInit>::new_from_slice(key).expect("HMAC takes any key");
            for p in parts {
                m.update(p);
            }
            Zeroizing::new(m.finalize().into_bytes().to_vec())
        }};
    }
    match hash {
        Hash::Sha256 => run!(Sha256),
        Hash::Sha384 => run!(Sha384),
    }
}

/// HKDF-Expand (RFC 5869 §2.3) from a pseudorandom key that is a traffic secret.
fn hkdf_expand(hash: Hash, prk: &[u8], info: &[u8], len: usize) -> Zeroizing<Vec<u8>> {
    let mut out = Zeroizing::new(Vec::with_capacity(len));
    let mut t: Zeroizing<Vec<u8>> = Zeroizing::new(Vec::new());
    let mut i = 1u8;
    while out.len() < len {
        t = hmac(hash, prk, &[&t, info, &[i]]);
        let take = t.len().min(len - out.len());
        out.extend_from_slice(&t[..take]);
        i += 1;
    }
    out
}

/// HKDF-Expand-Label (RFC 8446 §7.1) with an empty context.
fn expand_label(hash: Hash, secret: &[u8], label: &str, len: usize) -> Zeroizing<Vec<u8>> {
    let full = [b"tls13 ", label.as_bytes()].concat();
    let mut info = Vec::with_capacity(4 + full.len());
    info.extend_from_slice(&(len as u16).to_be_bytes());
    info.push(full.len() as u8);
    info.extend_from_slice(&full);
    info.push(0);
    hkdf_expand(hash, secret, &info, len)
}

/// HKDF-Expand-Label from a traffic secret, for the benchmark's sealer.
#[doc(hidden)]
pub fn expand_for_bench(secret: &Secret, label: &str, len: usize) -> Zeroizing<Vec<u8>> {
    expand_label(Hash::Sha256, secret.bytes(), label, len)
}

/// TLS 1.3: a traffic secret's record keys (RFC 8446 §7.3).
pub fn tls13_keys(suite: &Suite, secret: &Secret) -> Option<DirKeys> {
    let kind = suite.aead?;
    if secret.bytes().len() != suite.hash.len() {
        return None;
    }
    let key = expand_label(suite.hash, secret.bytes(), "key", kind.key_len());
    let iv = expand_label(suite.hash, secret.bytes(), "iv", 12);
    let mut iv12 = Zeroizing::new([0u8; 12]);
    iv12.copy_from_slice(&iv);
    Some(DirKeys {
        cipher: Cipher::new(kind, &key)?,
        iv: iv12,
        explicit_nonce: false,
    })
}

/// TLS 1.3: the next generation of a traffic secret, after a KeyUpdate (RFC 8446 §7.2).
pub fn tls13_next_secret(suite: &Suite, secret: &Secret) -> Secret {
    Secret::new(expand_label(suite.hash, secret.bytes(), "traffic upd", suite.hash.len()).to_vec())
}

/// TLS 1.2 PRF (RFC 5246 §5): P_hash(secret, label + seed).
fn prf12(hash: Hash, secret: &[u8], label: &[u8], seed: &[u8], len: usize) -> Zeroizing<Vec<u8>> {
    let mut out = Zeroizing::new(Vec::with_capacity(len + hash.len()));
    let mut a = hmac(hash, secret, &[label, seed]);
    while out.len() < len {
        out.extend_from_slice(&hmac(hash, secret, &[&a, label, seed]));
        a = hmac(hash, secret, &[&a]);
    }
    out.truncate(len);
    out
}

/// TLS 1.2: both directions' record keys from the master secret (RFC 5246 §6.3): (client
/// write, server write).
pub fn tls12_keys(
    suite: &Suite,
    master: &Secret,
    client_random: &[u8; 32],
    server_random: &[u8; 32],
) -> Option<(DirKeys, DirKeys)> {
    let kind = suite.aead?;
    if master.bytes().len() != 48 {
        return None;
    }
    // GCM: a 4-byte implicit salt (RFC 5288 §3); ChaCha20-Poly1305: a 12-byte IV (RFC 7905 §2).
    let (iv_len, explicit) = match kind {
        AeadKind::Chacha20Poly1305 => (12, false),
        _ => (4, true),
    };
    let key_len = kind.key_len();
    let seed = [&server_random[..], &client_random[..]].concat();
    let block = prf12(
        suite.hash,
        master.bytes(),
        b"key expansion",
        &seed,
        2 * key_len + 2 * iv_len,
    );
    let (ck, rest) = block.split_at(key_len);
    let (sk, rest) = rest.split_at(key_len);
    let (civ, siv) = rest.split_at(iv_len);
    let dir = |k: &[u8], iv: &[u8]| {
        let mut iv12 = Zeroizing::new([0u8; 12]);
        iv12[..iv.len()].copy_from_slice(iv);
        Some(DirKeys {
            cipher: Cipher::new(kind, k)?,
            iv: iv12,
            explicit_nonce: explicit,
        })
    };
    Some((dir(ck, civ)?, dir(sk, siv)?))
}

/// TLS 1.3 record protection the other way, for tests: `plaintext` of `inner` content type as
/// record `seq` of the epoch `secret` opens (AES-128-GCM suites only).
#[cfg(test)]
pub(super) fn seal13(secret: &Secret, seq: u64, inner: u8, plaintext: &[u8]) -> Vec<u8> {
    let key = expand_label(Hash::Sha256, secret.bytes(), "key", 16);
    let iv = expand_label(Hash::Sha256, secret.bytes(), "iv", 12);
    let mut nonce = [0u8; 12];
    nonce.copy_from_slice(&iv);
    for (b, s) in nonce[4..].iter_mut().zip(seq.to_be_bytes()) {
        *b ^= s;
    }
    let mut body = plaintext.to_vec();
    body.push(inner);
    let len = body.len() + 16;
    let header = [23, 3, 3, (len >> 8) as u8, len as u8];
    // Sealed by RustCrypto: another implementation than the one that opens.
    use aes_gcm::aead::{AeadInOut, KeyInit as _};
    let c = aes_gcm::Aes128Gcm::new_from_slice(&key).unwrap();
    let tag = c
        .encrypt_inout_detached((&nonce).into(), &header, body.as_mut_slice().into())
        .unwrap();
    let mut rec = header.to_vec();
    rec.extend_from_slice(&body);
    rec.extend_from_slice(&tag);
    rec
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    /// RFC 8448 §3 (simple 1-RTT handshake, TLS_AES_128_GCM_SHA256): the server's handshake
    /// traffic secret gives the key and IV the RFC lists, and they open the server's first
    /// encrypted record (EncryptedExtensions … Finished) as the RFC shows it.
    #[test]
    fn rfc8448_server_handshake_keys_and_record() {
        let suite = Suite::from_id(0x1301);
        let secret = Secret::new(hex(
            "b6 7b 7d 69 0c c1 6c 4e 75 e5 42 13 cb 2d 37 b4 e9 c9 12 bc de d9 10 5d 42 be fd 59 d3 91 ad 38",
        ));
        assert_eq!(
            *expand_label(suite.hash, secret.bytes(), "key", 16),
            hex("3f ce 51 60 09 c2 17 27 d0 f2 e4 e8 6e e4 03 bc")
        );
        assert_eq!(
            *expand_label(suite.hash, secret.bytes(), "iv", 12),
            hex("5d 31 3e b2 67 12 76 ee 13 00 0b 30")
        );
        let keys = tls13_keys(&suite, &secret).unwrap();
        let record = hex(RFC8448_SERVER_HS_RECORD);
        let (header, body) = record.split_at(5);
        let mut body = body.to_vec();
        let tag: [u8; 16] = body.split_off(body.len() - 16).try_into().unwrap();
        assert!(
            keys.cipher
                .open(&keys.nonce(0, None), header, &mut body, &tag)
        );
        // EncryptedExtensions (type 8, 0x24 bytes) first, content type 22 last.
        assert_eq!(&body[..4], &[0x08, 0x00, 0x00, 0x24]);
        assert_eq!(*body.last().unwrap(), 22);
        // A wrong sequence number fails the tag.
        let mut again = record[5..record.len() - 16].to_vec();
        assert!(
            !keys
                .cipher
                .open(&keys.nonce(1, None), header, &mut again, &tag)
        );
    }

    /// RFC 5246's PRF with SHA-256: the test vector published on the IETF TLS list
    /// (mail-archive/web/tls/current/msg03416.html).
    #[test]
    fn prf12_sha256_vector() {
        let out = prf12(
            Hash::Sha256,
            &hex("9b be 43 6b a9 40 f0 17 b1 76 52 84 9a 71 db 35"),
            b"test label",
            &hex("a0 ba 9f 93 6c da 31 18 27 a6 f7 96 ff d5 19 8c"),
            100,
        );
        assert_eq!(
            *out,
            hex(
                "e3 f2 29 ba 72 7b e1 7b 8d 12 26 20 55 7c d4 53 c2 aa b2 1d 07 c3 d4 95
                 32 9b 52 d4 e6 1e db 5a 6b 30 17 91 e9 0d 35 c9 c9 a4 6b 4e 14 ba f9 af
                 0f a0 22 f7 07 7d ef 17 ab fd 37 97 c0 56 4b ab 4f bc 91 66 6e 9d ef 9b
                 97 fc e3 4f 79 67 89 ba a4 80 82 d1 22 ee 42 c5 a7 2e 5a 51 10 ff f7 01
                 87 34 7b 66"
            )
        );
    }

    /// RFC 8448 §3, "{server} send handshake record: complete record (679 octets)".
    const RFC8448_SERVER_HS_RECORD: &str = "
    17 03 03 02 a2 d1 ff 33 4a 56 f5 bf f6 59 4a 07
    cc 87 b5 80 23 3f 50 0f 45 e4 89 e7 f3 3a f3 5e
    df 78 69 fc f4 0a a4 0a a2 b8 ea 73 f8 48 a7 ca
    07 61 2e f9 f9 45 cb 96 0b 40 68 90 51 23 ea 78
    b1 11 b4 29 ba 91 91 cd 05 d2 a3 89 28 0f 52 61
    34 aa dc 7f c7 8c 4b 72 9d f8 28 b5 ec f7 b1 3b
    d9 ae fb 0e 57 f2 71 58 5b 8e a9 bb 35 5c 7c 79
    02 07 16 cf b9 b1 18 3e f3 ab 20 e3 7d 57 a6 b9
    d7 47 76 09 ae e6 e1 22 a4 cf 51 42 73 25 25 0c
    7d 0e 50 92 89 44 4c 9b 3a 64 8f 1d 71 03 5d 2e
    d6 5b 0e 3c dd 0c ba e8 bf 2d 0b 22 78 12 cb b3
    60 98 72 55 cc 74 41 10 c4 53 ba a4 fc d6 10 92
    8d 80 98 10 e4 b7 ed 1a 8f d9 91 f0 6a a6 24 82
    04 79 7e 36 a6 a7 3b 70 a2 55 9c 09 ea d6 86 94
    5b a2 46 ab 66 e5 ed d8 04 4b 4c 6d e3 fc f2 a8
    94 41 ac 66 27 2f d8 fb 33 0e f8 19 05 79 b3 68
    45 96 c9 60 bd 59 6e ea 52 0a 56 a8 d6 50 f5 63
    aa d2 74 09 96 0d ca 63 d3 e6 88 61 1e a5 e2 2f
    44 15 cf 95 38 d5 1a 20 0c 27 03 42 72 96 8a 26
    4e d6 54 0c 84 83 8d 89 f7 2c 24 46 1a ad 6d 26
    f5 9e ca ba 9a cb bb 31 7b 66 d9 02 f4 f2 92 a3
    6a c1 b6 39 c6 37 ce 34 31 17 b6 59 62 22 45 31
    7b 49 ee da 0c 62 58 f1 00 d7 d9 61 ff b1 38 64
    7e 92 ea 33 0f ae ea 6d fa 31 c7 a8 4d c3 bd 7e
    1b 7a 6c 71 78 af 36 87 90 18 e3 f2 52 10 7f 24
    3d 24 3d c7 33 9d 56 84 c8 b0 37 8b f3 02 44 da
    8c 87 c8 43 f5 e5 6e b4 c5 e8 28 0a 2b 48 05 2c
    f9 3b 16 49 9a 66 db 7c ca 71 e4 59 94 26 f7 d4
    61 e6 6f 99 88 2b d8 9f c5 08 00 be cc a6 2d 6c
    74 11 6d bd 29 72 fd a1 fa 80 f8 5d f8 81 ed be
    5a 37 66 89 36 b3 35 58 3b 59 91 86 dc 5c 69 18
    a3 96 fa 48 a1 81 d6 b6 fa 4f 9d 62 d5 13 af bb
    99 2f 2b 99 2f 67 f8 af e6 7f 76 91 3f a3 88 cb
    56 30 c8 ca 01 e0 c6 5d 11 c6 6a 1e 2a c4 c8 59
    77 b7 c7 a6 99 9b bf 10 dc 35 ae 69 f5 51 56 14
    63 6c 0b 9b 68 c1 9e d2 e3 1c 0b 3b 66 76 30 38
    eb ba 42 f3 b3 8e dc 03 99 f3 a9 f2 3f aa 63 97
    8c 31 7f c9 fa 66 a7 3f 60 f0 50 4d e9 3b 5b 84
    5e 27 55 92 c1 23 35 ee 34 0b bc 4f dd d5 02 78
    40 16 e4 b3 be 7e f0 4d da 49 f4 b4 40 a3 0c b5
    d2 af 93 98 28 fd 4a e3 79 4e 44 f9 4d f5 a6 31
    ed e4 2c 17 19 bf da bf 02 53 fe 51 75 be 89 8e
    75 0e dc 53 37 0d 2b";
}
