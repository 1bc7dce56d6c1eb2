//! Bytes a client or server chose, made fit for a record.

/// Lossy UTF-8.
pub fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Lossy UTF-8 of at most the first `max` bytes.
pub fn text(b: &[u8], max: usize) -> String {
    lossy(&b[..b.len().min(max)])
}

/// No control characters (any byte from 0x80 passes: UTF-8 sequences, Latin-1 names).
pub fn printable(b: &[u8]) -> bool {
    b.iter().all(|&c| c >= 0x20 && c != 0x7f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_bounded_and_lossy() {
        assert_eq!(text(b"abcdef", 3), "abc");
        assert_eq!(text(b"ab\xffc", 10), "ab\u{fffd}c");
        assert!(printable(b"user_1 \xc3\xa9"));
        assert!(!printable(b"a\x00b"));
        assert!(!printable(b"a\x7fb"));
    }
}
