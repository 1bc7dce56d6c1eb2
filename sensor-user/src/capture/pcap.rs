//! Reader for pcap (microsecond and nanosecond, either byte order) and pcapng files.
//!
//! Written here rather than taken from a crate so that every malformed input ends in a
//! [`PcapError`] naming the offset, never a panic, and memory stays bounded by the largest
//! block (capped at [`MAX_BLOCK`]).

use std::io::Read;

/// Largest record or block accepted (pcapng allows larger; real captures stay far below).
pub const MAX_BLOCK: usize = 16 << 20;

#[derive(Debug, thiserror::Error)]
pub enum PcapError {
    #[error("reading the capture: {0}")]
    Io(#[from] std::io::Error),
    #[error("not a pcap or pcapng file (magic {0:#010x})")]
    BadMagic(u32),
    #[error("truncated {what} at byte {offset}")]
    Truncated { what: &'static str, offset: u64 },
    #[error("{what} of {len} bytes at byte {offset} is larger than the {MAX_BLOCK}-byte limit")]
    TooLarge {
        what: &'static str,
        len: u64,
        offset: u64,
    },
    #[error("malformed {what} at byte {offset}: {why}")]
    Malformed {
        what: &'static str,
        offset: u64,
        why: String,
    },
}

/// One captured frame.
#[derive(Debug)]
pub struct Frame<'a> {
    /// ns since the Unix epoch.
    pub ts_ns: u64,
    /// Length on the wire.
    pub orig_len: u32,
    /// pcap link type of the interface it was captured on.
    pub linktype: u32,
    pub data: &'a [u8],
}

enum Format {
    Pcap {
        swapped: bool,
        nanos: bool,
        linktype: u32,
    },
    PcapNg {
        swapped: bool,
        /// (linktype, ns per timestamp unit numerator/denominator) per interface.
        interfaces: Vec<Interface>,
    },
}

#[derive(Clone, Copy)]
struct Interface {
    linktype: u32,
    /// Timestamp units per second.
    units_per_sec: u64,
}

pub struct PcapReader<R: Read> {
    inner: R,
    format: Format,
    offset: u64,
    buf: Vec<u8>,
}

impl PcapReader<std::io::BufReader<std::fs::File>> {
    pub fn open(path: &std::path::Path) -> Result<Self, PcapError> {
        Self::new(std::io::BufReader::new(std::fs::File::open(path)?))
    }
}

fn u32_at(b: &[u8], off: usize, swapped: bool) -> u32 {
    let v = u32::from_le_bytes([b[off], b[off + 1], b[off + 2], b[off + 3]]);
    if swapped { v.swap_bytes() } else { v }
}

fn u16_at(b: &[u8], off: usize, swapped: bool) -> u16 {
    let v = u16::from_le_bytes([b[off], b[off + 1]]);
    if swapped { v.swap_bytes() } else { v }
}

impl<R: Read> PcapReader<R> {
    pub fn new(mut inner: R) -> Result<Self, PcapError> {
        let mut magic = [0u8; 4];
        read_exact(&mut inner, &mut magic, "file header", 0)?;
        let m = u32::from_le_bytes(magic);
        let mut me = Self {
            inner,
            format: Format::Pcap {
                swapped: false,
                nanos: false,
                linktype: 0,
            },
            offset: 4,
            buf: Vec::new(),
        };
        match m {
            0xa1b2_c3d4 | 0xd4c3_b2a1 | 0xa1b2_3c4d | 0x4d3c_b2a1 => {
                let swapped = m == 0xd4c3_b2a1 || m == 0x4d3c_b2a1;
                let nanos = m == 0xa1b2_3c4d || m == 0x4d3c_b2a1;
                let mut rest = [0u8; 20];
                read_exact(&mut me.inner, &mut rest, "pcap file header", 4)?;
                me.offset = 24;
                // The link type's low 16 bits; the upper bits carry FCS information.
                let linktype = u32_at(&rest, 16, swapped) & 0xffff;
                me.format = Format::Pcap {
                    swapped,
                    nanos,
                    linktype,
                };
            }
            0x0a0d_0d0a => {
                me.format = Format::PcapNg {
                    swapped: false,
                    interfaces: Vec::new(),
                };
                // Read the rest of the section header block.
                me.read_ng_block_body(m, 0)?;
            }
            other => return Err(PcapError::BadMagic(other)),
        }
        Ok(me)
    }

