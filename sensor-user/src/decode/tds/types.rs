//! TYPE_INFO and the values it describes (MS-TDS §2.2.5.4–§2.2.5.6): enough to walk RPC
//! parameters, RETURNVALUE tokens and result rows, and to read the few values the decoder
//! needs (a statement's text, a prepared handle). A type this reader does not know stops the
//! walk (`None`): the caller falls back to what it has.

use super::read::{Rd, ucs2};

/// How a value of a type is laid out on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Len {
    /// Always this many bytes.
    Fixed(usize),
    /// A one-byte length (0: NULL for the nullable types).
    Byte,
    /// A two-byte length (0xFFFF: NULL).
    UShort,
    /// A four-byte length (SQL_VARIANT).
    Long,
    /// TEXT, NTEXT, IMAGE: a text pointer, a timestamp, then a four-byte length.
    Text,
    /// Partially length-prefixed (the MAX types, XML, UDT, JSON).
    Plp,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct TypeInfo {
    pub(super) id: u8,
    pub(super) len: Len,
}

/// Type ids (§2.2.5.4.1–§2.2.5.4.3).
mod id {
    pub const NULL: u8 = 0x1f;
    pub const INT1: u8 = 0x30;
    pub const BIT: u8 = 0x32;
    pub const INT2: u8 = 0x34;
    pub const INT4: u8 = 0x38;
    pub const DATETIM4: u8 = 0x3a;
    pub const FLT4: u8 = 0x3b;
    pub const MONEY: u8 = 0x3c;
    pub const DATETIME: u8 = 0x3d;
    pub const FLT8: u8 = 0x3e;
    pub const MONEY4: u8 = 0x7a;
    pub const INT8: u8 = 0x7f;
    pub const GUID: u8 = 0x24;
    pub const INTN: u8 = 0x26;
    pub const DECIMAL: u8 = 0x37;
    pub const NUMERIC: u8 = 0x3f;
    pub const BITN: u8 = 0x68;
    pub const DECIMALN: u8 = 0x6a;
    pub const NUMERICN: u8 = 0x6c;
    pub const FLTN: u8 = 0x6d;
    pub const MONEYN: u8 = 0x6e;
    pub const DATETIMN: u8 = 0x6f;
    pub const DATEN: u8 = 0x28;
    pub const TIMEN: u8 = 0x29;
    pub const DATETIME2N: u8 = 0x2a;
    pub const DATETIMEOFFSETN: u8 = 0x2b;
    pub const CHAR: u8 = 0x2f;
    pub const VARCHAR: u8 = 0x27;
    pub const BINARY: u8 = 0x2d;
    pub const VARBINARY: u8 = 0x25;
    pub const BIGVARBIN: u8 = 0xa5;
    pub const BIGVARCHR: u8 = 0xa7;
    pub const BIGBINARY: u8 = 0xad;
    pub const BIGCHAR: u8 = 0xaf;
    pub const NVARCHAR: u8 = 0xe7;
    pub const NCHAR: u8 = 0xef;
    pub const XML: u8 = 0xf1;
    pub const UDT: u8 = 0xf0;
    pub const TEXT: u8 = 0x23;
    pub const IMAGE: u8 = 0x22;
    pub const NTEXT: u8 = 0x63;
    pub const SSVARIANT: u8 = 0x62;
    pub const JSON: u8 = 0xf4;
}

impl TypeInfo {
    /// Reads a TYPE_INFO. `column`: inside COLMETADATA, where TEXT, NTEXT and IMAGE are
    /// followed by the table name.
    pub(super) fn parse(r: &mut Rd<'_>, column: bool) -> Option<Self> {
        use id::*;
        let t = r.u8()?;
        let len = match t {
            NULL => Len::Fixed(0),
            INT1 | BIT => Len::Fixed(1),
            INT2 => Len::Fixed(2),
            INT4 | DATETIM4 | FLT4 | MONEY4 => Len::Fixed(4),
            MONEY | DATETIME | FLT8 | INT8 => Len::Fixed(8),
            GUID | INTN | BITN | FLTN | MONEYN | DATETIMN | CHAR | VARCHAR | BINARY | VARBINARY => {
                r.u8()?;
                Len::Byte
            }
            DECIMAL | NUMERIC | DECIMALN | NUMERICN => {
                r.skip(3)?; // length, precision, scale
                Len::Byte
            }
            DATEN => Len::Byte,
            TIMEN | DATETIME2N | DATETIMEOFFSETN => {
                r.u8()?; // scale
                Len::Byte
            }
            BIGVARBIN | BIGBINARY => {
                if r.u16()? == 0xffff {
                    Len::Plp
                } else {
                    Len::UShort
                }
            }
            BIGVARCHR | BIGCHAR | NVARCHAR | NCHAR => {
                let max = r.u16()?;
                r.skip(5)?; // collation
                if max == 0xffff { Len::Plp } else { Len::UShort }
            }
            TEXT | NTEXT | IMAGE => {
                r.u32()?;
                if t != IMAGE {
                    r.skip(5)?;
                }
                if column {
                    let parts = r.u8()?;
                    for _ in 0..parts {
                        r.us_varchar()?;
                    }
                }
                Len::Text
            }
            SSVARIANT => {
                r.u32()?;
                Len::Long
            }
            XML => {
                if r.u8()? != 0 {
                    r.b_varchar()?;
                    r.b_varchar()?;
                    r.us_varchar()?;
                }
                Len::Plp
            }
            UDT => {
                r.u16()?;
                r.b_varchar()?;
                r.b_varchar()?;
                r.b_varchar()?;
                r.us_varchar()?;
                Len::Plp
            }
            JSON => Len::Plp,
            _ => return None,
        };
        Some(Self { id: t, len })
    }

