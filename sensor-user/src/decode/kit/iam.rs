//! AWS IAM database authentication tokens, recognised by their form in a cleartext password.
//!
//! RDS IAM authentication sends, as the password, a SigV4 *presigned URL* without its scheme:
//! `host:port/?Action=connect&DBUser=…&X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=
//! AKID%2F20261204%2Fus-east-1%2Frds-db%2Faws4_request&X-Amz-Date=20261204T223000Z&
//! X-Amz-Expires=900&X-Amz-SignedHeaders=host&X-Amz-Signature=<64 hex>` (plus
//! `X-Amz-Security-Token` with temporary credentials). PostgreSQL carries it in a
//! PasswordMessage after AuthenticationCleartextPassword, MySQL through `mysql_clear_password`.
//! Aurora DSQL's tokens are the same with `Action=DbConnect` / `DbConnectAdmin` and service
//! `dsql`. References: the RDS User Guide, "Connecting to your DB instance using IAM
//! authentication"; botocore's `generate_db_auth_token`; SigV4 query-string signing.
//!
//! The token is a bearer credential for its lifetime, so only what is not secret is kept: when
//! it was signed, how long it lives, and the region and service of its credential scope. The
//! access key id, the user it names and the signature are read in place and never copied.

/// What a recognised token says about itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IamToken {
    /// Seconds since the epoch of its `X-Amz-Date`.
    pub signed_at_s: i64,
    /// Its `X-Amz-Expires`, seconds.
    pub lifetime_s: u32,
    pub region: String,
    /// `rds-db` or `dsql`.
    pub service: &'static str,
}

impl IamToken {
    pub fn expires_at_s(&self) -> i64 {
        self.signed_at_s + i64::from(self.lifetime_s)
    }
}

/// SigV4 presigned URLs live at most seven days; RDS caps its tokens at 15 minutes.
const MAX_LIFETIME_S: u32 = 7 * 24 * 3600;

/// The token `password` is, if it is one (a trailing NUL, as `mysql_clear_password` sends, is
/// allowed). Anything else, including a URL that looks close, is not.
pub fn recognise(password: &[u8]) -> Option<IamToken> {
    let p = password.strip_suffix(b"\0").unwrap_or(password);
    // Tokens are ASCII; the longest (with a session token) stay under a few KiB.
    if p.len() < 64 || p.len() > 16 << 10 || !p.iter().all(|b| b.is_ascii_graphic()) {
        return None;
    }
    let s = std::str::from_utf8(p).ok()?;
    let (_, query) = s.split_once('?')?;
    let (mut action, mut algorithm, mut credential, mut date) = (None, None, None, None);
    let (mut expires, mut signature, mut signed_headers) = (None, None, None);
    for pair in query.split('&') {
        let (k, v) = pair.split_once('=')?;
        let slot = match k {
            "Action" => &mut action,
            "X-Amz-Algorithm" => &mut algorithm,
            "X-Amz-Credential" => &mut credential,
            "X-Amz-Date" => &mut date,
            "X-Amz-Expires" => &mut expires,
            "X-Amz-Signature" => &mut signature,
            "X-Amz-SignedHeaders" => &mut signed_headers,
            _ => continue,
        };
        if slot.replace(v).is_some() {
            return None;
        }
    }
    let want_service = match action? {
        "connect" => "rds-db",
        "DbConnect" | "DbConnectAdmin" => "dsql",
        _ => return None,
    };
    if algorithm? != "AWS4-HMAC-SHA256" || signed_headers.is_none() {
        return None;
    }
    let sig = signature?;
    if sig.len() != 64 || !sig.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    // Scope: <access key id>/<yyyymmdd>/<region>/<service>/aws4_request, `/` percent-encoded.
    let cred = credential?;
    let mut scope = cred.split("%2F").flat_map(|x| x.split('/'));
    let (_akid, day, region, service, term) = (
        scope.next()?,
        scope.next()?,
        scope.next()?,
        scope.next()?,
        scope.next()?,
    );
    if scope.next().is_some() || term != "aws4_request" || service != want_service {
        return None;
    }
    if region.is_empty()
        || region.len() > 32
        || !region
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return None;
    }
    let date = date?;
    if date.get(..8)? != day {
        return None;
    }
    let signed_at_s = parse_amz_date(date)?;
    let lifetime_s: u32 = expires?.parse().ok()?;
    if lifetime_s == 0 || lifetime_s > MAX_LIFETIME_S {
        return None;
    }
    Some(IamToken {
        signed_at_s,
        lifetime_s,
        region: region.to_string(),
        service: want_service,
    })
}