    /// The next frame, or `None` at the end of the file.
    pub fn next_frame(&mut self) -> Result<Option<Frame<'_>>, PcapError> {
        match self.format {
            Format::Pcap {
                swapped,
                nanos,
                linktype,
            } => {
                let start = self.offset;
                let mut hdr = [0u8; 16];
                if !read_or_eof(&mut self.inner, &mut hdr, "record header", start)? {
                    return Ok(None);
                }
                let sec = u32_at(&hdr, 0, swapped) as u64;
                let frac = u32_at(&hdr, 4, swapped) as u64;
                let caplen = u32_at(&hdr, 8, swapped) as u64;
                let orig_len = u32_at(&hdr, 12, swapped);
                if caplen as usize > MAX_BLOCK {
                    return Err(PcapError::TooLarge {
                        what: "record",
                        len: caplen,
                        offset: start,
                    });
                }
                self.buf.resize(caplen as usize, 0);
                read_exact(&mut self.inner, &mut self.buf, "record data", start + 16)?;
                self.offset = start + 16 + caplen;
                let ts_ns = sec * 1_000_000_000 + if nanos { frac } else { frac * 1000 };
                Ok(Some(Frame {
                    ts_ns,
                    orig_len,
                    linktype,
                    data: &self.buf,
                }))
            }
            Format::PcapNg { .. } => loop {
                let start = self.offset;
                let mut t = [0u8; 4];
                if !read_or_eof(&mut self.inner, &mut t, "block type", start)? {
                    return Ok(None);
                }
                let btype = u32::from_le_bytes(t);
                let kind = self.read_ng_block_body(btype, start)?;
                if let Some((ts_ns, orig_len, linktype, range)) = kind {
                    return Ok(Some(Frame {
                        ts_ns,
                        orig_len,
                        linktype,
                        data: &self.buf[range],
                    }));
                }
            },
        }
    }

