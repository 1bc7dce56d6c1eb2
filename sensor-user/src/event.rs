//! The per-packet event, as both captures deliver it: the kernel's ring-buffer record, or the
//! same encoding made by the offline twin ([`crate::capture::packet`]).

use sensor_common::{EventHeader, direction};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EventError {
    #[error("record of {0} bytes is shorter than the {1}-byte event header")]
    Short(usize, usize),
    #[error("record says {claimed} payload bytes follow but {present} do")]
    Length { claimed: usize, present: usize },
    #[error("record's tail ({tail} bytes) does not fit in its captured length ({captured})")]
    Tail { tail: usize, captured: usize },
}

/// One database segment: its header and the payload bytes the kernel copied.
#[derive(Clone, Copy, Debug)]
pub struct Event<'a> {
    pub hdr: EventHeader,
    data: &'a [u8],
}

impl<'a> Event<'a> {
    /// Decodes a ring-buffer record, checking that its lengths agree with each other.
    pub fn parse(record: &'a [u8]) -> Result<Self, EventError> {
        if record.len() < EventHeader::SIZE {
            return Err(EventError::Short(record.len(), EventHeader::SIZE));
        }
        // SAFETY: EventHeader is repr(C) plain integers; length checked above.
        let hdr: EventHeader =
            unsafe { std::ptr::read_unaligned(record.as_ptr().cast::<EventHeader>()) };
        let data = &record[EventHeader::SIZE..];
        if data.len() != hdr.data_len() {
            return Err(EventError::Length {
                claimed: hdr.data_len(),
                present: data.len(),
            });
        }
        if hdr.data_len() > hdr.captured_len as usize {
            return Err(EventError::Tail {
                tail: hdr.tail_len as usize,
                captured: hdr.captured_len as usize,
            });
        }
        Ok(Self { hdr, data })
    }

    /// Payload bytes from the start of the segment.
    pub fn head(&self) -> &'a [u8] {
        &self.data[..self.hdr.head_len as usize]
    }

    /// Payload bytes that end the captured part of the segment (empty when the head holds it all).
    pub fn tail(&self) -> &'a [u8] {
        &self.data[self.hdr.head_len as usize..]
    }

    /// True when every captured payload byte is present (no gap between head and tail).
    pub fn is_complete(&self) -> bool {
        self.hdr.data_len() == self.hdr.captured_len as usize
            && self.hdr.captured_len == self.hdr.payload_len
    }

    pub fn to_server(&self) -> bool {
        self.hdr.direction == direction::TO_SERVER
    }
}

/// The raw bytes of a header, as they sit at the start of a ring-buffer record.
pub fn header_bytes(hdr: &EventHeader) -> &[u8] {
    // SAFETY: repr(C), no padding bytes (size asserted in sensor-common), plain integers.
    unsafe { std::slice::from_raw_parts(std::ptr::from_ref(hdr).cast::<u8>(), EventHeader::SIZE) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(hdr: EventHeader, payload: &[u8]) -> Vec<u8> {
        let mut r = header_bytes(&hdr).to_vec();
        r.extend_from_slice(payload);
        r
    }

    #[test]
    fn round_trip_head_and_tail() {
        let hdr = EventHeader {
            payload_len: 10,
            captured_len: 10,
            head_len: 3,
            tail_len: 2,
            ..Default::default()
        };
        let r = record(hdr, b"abcde");
        let ev = Event::parse(&r).unwrap();
        assert_eq!(ev.head(), b"abc");
        assert_eq!(ev.tail(), b"de");
        assert!(!ev.is_complete());
    }

    #[test]
    fn rejects_lying_lengths() {
        let hdr = EventHeader {
            payload_len: 10,
            captured_len: 10,
            head_len: 8,
            ..Default::default()
        };
        assert_eq!(
            Event::parse(&record(hdr, b"abc")).unwrap_err(),
            EventError::Length {
                claimed: 8,
                present: 3
            }
        );
        assert!(matches!(
            Event::parse(&[0u8; 10]),
            Err(EventError::Short(10, _))
        ));
        let hdr = EventHeader {
            captured_len: 2,
            head_len: 3,
            ..Default::default()
        };
        assert!(matches!(
            Event::parse(&record(hdr, b"abc")),
            Err(EventError::Tail { .. })
        ));
    }

    #[test]
    fn v4_mapped_addresses_print_as_v4() {
        let mut a = [0u8; 16];
        a[10] = 0xff;
        a[11] = 0xff;
        a[12..].copy_from_slice(&[192, 0, 2, 7]);
        assert_eq!(crate::model::ip(&a).to_string(), "192.0.2.7");
    }
}
