//! Statement identity: the verb, and a fingerprint in which every literal and parameter is
//! `?`, so `WHERE id = 5` and `WHERE id = 7` are one query (as pt-query-digest and
//! pg_stat_statements do). A fingerprint never contains a literal's content: that is what
//! makes it safe to output with redaction on.
//!
//! Rules: comments dropped; whitespace collapsed; unquoted text lowercased; string literals
//! ('…' with '' and, in E'…' or MySQL, backslash escapes; PostgreSQL $tag$…$tag$; MySQL "…"),
//! numbers (integer, decimal, exponent, 0x hex, X'…'/B'…'), and placeholders ($1, ?, :name)
//! become `?` (T-SQL: `@name` too); a parenthesised list of only `?` becomes `(?+)`; repeated `(?+)` rows after
//! VALUES become one.

/// Which quoting rules apply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    /// "…" is an identifier; $tag$ strings; E'…' escapes.
    Postgres,
    /// "…" is a string (unless ANSI_QUOTES); `…` is an identifier; backslash escapes.
    MySql,
    /// SQL Server's T-SQL: […] and "…" are identifiers (QUOTED_IDENTIFIER is on for every
    /// modern driver); N'…' strings without backslash escapes; `@name` parameters and
    /// variables are placeholders (`@@name` system functions are kept); block comments nest.
    TSql,
}

/// Results derived from raw SQL text (fingerprints), remembered by a keyed 128-bit hash of
/// that text, so a statement sent again (the common case: applications repeat their queries)
/// is not fingerprinted again. The text itself is never kept, only what was derived from it
/// (which holds no literal): with redaction on, nothing secret stays in memory. Bounded: at
/// `max_entries` or `max_bytes` (as `weight` counts them) it starts over empty.
pub struct SqlCache<V> {
    /// Two independently seeded hashers: together a keyed 128-bit hash of the text.
    k0: foldhash::quality::RandomState,
    k1: foldhash::quality::RandomState,
    map: foldhash::HashMap<u128, V>,
    bytes: usize,
    max_entries: usize,
    max_bytes: usize,
}

impl<V: Clone> SqlCache<V> {
    pub fn new(max_entries: usize, max_bytes: usize) -> Self {
        Self {
            k0: Default::default(),
            k1: Default::default(),
            map: Default::default(),
            bytes: 0,
            max_entries: max_entries.max(1),
            max_bytes,
        }
    }

    /// The keyed 128-bit hash of `tag` (what else the result depends on) and `sql`.
    fn key(&self, tag: u8, sql: &[u8]) -> u128 {
        use std::hash::{BuildHasher, Hasher};
        let h = |s: &foldhash::quality::RandomState| {
            let mut h = s.build_hasher();
            h.write_u8(tag);
            h.write_usize(sql.len());
            h.write(sql);
            h.finish()
        };
        (u128::from(h(&self.k0)) << 64) | u128::from(h(&self.k1))
    }

    /// The value for (`tag`, `sql`): remembered, or made by `make` and remembered.
    pub fn get_or_insert_with(
        &mut self,
        tag: u8,
        sql: &[u8],
        weight: impl Fn(&V) -> usize,
        make: impl FnOnce() -> V,
    ) -> V {
        let key = self.key(tag, sql);
        if let Some(v) = self.map.get(&key) {
            return v.clone();
        }
        let v = make();
        let w = weight(&v) + 32;
        if self.map.len() >= self.max_entries || self.bytes + w > self.max_bytes {
            self.map.clear();
            self.bytes = 0;
        }
        if w <= self.max_bytes {
            self.bytes += w;
            self.map.insert(key, v.clone());
        }
        v
    }
}

/// Entries and bytes each thread's cache of [`fingerprint_cached`] keeps at most.
pub const CACHE_ENTRIES: usize = 4096;
pub const CACHE_BYTES: usize = 4 << 20;