    /// Reads a pcapng block whose 4-byte type was already read at `start`. Returns a packet's
    /// (ts, orig_len, linktype, data range in `self.buf`) for packet blocks.
    #[allow(clippy::type_complexity)]
    fn read_ng_block_body(
        &mut self,
        btype: u32,
        start: u64,
    ) -> Result<Option<(u64, u32, u32, std::ops::Range<usize>)>, PcapError> {
        let mut lenb = [0u8; 4];
        read_exact(&mut self.inner, &mut lenb, "block length", start + 4)?;
        if btype == 0x0a0d_0d0a {
            // Section header: the byte-order magic decides how the rest is read.
            let mut bom = [0u8; 4];
            read_exact(&mut self.inner, &mut bom, "byte-order magic", start + 8)?;
            let swapped = match u32::from_le_bytes(bom) {
                0x1a2b_3c4d => false,
                0x4d3c_2b1a => true,
                other => {
                    return Err(PcapError::Malformed {
                        what: "section header",
                        offset: start,
                        why: format!("byte-order magic {other:#010x}"),
                    });
                }
            };
            let len = u32_at(&lenb, 0, swapped) as u64;
            check_len(len, 28, start, "section header")?;
            self.buf.resize(len as usize - 12, 0);
            read_exact(&mut self.inner, &mut self.buf, "section header", start + 12)?;
            self.offset = start + len;
            // A new section starts a new interface list.
            self.format = Format::PcapNg {
                swapped,
                interfaces: Vec::new(),
            };
            return Ok(None);
        }
        let Format::PcapNg {
            swapped,
            ref mut interfaces,
        } = self.format
        else {
            unreachable!("pcapng block outside pcapng");
        };
        let btype = if swapped { btype.swap_bytes() } else { btype };
        let len = u32_at(&lenb, 0, swapped) as u64;
        check_len(len, 12, start, "block")?;
        self.buf.resize(len as usize - 8, 0);
        read_exact(&mut self.inner, &mut self.buf, "block body", start + 8)?;
        self.offset = start + len;
        let body_len = self.buf.len() - 4; // trailing length copy
        let body = &self.buf[..body_len];
        let malformed = |why: &str| PcapError::Malformed {
            what: "pcapng block",
            offset: start,
            why: why.to_string(),
        };
        match btype {
            // Interface description block.
            1 => {
                if body.len() < 8 {
                    return Err(malformed("interface description shorter than 8 bytes"));
                }
                let linktype = u16_at(body, 0, swapped) as u32;
                let mut units_per_sec = 1_000_000u64;
                let mut o = 8;
                while o + 4 <= body.len() {
                    let code = u16_at(body, o, swapped);
                    let olen = u16_at(body, o + 2, swapped) as usize;
                    if code == 0 || o + 4 + olen > body.len() {
                        break;
                    }
                    if code == 9 && olen >= 1 {
                        let r = body[o + 4];
                        units_per_sec = if r & 0x80 != 0 {
                            1u64.checked_shl((r & 0x7f) as u32).unwrap_or(0)
                        } else {
                            10u64.checked_pow((r & 0x7f) as u32).unwrap_or(0)
                        };
                        if units_per_sec == 0 {
                            return Err(malformed("if_tsresol out of range"));
                        }
                    }
                    o += 4 + olen.div_ceil(4) * 4;
                }
                interfaces.push(Interface {
                    linktype,
                    units_per_sec,
                });
                Ok(None)
            }
            // Enhanced packet block.
            6 => {
                if body.len() < 20 {
                    return Err(malformed("enhanced packet block shorter than 20 bytes"));
                }
                let ifid = u32_at(body, 0, swapped) as usize;
                let ts =
                    ((u32_at(body, 4, swapped) as u64) << 32) | u32_at(body, 8, swapped) as u64;
                let caplen = u32_at(body, 12, swapped) as usize;
                let orig_len = u32_at(body, 16, swapped);
                if 20 + caplen > body.len() {
                    return Err(malformed("captured length runs past the block"));
                }
                let iface = *interfaces.get(ifid).ok_or_else(|| {
                    malformed(&format!("packet names undeclared interface {ifid}"))
                })?;
                let ts_ns = (ts as u128 * 1_000_000_000 / iface.units_per_sec as u128) as u64;
                Ok(Some((ts_ns, orig_len, iface.linktype, 20..20 + caplen)))
            }
            // Simple packet block: interface 0, no timestamp.
            3 => {
                if body.len() < 4 {
                    return Err(malformed("simple packet block shorter than 4 bytes"));
                }
                let orig_len = u32_at(body, 0, swapped);
                let iface = *interfaces
                    .first()
                    .ok_or_else(|| malformed("simple packet before any interface"))?;
                let caplen = (orig_len as usize).min(body.len() - 4);
                Ok(Some((0, orig_len, iface.linktype, 4..4 + caplen)))
            }
            _ => Ok(None),
        }
    }
}

fn check_len(len: u64, min: u64, start: u64, what: &'static str) -> Result<(), PcapError> {
    if len < min || !len.is_multiple_of(4) {
        return Err(PcapError::Malformed {
            what,
            offset: start,
            why: format!("block length {len}"),
        });
    }
    if len as usize > MAX_BLOCK {
        return Err(PcapError::TooLarge {
            what,
            len,
            offset: start,
        });
    }
    Ok(())
}

fn read_exact<R: Read>(
    r: &mut R,
    buf: &mut [u8],
    what: &'static str,
    offset: u64,
) -> Result<(), PcapError> {
    r.read_exact(buf).map_err(|e| {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            PcapError::Truncated { what, offset }
        } else {
            PcapError::Io(e)
        }
    })
}

