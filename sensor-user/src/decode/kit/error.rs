//! A server's error reply as records carry it: the code (SQLSTATE, errno, SQL Server's error
//! number), the code's name where the server has names for its codes, and the server's
//! message, whose quoted spans and numbers are redacted as query literals are.

use super::errnames;

/// Messages are cut here (a syntax error repeats the statement's text).
const MESSAGE_MAX: usize = 1024;

/// What the server answered an attempt or a request with.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ErrorReply {
    pub code: String,
    pub name: Option<&'static str>,
    /// As sent; redacted when a record is made (see [`ErrorReply::message_for`]).
    pub message: Option<String>,
}

impl ErrorReply {
    /// A reply known only by its code (or by what the decoder could tell: `unknown`,
    /// `cancelled`).
    pub fn code(code: impl Into<String>) -> Self {
        Self {
            code: code.into(),
            name: None,
            message: None,
        }
    }

    /// An ErrorResponse: SQLSTATE, its condition name, the primary message.
    pub fn postgres(sqlstate: String, message: Option<String>) -> Self {
        Self {
            name: errnames::postgres(&sqlstate),
            code: sqlstate,
            message: message.map(|m| cut(&m)),
        }
    }

    /// An ERR packet: the error number and its `ER_` symbol (numbers below 1700, which MySQL
    /// and MariaDB share; above, MariaDB's symbols only when the server said it is MariaDB).
    pub fn mysql(errno: u16, message: Option<String>, mariadb: bool) -> Self {
        Self {
            code: errno.to_string(),
            name: (errno < 1700 || mariadb)
                .then(|| errnames::mysql(errno))
                .flatten(),
            message: message.map(|m| cut(&m)),
        }
    }

    /// An ERROR token: SQL Server's numbers have no symbolic names.
    pub fn numbered(number: i64, message: Option<String>) -> Self {
        Self {
            code: number.to_string(),
            name: None,
            message: message.map(|m| cut(&m)),
        }
    }

    /// The message a record carries: as sent without redaction, else with every quoted span
    /// and number replaced by `?` (values, and the statement a syntax error quotes, hide
    /// there; so do quoted identifiers, which `--no-redact` shows).
    pub fn message_for(&self, redact: bool) -> Option<String> {
        let m = self.message.as_deref()?;
        Some(if redact {
            redact_message(m)
        } else {
            m.to_string()
        })
    }
}

fn cut(m: &str) -> String {
    if m.len() <= MESSAGE_MAX {
        return m.to_string();
    }
    let mut end = MESSAGE_MAX;
    while !m.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &m[..end])
}

/// Quoted spans (`'…'`, `"…"`, `` `…` ``, a doubled quote inside staying inside) and numbers
/// become `?`. An unclosed quote hides the rest. MySQL's syntax error quotes the statement's
/// rest without escaping its quotes (`near 'x = 'a'' at line 1`): that span is hidden whole.
pub fn redact_message(m: &str) -> String {
    if let Some(at) = m.find(" near '")
        && let Some(end) = m.rfind("' at line ")
        && end > at
    {
        let tail = &m[end + "' at line ".len()..];
        if tail.bytes().all(|c| c.is_ascii_digit()) {
            return format!("{} near ? at line ?", redact_quoted(&m[..at]));
        }
    }
    redact_quoted(m)
}

fn redact_quoted(m: &str) -> String {
    let b = m.as_bytes();
    let mut out = String::with_capacity(m.len());
    let mut i = 0;
    let mut last = 0;
    while i < b.len() {
        let c = b[i];
        if matches!(c, b'\'' | b'"' | b'`') {
            out.push_str(&m[last..i]);
            let mut j = i + 1;
            loop {
                match b.get(j) {
                    None => break,
                    Some(&q) if q == c && b.get(j + 1) == Some(&c) => j += 2,
                    Some(&q) if q == c => {
                        j += 1;
                        break;
                    }
                    Some(_) => j += 1,
                }
            }
            out.push('?');
            i = j;
            last = i;
        } else if c.is_ascii_digit()
            && (i == 0 || !(b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_'))
        {
            out.push_str(&m[last..i]);
            let mut j = i;
            while j < b.len() && (b[j].is_ascii_alphanumeric() || b[j] == b'.') {
                j += 1;
            }
            out.push('?');
            i = j;
            last = i;
        } else {
            i += 1;
        }
    }
    out.push_str(&m[last..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_spans_and_numbers_are_hidden() {
        for (m, want) in [
            (
                "invalid input syntax for type integer: \"hunter2\"",
                "invalid input syntax for type integer: ?",
            ),
            (
                "You have an error in your SQL syntax; check the manual that corresponds to your MariaDB server version for the right syntax to use near 'SELEC 'secret' 1' at line 1",
                "You have an error in your SQL syntax; check the manual that corresponds to your MariaDB server version for the right syntax to use near ? at line ?",
            ),
            (
                "Duplicate entry 'it''s 42' for key 'PRIMARY'",
                "Duplicate entry ? for key ?",
            ),
            (
                "value too long for type character varying(10)",
                "value too long for type character varying(?)",
            ),
            (
                "relation \"t1\" does not exist",
                "relation ? does not exist",
            ),
            ("unclosed 'secret", "unclosed ?"),
            ("column x1 of 3.5e2 rows", "column x1 of ? rows"),
            ("ünïcode 'ß' ok", "ünïcode ? ok"),
        ] {
            assert_eq!(redact_message(m), want, "{m}");
        }
    }

    #[test]
    fn names_where_the_server_has_them() {
        let e = ErrorReply::postgres("42601".into(), None);
        assert_eq!(e.name, Some("syntax_error"));
        assert_eq!(
            ErrorReply::mysql(1045, None, false).name,
            Some("ER_ACCESS_DENIED_ERROR")
        );
        assert_eq!(
            ErrorReply::mysql(4025, None, false).name,
            None,
            "MariaDB's own range"
        );
        assert!(ErrorReply::mysql(4025, None, true).name.is_some());
        assert_eq!(ErrorReply::numbered(18456, None).name, None);
    }

    #[test]
    fn long_messages_are_cut_on_a_character() {
        let m = "é".repeat(800);
        let e = ErrorReply::postgres("XX000".into(), Some(m));
        let got = e.message_for(false).unwrap();
        assert!(got.len() <= MESSAGE_MAX + '…'.len_utf8() && got.ends_with('…'));
    }
}