thread_local! {
    static FINGERPRINTS: std::cell::RefCell<SqlCache<(String, String)>> =
        std::cell::RefCell::new(SqlCache::new(CACHE_ENTRIES, CACHE_BYTES));
}

/// [`fingerprint`], remembered per thread by a keyed hash of `sql` (see [`SqlCache`]).
pub fn fingerprint_cached(sql: &str, dialect: Dialect) -> (String, String) {
    FINGERPRINTS.with(|c| {
        c.borrow_mut().get_or_insert_with(
            dialect as u8,
            sql.as_bytes(),
            |(v, f)| v.len() + f.len(),
            || fingerprint(sql, dialect),
        )
    })
}

/// Statement verb (upper case) and fingerprint.
pub fn fingerprint(sql: &str, dialect: Dialect) -> (String, String) {
    let fp = normalize(sql, dialect);
    (verb_of(&fp), fp)
}

/// The statement's verb: its first keyword, or for `WITH …` the first top-level DML keyword
/// after the common table expressions.
pub fn verb_of(fingerprint: &str) -> String {
    let mut depth = 0i32;
    let mut first: Option<&str> = None;
    // Walk the text once, tracking paren depth, collecting bare words.
    let bytes = fingerprint.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        if c == b'(' {
            depth += 1;
            i += 1;
        } else if c == b')' {
            depth -= 1;
            i += 1;
        } else if c.is_ascii_alphabetic() || c == b'_' {
            let start = i;
            while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
                i += 1;
            }
            let word = &fingerprint[start..i];
            match first {
                None => {
                    if word != "with" {
                        return word.to_ascii_uppercase();
                    }
                    first = Some(word);
                }
                Some(_) if depth == 0 => {
                    if matches!(
                        word,
                        "select" | "insert" | "update" | "delete" | "merge" | "values" | "table"
                    ) {
                        return word.to_ascii_uppercase();
                    }
                }
                Some(_) => {}
            }
        } else if c == b'"' || c == b'`' || c == b'[' {
            // quoted identifier: skip
            let q = if c == b'[' { b']' } else { c };
            i += 1;
            while i < bytes.len() && bytes[i] != q {
                i += 1;
            }
            i += 1;
        } else {
            i += 1;
        }
    }
    match first {
        Some(w) => w.to_ascii_uppercase(),
        None => String::new(),
    }
}

