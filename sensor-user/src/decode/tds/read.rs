//! The byte reader every part of the grammar shares: little-endian integers and UCS-2 text,
//! bounded by the bytes at hand (a read past them is `None`, never a panic).

/// A little-endian reader over bytes that may end anywhere.
#[derive(Clone)]
pub(super) struct Rd<'a> {
    b: &'a [u8],
    pub(super) pos: usize,
}

impl<'a> Rd<'a> {
    pub(super) fn new(b: &'a [u8]) -> Self {
        Self { b, pos: 0 }
    }

    pub(super) fn left(&self) -> usize {
        self.b.len() - self.pos
    }

    pub(super) fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let s = self.b.get(self.pos..self.pos.checked_add(n)?)?;
        self.pos += n;
        Some(s)
    }

    pub(super) fn skip(&mut self, n: usize) -> Option<()> {
        self.take(n).map(|_| ())
    }

    pub(super) fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }

    pub(super) fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| u16::from_le_bytes([b[0], b[1]]))
    }

    pub(super) fn u32(&mut self) -> Option<u32> {
        self.take(4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub(super) fn u64(&mut self) -> Option<u64> {
        let b = self.take(8)?;
        Some(u64::from_le_bytes(b.try_into().ok()?))
    }

    /// B_VARCHAR: a character count in one byte, then UCS-2.
    pub(super) fn b_varchar(&mut self) -> Option<String> {
        let n = usize::from(self.u8()?);
        self.take(2 * n).map(ucs2)
    }

    /// US_VARCHAR: a character count in two bytes, then UCS-2.
    pub(super) fn us_varchar(&mut self) -> Option<String> {
        let n = usize::from(self.u16()?);
        self.take(2 * n).map(ucs2)
    }
}

/// UCS-2 / UTF-16LE text (lossy: an unpaired surrogate becomes U+FFFD; an odd last byte is
/// dropped).
pub(super) fn ucs2(b: &[u8]) -> String {
    let units: Vec<u16> = b
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect();
    String::from_utf16_lossy(&units)
}

impl Rd<'_> {
    /// The next byte, not taken.
    pub(super) fn peek(&self) -> Option<u8> {
        self.b.get(self.pos).copied()
    }
}