    /// UCS-2 text (NVARCHAR, NCHAR, NTEXT).
    fn unicode(self) -> bool {
        matches!(self.id, id::NVARCHAR | id::NCHAR | id::NTEXT)
    }

    /// Single-byte text (code page of the collation: read as Latin-1-ish lossy UTF-8).
    fn ansi(self) -> bool {
        matches!(
            self.id,
            id::BIGVARCHR | id::BIGCHAR | id::TEXT | id::CHAR | id::VARCHAR
        )
    }

    fn int(self) -> bool {
        matches!(self.id, id::INT4 | id::INTN)
    }
}

/// What a value holds, as far as the decoder reads it.
#[derive(Default)]
pub(super) struct Value {
    /// Text of a character type, at most `max_text` characters' worth.
    pub(super) text: Option<String>,
    /// A four-byte integer.
    pub(super) int: Option<i32>,
}

/// Reads (or walks past) one value of type `ti`.
pub(super) fn value(r: &mut Rd<'_>, ti: &TypeInfo, max_text: usize) -> Option<Value> {
    let mut v = Value::default();
    let data: Option<Vec<u8>> = match ti.len {
        Len::Fixed(n) => Some(r.take(n)?.to_vec()),
        Len::Byte => {
            let n = usize::from(r.u8()?);
            if n == 0 {
                None
            } else {
                Some(r.take(n)?.to_vec())
            }
        }
        Len::UShort => {
            let n = r.u16()?;
            if n == 0xffff {
                None
            } else {
                Some(r.take(usize::from(n))?.to_vec())
            }
        }
        Len::Long => {
            let n = r.u32()? as usize;
            r.skip(n)?;
            None
        }
        Len::Text => {
            let ptr = usize::from(r.u8()?);
            if ptr == 0 {
                None
            } else {
                r.skip(ptr + 8)?;
                let n = r.u32()? as usize;
                Some(r.take(n)?.to_vec())
            }
        }
        Len::Plp => plp(r, 2 * max_text.max(1))?,
    };
    let Some(data) = data else { return Some(v) };
    if ti.unicode() {
        let keep = data.len().min(2 * max_text) & !1;
        v.text = Some(ucs2(&data[..keep]));
    } else if ti.ansi() {
        v.text = Some(crate::decode::kit::text(&data, max_text));
    } else if ti.int() && data.len() == 4 {
        v.int = Some(i32::from_le_bytes([data[0], data[1], data[2], data[3]]));
    }
    Some(v)
}

/// A PLP value: a total length (all ones: NULL), then chunks until an empty one. At most
/// `keep` bytes are kept; the rest is walked past.
fn plp(r: &mut Rd<'_>, keep: usize) -> Option<Option<Vec<u8>>> {
    let total = r.u64()?;
    if total == u64::MAX {
        return Some(None);
    }
    let mut out = Vec::new();
    loop {
        let n = r.u32()? as usize;
        if n == 0 {
            return Some(Some(out));
        }
        let chunk = r.take(n)?;
        let room = keep.saturating_sub(out.len());
        out.extend_from_slice(&chunk[..n.min(room)]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nvarchar_int_and_plp_values() {
        // NVARCHAR(8) 'ab', INTN(4) 42, NVARCHAR(MAX) 'xyz' in two chunks.
        let mut b = vec![0xe7, 8, 0, 9, 4, 0xd0, 0, 0x34, 4, 0, b'a', 0, b'b', 0];
        b.extend_from_slice(&[0x26, 4, 4, 42, 0, 0, 0]);
        b.extend_from_slice(&[0xe7, 0xff, 0xff, 9, 4, 0xd0, 0, 0x34]);
        b.extend_from_slice(&6u64.to_le_bytes());
        b.extend_from_slice(&[
            2, 0, 0, 0, b'x', 0, 4, 0, 0, 0, b'y', 0, b'z', 0, 0, 0, 0, 0,
        ]);
        let mut r = Rd::new(&b);
        let t = TypeInfo::parse(&mut r, false).unwrap();
        assert_eq!(value(&mut r, &t, 100).unwrap().text.as_deref(), Some("ab"));
        let t = TypeInfo::parse(&mut r, false).unwrap();
        assert_eq!(value(&mut r, &t, 100).unwrap().int, Some(42));
        let t = TypeInfo::parse(&mut r, false).unwrap();
        assert_eq!(t.len, Len::Plp);
        assert_eq!(value(&mut r, &t, 2).unwrap().text.as_deref(), Some("xy"));
        assert_eq!(r.left(), 0);
    }

    #[test]
    fn unknown_and_short_input_stop_the_walk() {
        assert!(TypeInfo::parse(&mut Rd::new(&[0xf3]), false).is_none());
        assert!(TypeInfo::parse(&mut Rd::new(&[0xe7, 8]), false).is_none());
        let t = TypeInfo {
            id: 0xe7,
            len: Len::UShort,
        };
        assert!(value(&mut Rd::new(&[10, 0, 1]), &t, 10).is_none());
    }
}