fn normalize(sql: &str, dialect: Dialect) -> String {
    let b = sql.as_bytes();
    let mut out = String::with_capacity(sql.len().min(4096));
    let mut i = 0;
    let mut pending_space = false;
    let push_tok = |out: &mut String, pending: &mut bool, s: &str| {
        if *pending && !out.is_empty() {
            out.push(' ');
        }
        *pending = false;
        out.push_str(s);
    };
    while i < b.len() {
        let c = b[i];
        // whitespace
        if c.is_ascii_whitespace() {
            pending_space = true;
            i += 1;
            continue;
        }
        // comments
        if c == b'-' && b.get(i + 1) == Some(&b'-') || (dialect == Dialect::MySql && c == b'#') {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
            pending_space = true;
            continue;
        }
        if c == b'/' && b.get(i + 1) == Some(&b'*') {
            // Postgres nests block comments; MySQL does not. Nesting is harmless for MySQL text.
            let mut depth = 0;
            while i < b.len() {
                if b[i] == b'/' && b.get(i + 1) == Some(&b'*') {
                    depth += 1;
                    i += 2;
                } else if b[i] == b'*' && b.get(i + 1) == Some(&b'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 || dialect == Dialect::MySql {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
            pending_space = true;
            continue;
        }
        // string literals, with optional prefixes E'', B'', X'', N'', U&''
        let prefix_len = string_prefix(b, i);
        if let Some(pl) = prefix_len {
            let q = i + pl;
            let backslash = dialect == Dialect::MySql
                || (dialect == Dialect::Postgres && pl > 0 && (b[i] | 0x20) == b'e');
            i = skip_quoted(b, q, b'\'', backslash);
            push_tok(&mut out, &mut pending_space, "?");
            continue;
        }
        if c == b'"' && dialect == Dialect::MySql {
            i = skip_quoted(b, i, b'"', true);
            push_tok(&mut out, &mut pending_space, "?");
            continue;
        }
        // Quoted identifiers ("…" in PostgreSQL, `…` in MySQL) are kept, but only when
        // closed: an unterminated one would carry the rest of the text, literals included.
        if (c == b'"' && dialect != Dialect::MySql)
            || (c == b'`' && dialect == Dialect::MySql)
            || (c == b'[' && dialect == Dialect::TSql)
        {
            let close = if c == b'[' { b']' } else { c };
            // `skip_quoted` starts after the opening character: `]]` escapes `]` as `""` does `"`.
            let end = skip_quoted(b, i, close, false);
            let closed = end <= b.len() && end >= i + 2 && b[end - 1] == close;
            push_tok(
                &mut out,
                &mut pending_space,
                if closed { &sql[i..end] } else { "?" },
            );
            i = end.min(b.len());
            continue;
        }
        // T-SQL parameters and variables (`@p1`, `@name`); `@@ROWCOUNT` is a function.
        if c == b'@' && dialect == Dialect::TSql {
            let start = i;
            let system = b.get(i + 1) == Some(&b'@');
            i += 1 + usize::from(system);
            while i < b.len()
                && (b[i].is_ascii_alphanumeric()
                    || matches!(b[i], b'_' | b'@' | b'#' | b'$')
                    || b[i] >= 0x80)
            {
                i += 1;
            }
            let lower = sql[start..i].to_lowercase();
            push_tok(
                &mut out,
                &mut pending_space,
                if system { &lower } else { "?" },
            );
            continue;
        }
        // dollar quoting / positional parameters
        if c == b'$' {
            if b.get(i + 1).is_some_and(u8::is_ascii_digit) {
                i += 1;
                while i < b.len() && b[i].is_ascii_digit() {
                    i += 1;
                }
                push_tok(&mut out, &mut pending_space, "?");
                continue;
            }
            if dialect == Dialect::Postgres
                && let Some(end) = dollar_string_end(b, i)
            {
                i = end;
                push_tok(&mut out, &mut pending_space, "?");
                continue;
            }
        }
        // numbers (not part of an identifier: identifiers are consumed whole below)
        if c.is_ascii_digit() || (c == b'.' && b.get(i + 1).is_some_and(u8::is_ascii_digit)) {
            i = skip_number(b, i);
            // a sign directly before a number in an operand position is part of the literal
            if (out.ends_with(" -") || out.ends_with("(-") || out.ends_with("=-") || out == "-")
                && !pending_space
            {
                out.pop();
            }
            push_tok(&mut out, &mut pending_space, "?");
            continue;
        }
        if c == b'?' {
            i += 1;
            push_tok(&mut out, &mut pending_space, "?");
            continue;
        }
        // identifiers and keywords
        if c.is_ascii_alphabetic() || c == b'_' || c >= 0x80 {
            let start = i;
            while i < b.len()
                && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] == b'$' || b[i] >= 0x80)
            {
                i += 1;
            }
            let word = &sql[start..i];
            if word.eq_ignore_ascii_case("true") || word.eq_ignore_ascii_case("false") {
                push_tok(&mut out, &mut pending_space, "?");
            } else {
                let lower = word.to_lowercase();
                push_tok(&mut out, &mut pending_space, &lower);
            }
            continue;
        }
        // named parameters :name (but not the :: cast)
        if c == b':' && b.get(i + 1).is_some_and(|n| n.is_ascii_alphabetic()) && !out.ends_with(':')
        {
            i += 1;
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                i += 1;
            }
            push_tok(&mut out, &mut pending_space, "?");
            continue;
        }
        // punctuation: no space before , ) and after (
        let s = &sql[i..i + utf8_len(c)];
        if matches!(c, b',' | b')' | b';') {
            pending_space = false;
        }
        push_tok(&mut out, &mut pending_space, s);
        if c == b'(' || c == b',' {
            pending_space = c == b',';
        }
        i += s.len();
    }
    while out.ends_with(';') || out.ends_with(' ') {
        out.pop();
    }
    collapse_lists(&out)
}