/// Like `read_exact`, but a clean end of file before the first byte is `Ok(false)`.
fn read_or_eof<R: Read>(
    r: &mut R,
    buf: &mut [u8],
    what: &'static str,
    offset: u64,
) -> Result<bool, PcapError> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) if got == 0 => return Ok(false),
            Ok(0) => return Err(PcapError::Truncated { what, offset }),
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pcap(frames: &[(u32, u32, &[u8])]) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
        v.extend_from_slice(&2u16.to_le_bytes());
        v.extend_from_slice(&4u16.to_le_bytes());
        v.extend_from_slice(&[0; 8]);
        v.extend_from_slice(&65535u32.to_le_bytes());
        v.extend_from_slice(&1u32.to_le_bytes());
        for (sec, usec, data) in frames {
            v.extend_from_slice(&sec.to_le_bytes());
            v.extend_from_slice(&usec.to_le_bytes());
            v.extend_from_slice(&(data.len() as u32).to_le_bytes());
            v.extend_from_slice(&(data.len() as u32).to_le_bytes());
            v.extend_from_slice(data);
        }
        v
    }

    #[test]
    fn reads_classic_pcap() {
        let file = pcap(&[(1, 2, b"abc"), (3, 4, b"de")]);
        let mut r = PcapReader::new(&file[..]).unwrap();
        let f = r.next_frame().unwrap().unwrap();
        assert_eq!(
            (f.ts_ns, f.data, f.linktype),
            (1_000_002_000, &b"abc"[..], 1)
        );
        let f = r.next_frame().unwrap().unwrap();
        assert_eq!(f.data, b"de");
        assert!(r.next_frame().unwrap().is_none());
    }

    #[test]
    fn every_truncation_is_an_error_not_a_panic() {
        let file = pcap(&[(1, 2, b"abcdef"), (3, 4, b"de")]);
        for cut in 0..file.len() {
            let res = (|| -> Result<usize, PcapError> {
                let mut r = PcapReader::new(&file[..cut])?;
                let mut n = 0;
                while r.next_frame()?.is_some() {
                    n += 1;
                }
                Ok(n)
            })();
            // Cuts at record boundaries are clean ends; all others must be errors.
            if let Ok(n) = res {
                assert!(
                    cut == 24 && n == 0 || cut == 46 && n == 1,
                    "cut {cut} gave Ok({n})"
                );
            }
        }
    }

    #[test]
    fn rejects_bad_magic() {
        assert!(matches!(
            PcapReader::new(&b"GET / HTTP/1.1\r\n"[..]),
            Err(PcapError::BadMagic(_))
        ));
    }

    #[test]
    fn reads_pcapng_with_nanosecond_resolution() {
        let mut v = Vec::new();
        // SHB
        v.extend_from_slice(&0x0a0d_0d0au32.to_le_bytes());
        v.extend_from_slice(&28u32.to_le_bytes());
        v.extend_from_slice(&0x1a2b_3c4du32.to_le_bytes());
        v.extend_from_slice(&1u16.to_le_bytes());
        v.extend_from_slice(&0u16.to_le_bytes());
        v.extend_from_slice(&(-1i64).to_le_bytes());
        v.extend_from_slice(&28u32.to_le_bytes());
        // IDB with if_tsresol = 9
        v.extend_from_slice(&1u32.to_le_bytes());
        v.extend_from_slice(&32u32.to_le_bytes());
        v.extend_from_slice(&113u16.to_le_bytes());
        v.extend_from_slice(&0u16.to_le_bytes());
        v.extend_from_slice(&0u32.to_le_bytes());
        v.extend_from_slice(&9u16.to_le_bytes());
        v.extend_from_slice(&1u16.to_le_bytes());
        v.extend_from_slice(&[9, 0, 0, 0]);
        v.extend_from_slice(&0u32.to_le_bytes()); // opt_endofopt
        v.extend_from_slice(&32u32.to_le_bytes());
        // EPB with 3 bytes of data (padded to 4)
        let ts: u64 = 1_500_000_000_123_456_789;
        v.extend_from_slice(&6u32.to_le_bytes());
        v.extend_from_slice(&36u32.to_le_bytes());
        v.extend_from_slice(&0u32.to_le_bytes());
        v.extend_from_slice(&((ts >> 32) as u32).to_le_bytes());
        v.extend_from_slice(&(ts as u32).to_le_bytes());
        v.extend_from_slice(&3u32.to_le_bytes());
        v.extend_from_slice(&60u32.to_le_bytes());
        v.extend_from_slice(b"xyz\0");
        v.extend_from_slice(&36u32.to_le_bytes());
        let mut r = PcapReader::new(&v[..]).unwrap();
        let f = r.next_frame().unwrap().unwrap();
        assert_eq!(
            (f.ts_ns, f.orig_len, f.linktype, f.data),
            (ts, 60, 113, &b"xyz"[..])
        );
        assert!(r.next_frame().unwrap().is_none());
    }
}