/// `YYYYMMDDTHHMMSSZ` → seconds since the epoch.
fn parse_amz_date(d: &str) -> Option<i64> {
    let b = d.as_bytes();
    if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let s = d.get(r)?;
        if !s.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        s.parse().ok()
    };
    let (y, mo, da) = (num(0..4)?, num(4..6)?, num(6..8)?);
    let (h, mi, se) = (num(9..11)?, num(11..13)?, num(13..15)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&da) || h > 23 || mi > 59 || se > 60 {
        return None;
    }
    Some(crate::model::epoch_seconds(y, mo, da, h, mi, se))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The form of the token botocore's `generate_db_auth_token` makes (parameter order as it
    /// signs them), with made-up credentials.
    const TOKEN: &str = "orders.abc123.us-east-1.rds.amazonaws.com:5432/?Action=connect&DBUser=app&X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20261204%2Fus-east-1%2Frds-db%2Faws4_request&X-Amz-Date=20261204T223000Z&X-Amz-Expires=900&X-Amz-SignedHeaders=host&X-Amz-Signature=0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn a_presigned_connect_url_is_a_token() {
        let t = recognise(TOKEN.as_bytes()).expect("token");
        // 2026-12-04T22:30:00Z
        assert_eq!(t.signed_at_s, 1_796_423_400);
        assert_eq!(t.expires_at_s(), 1_796_423_400 + 900);
        assert_eq!((t.region.as_str(), t.service), ("us-east-1", "rds-db"));
        let mut nul = TOKEN.as_bytes().to_vec();
        nul.push(0);
        assert_eq!(recognise(&nul), Some(t), "mysql_clear_password's NUL");
    }

    #[test]
    fn session_tokens_and_dsql_tokens_are_tokens() {
        let with_session = TOKEN.replace(
            "&X-Amz-SignedHeaders",
            "&X-Amz-Security-Token=IQoJb3JpZ2luX2VjEJr%2F%2F%2F%2F%2F%2F%2F%2F%2F%2F%2FwEaCXVzLWVhc3QtMSJHMEUCIQ&X-Amz-SignedHeaders",
        );
        assert!(recognise(with_session.as_bytes()).is_some());
        let dsql = TOKEN
            .replace("Action=connect", "Action=DbConnectAdmin")
            .replace("rds-db", "dsql");
        assert_eq!(recognise(dsql.as_bytes()).unwrap().service, "dsql");
    }

    #[test]
    fn lookalikes_are_not_tokens() {
        for (what, s) in [
            ("a password", "Sup3r-Secret-Pw!".to_string()),
            (
                "another service",
                TOKEN.replace("rds-db%2Faws4", "s3%2Faws4"),
            ),
            ("another action", TOKEN.replace("connect", "DescribeDBs")),
            ("short signature", TOKEN[..TOKEN.len() - 4].into()),
            ("date off scope", TOKEN.replace("20261204T", "20261205T")),
            ("bad date", TOKEN.replace("T223000Z", "T253000Z")),
            (
                "no lifetime",
                TOKEN.replace("X-Amz-Expires=900", "X-Amz-Expires=0"),
            ),
            ("two dates", format!("{TOKEN}&X-Amz-Date=20261204T223000Z")),
            ("spaces", TOKEN.replace("host", "ho st")),
            (
                "v2 signature",
                TOKEN.replace("AWS4-HMAC-SHA256", "HmacSHA256"),
            ),
        ] {
            assert_eq!(recognise(s.as_bytes()), None, "{what}");
        }
    }

    #[test]
    fn no_byte_string_panics() {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        for n in 0..3000 {
            let mut b = TOKEN.as_bytes().to_vec();
            for _ in 0..(n % 7) {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                let i = (seed as usize) % b.len();
                b[i] = (seed >> 32) as u8;
            }
            b.truncate(b.len() - (n % 40));
            let _ = recognise(&b);
        }
    }

    #[test]
    fn amz_dates_match_known_times() {
        assert_eq!(parse_amz_date("19700101T000000Z"), Some(0));
        assert_eq!(parse_amz_date("20000301T000000Z"), Some(11_017 * 86_400));
        assert_eq!(parse_amz_date("20240229T000000Z"), Some(1_709_164_800));
    }
}