fn utf8_len(first: u8) -> usize {
    match first {
        0x00..=0x7f => 1,
        0xc0..=0xdf => 2,
        0xe0..=0xef => 3,
        0xf0..=0xf7 => 4,
        _ => 1,
    }
}

/// If a string literal starts at `i` (possibly after a one-letter prefix or U&), the prefix
/// length.
fn string_prefix(b: &[u8], i: usize) -> Option<usize> {
    if b[i] == b'\'' {
        return Some(0);
    }
    let prev_ident = i > 0 && (b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_');
    if prev_ident {
        return None;
    }
    match (b[i] | 0x20, b.get(i + 1), b.get(i + 2)) {
        (b'e' | b'b' | b'x' | b'n', Some(b'\''), _) => Some(1),
        (b'u', Some(b'&'), Some(b'\'')) => Some(2),
        _ => None,
    }
}

/// Index after a quoted run starting at `i` (which holds the quote). Doubled quotes escape;
/// with `backslash`, so does `\`. An unterminated run ends at the end of input.
fn skip_quoted(b: &[u8], i: usize, q: u8, backslash: bool) -> usize {
    let mut j = i + 1;
    while j < b.len() {
        if backslash && b[j] == b'\\' {
            j += 2;
            continue;
        }
        if b[j] == q {
            if b.get(j + 1) == Some(&q) {
                j += 2;
                continue;
            }
            return j + 1;
        }
        j += 1;
    }
    b.len()
}

/// End of a PostgreSQL dollar-quoted string starting at `i`, if it is one.
fn dollar_string_end(b: &[u8], i: usize) -> Option<usize> {
    let mut j = i + 1;
    while j < b.len() && (b[j].is_ascii_alphanumeric() || b[j] == b'_') {
        j += 1;
    }
    if b.get(j) != Some(&b'$') {
        return None;
    }
    let tag = &b[i..=j];
    let body = j + 1;
    let mut k = body;
    while k + tag.len() <= b.len() {
        if &b[k..k + tag.len()] == tag {
            return Some(k + tag.len());
        }
        k += 1;
    }
    Some(b.len())
}

fn skip_number(b: &[u8], i: usize) -> usize {
    let mut j = i;
    if b[j] == b'0' && matches!(b.get(j + 1), Some(b'x' | b'X')) {
        j += 2;
        while j < b.len() && b[j].is_ascii_hexdigit() {
            j += 1;
        }
        return j;
    }
    while j < b.len() && (b[j].is_ascii_digit() || b[j] == b'.' || b[j] == b'_') {
        j += 1;
    }
    if j < b.len() && (b[j] | 0x20) == b'e' {
        let k = j + 1 + usize::from(matches!(b.get(j + 1), Some(b'+' | b'-')));
        if b.get(k).is_some_and(u8::is_ascii_digit) {
            j = k;
            while j < b.len() && b[j].is_ascii_digit() {
                j += 1;
            }
        }
    }
    // 5e is not a number followed by an identifier in SQL, but `1abc` is an error anyway:
    // swallow trailing identifier characters so no literal text survives.
    while j < b.len() && (b[j].is_ascii_alphanumeric() || b[j] == b'_') {
        j += 1;
    }
    j
}

/// The word that ends `s` (trailing spaces ignored).
fn last_word(s: &str) -> &str {
    let t = s.trim_end();
    let start = t
        .char_indices()
        .rev()
        .find(|(_, c)| !(c.is_alphanumeric() || *c == '_'))
        .map_or(0, |(i, c)| i + c.len_utf8());
    &t[start..]
}

/// `(?, ?, ?)` → `(?+)`; `values (?+), (?+)` → `values (?+)`.
fn collapse_lists(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'(' {
            // a list of only ?, separated by ", "
            let mut j = i + 1;
            let mut n = 0;
            loop {
                if b.get(j) == Some(&b'?') {
                    n += 1;
                    j += 1;
                    if b.get(j) == Some(&b',') {
                        j += 1;
                        if b.get(j) == Some(&b' ') {
                            j += 1;
                        }
                        continue;
                    }
                    // Only value lists collapse: `IN (…)`, `VALUES (…)` and the rows that
                    // follow; a function's arguments (`pg_sleep(?)`) keep their arity.
                    let repeated_row = out.ends_with("(?+), ") || out.ends_with("(?+),");
                    let list = repeated_row || matches!(last_word(&out), "in" | "values");
                    if b.get(j) == Some(&b')') && n > 0 && list {
                        if !repeated_row {
                            out.push_str("(?+)");
                        } else {
                            // repeated row: drop the separator we already wrote
                            while out.ends_with(' ') || out.ends_with(',') {
                                out.pop();
                            }
                        }
                        i = j + 1;
                        break;
                    }
                }
                out.push('(');
                i += 1;
                break;
            }
            continue;
        }
        let ch = s[i..].chars().next().unwrap_or(' ');
        out.push(ch);
        i += ch.len_utf8();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cached_fingerprints_are_fingerprints_and_the_cache_is_bounded() {
        for sql in [
            "SELECT * FROM t WHERE secret = 'hunter2' AND n = 42",
            "select * from t where secret = \"hunter2\"",
            "",
        ] {
            for d in [Dialect::Postgres, Dialect::MySql, Dialect::TSql] {
                for _ in 0..2 {
                    assert_eq!(fingerprint_cached(sql, d), fingerprint(sql, d));
                }
            }
        }
        // The tag is part of the key.
        let mut c = SqlCache::new(8, 1 << 20);
        assert_eq!(
            c.get_or_insert_with(0, b"x", String::len, || "a".into()),
            "a"
        );
        assert_eq!(
            c.get_or_insert_with(1, b"x", String::len, || "b".into()),
            "b"
        );
        assert_eq!(
            c.get_or_insert_with(0, b"x", String::len, || "c".into()),
            "a"
        );
        // Bounded by entries and by bytes.
        for i in 0..100 {
            let sql = format!("select {i}");
            c.get_or_insert_with(0, sql.as_bytes(), String::len, || sql.clone());
            assert!(c.map.len() <= 8);
        }
        let mut c = SqlCache::new(1000, 100);
        for i in 0..100 {
            let v = "x".repeat(i);
            c.get_or_insert_with(0, v.as_bytes(), String::len, || v.clone());
            assert!(c.bytes <= 100);
        }
    }

    fn pg(s: &str) -> String {
        fingerprint(s, Dialect::Postgres).1
    }
    fn my(s: &str) -> String {
        fingerprint(s, Dialect::MySql).1
    }

    #[test]
    fn literals_become_placeholders() {
        assert_eq!(
            pg("SELECT * FROM t WHERE id = 5"),
            "select * from t where id = ?"
        );
        assert_eq!(
            pg("SELECT * FROM t WHERE id = 7"),
            pg("select *  from t\nwhere id=7").replace("id=?", "id = ?")
        );
        assert_eq!(
            pg("SELECT 'canary-literal-4242', 3.5e-3, x'ff', E'a\\'b'"),
            "select ?, ?, ?, ?"
        );
        assert_eq!(pg("select $$body 'x'$$, $f$y$f$"), "select ?, ?");
        assert_eq!(
            pg("select * from t where a = $1 and b = $12"),
            "select * from t where a = ? and b = ?"
        );
        assert_eq!(
            my("SELECT \"canary\", 'x\\'y' FROM `T`"),
            "select ?, ? from `T`"
        );
        assert_eq!(pg("SELECT \"Mixed\" FROM t"), "select \"Mixed\" from t");
        assert_eq!(pg("select -5, a-1 from t"), "select ?, a-? from t");
    }

    #[test]
    fn lists_and_rows_collapse() {
        assert_eq!(
            pg("select * from t where id in (1, 2, 3)"),
            "select * from t where id in (?+)"
        );
        assert_eq!(
            pg("select * from t where id in (4)"),
            "select * from t where id in (?+)"
        );
        assert_eq!(
            my("INSERT INTO t (a,b) VALUES (1,'x'),(2,'y'),(3,'z')"),
            "insert into t (a, b) values (?+)"
        );
        assert_eq!(pg("select count(*) from t"), "select count(*) from t");
        assert_eq!(
            pg("select pg_sleep(1), f(1, 'a')"),
            "select pg_sleep(?), f(?, ?)"
        );
        assert_eq!(
            pg("select * from t where a not in ($1,$2)"),
            "select * from t where a not in (?+)"
        );
    }

    #[test]
    fn tsql_dialect() {
        let ts = |s: &str| fingerprint(s, Dialect::TSql);
        assert_eq!(
            ts("SELECT [Order Id], \"x\" FROM [dbo].[t]]x] WHERE n = N'caf\u{e9}' AND b = 0x0aFF"),
            (
                "SELECT".into(),
                "select [Order Id], \"x\" from [dbo].[t]]x] where n = ? and b = ?".into()
            )
        );
        assert_eq!(
            ts("exec sp_x @p1 = 5, @name=@P2 -- c\n; select @@ROWCOUNT").1,
            "exec sp_x ? = ?, ?=?; select @@rowcount"
        );
        // No backslash escapes: the literal ends at the quote after the backslash.
        assert_eq!(ts("select 'a\\' , 'secret'").1, "select ?, ?");
        // An unterminated bracket would carry the rest (literals included): it is a `?`.
        assert_eq!(ts("select [x from t where a = 'secret'").1, "select ?");
        assert_eq!(ts("/* a /* nested */ still */ select 1").1, "select ?");
    }

    #[test]
    fn comments_dropped() {
        assert_eq!(pg("/* app:1 */ SELECT 1 -- trailing"), "select ?");
        assert_eq!(my("# hi\nSELECT 1"), "select ?");
    }

    #[test]
    fn verbs() {
        assert_eq!(fingerprint("  select 1", Dialect::Postgres).0, "SELECT");
        assert_eq!(
            fingerprint("WITH x AS (SELECT 1) DELETE FROM t", Dialect::Postgres).0,
            "DELETE"
        );
        assert_eq!(
            fingerprint("with x as (select 1) select * from x", Dialect::Postgres).0,
            "SELECT"
        );
        assert_eq!(
            fingerprint("CREATE TABLE t (a int)", Dialect::Postgres).0,
            "CREATE"
        );
        assert_eq!(fingerprint("(select 1)", Dialect::Postgres).0, "SELECT");
        assert_eq!(fingerprint("", Dialect::Postgres).0, "");
    }

    #[test]
    fn unterminated_and_hostile_input_never_leaks_or_panics() {
        assert_eq!(pg("select 'secret"), "select ?");
        // An unterminated quoted identifier must not carry what follows.
        assert_eq!(pg("select \"abc 'canary-literal-4242'"), "select ?");
        assert_eq!(my("select `abc 'canary-literal-4242'"), "select ?");
        // A backtick is no quote in PostgreSQL: the literal after it is still replaced.
        assert!(!pg("s`LECT 'canary-literal-4242'").contains("canary"));
        assert_eq!(pg("select $a$secret"), "select ?");
        for s in [
            "'", "$", "$1", "E'", "/*", "--", "\"", "`", "(", ")", "((((", "U&'x", "0x", "1e",
            "é'ö", "::a", ":a",
        ] {
            let _ = fingerprint(s, Dialect::Postgres);
            let _ = fingerprint(s, Dialect::MySql);
            let _ = fingerprint(s, Dialect::TSql);
        }
    }
}
