//! `DATABASE_URL` in either of libpq's forms, a URL
//! (`postgres://u:p@h:5432/db?sslmode=verify-full`) or key/value words
//! (`host=h user=u password='p w' sslmode=require`): the TLS keys libpq has
//! and tokio-postgres does not (`sslmode`'s `verify-ca` / `verify-full`,
//! `sslrootcert`) are taken out here, and passwords are redacted for logs.
//! Pure: no I/O, no TLS, no SQL.

use std::fmt;
use std::str::FromStr;

/// libpq's `sslmode`, with libpq's meaning (docs/operations.md, "TLS to
/// PostgreSQL"). `allow` is not offered: it tries plaintext first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    /// Plaintext only.
    Disable,
    /// TLS when the server offers it, plaintext otherwise; the certificate is
    /// not checked. libpq's default, and so the default here.
    Prefer,
    /// TLS or no connection; the certificate is checked only when
    /// `sslrootcert` is given (as libpq does with a root file).
    Require,
    /// TLS, and the certificate chains to `sslrootcert` (any host name).
    VerifyCa,
    /// TLS, the certificate chains to `sslrootcert` and names the host.
    VerifyFull,
}

impl SslMode {
    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }

    /// Whether a connection without TLS is refused.
    pub fn requires_tls(self) -> bool {
        matches!(
            self,
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull
        )
    }
}

impl fmt::Display for SslMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SslMode {
    type Err = ConnInfoError;

    fn from_str(s: &str) -> Result<Self, ConnInfoError> {
        match s {
            "disable" => Ok(SslMode::Disable),
            "prefer" => Ok(SslMode::Prefer),
            "require" => Ok(SslMode::Require),
            "verify-ca" => Ok(SslMode::VerifyCa),
            "verify-full" => Ok(SslMode::VerifyFull),
            other => Err(ConnInfoError::SslMode(other.to_string())),
        }
    }
}

/// Where the certificates a server's chain must end in come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RootCert {
    /// The operating system's trust store (no `sslrootcert`, or
    /// `sslrootcert=system`).
    System,
    /// A PEM bundle (`sslrootcert=/path`, e.g. Amazon RDS's global bundle).
    File(String),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnInfoError {
    #[error("DATABASE_URL: sslmode={0:?} is not one of disable, prefer, require, verify-ca, verify-full")]
    SslMode(String),
    #[error("DATABASE_URL: {0}")]
    Syntax(&'static str),
    #[error("DATABASE_URL: sslrootcert is empty")]
    EmptyRootCert,
    #[error("DATABASE_URL: {0} is given twice")]
    Repeated(&'static str),
}

/// A connection string with its TLS keys taken out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnInfo {
    /// What tokio-postgres parses: the string without `sslmode` and
    /// `sslrootcert` (`sslmode` is set on its `Config` from [`Self::sslmode`]).
    pub rest: String,
    pub sslmode: SslMode,
    /// `None`: not given (the system store where verification needs one).
    pub sslrootcert: Option<RootCert>,
}

impl ConnInfo {
    pub fn root_cert(&self) -> RootCert {
        self.sslrootcert.clone().unwrap_or(RootCert::System)
    }
}

fn is_url(s: &str) -> bool {
    s.starts_with("postgres://") || s.starts_with("postgresql://")
}

/// Splits `s` into its TLS settings and the rest.
pub fn parse(s: &str) -> Result<ConnInfo, ConnInfoError> {
    let (rest, pairs) = if is_url(s) {
        take_url_params(s)?
    } else {
        take_words(s)?
    };
    let mut sslmode = None;
    let mut sslrootcert = None;
    for (key, value) in pairs {
        match key {
            TlsKey::SslMode => {
                if sslmode.replace(value.parse::<SslMode>()?).is_some() {
                    return Err(ConnInfoError::Repeated("sslmode"));
                }
            }
            TlsKey::SslRootCert => {
                let root = match value.as_str() {
                    "" => return Err(ConnInfoError::EmptyRootCert),
                    "system" => RootCert::System,
                    _ => RootCert::File(value),
                };
                if sslrootcert.replace(root).is_some() {
                    return Err(ConnInfoError::Repeated("sslrootcert"));
                }
            }
        }
    }
    Ok(ConnInfo {
        rest,
        sslmode: sslmode.unwrap_or(SslMode::Prefer),
        sslrootcert,
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TlsKey {
    SslMode,
    SslRootCert,
}

fn tls_key(key: &str) -> Option<TlsKey> {
    match key {
        "sslmode" => Some(TlsKey::SslMode),
        "sslrootcert" => Some(TlsKey::SslRootCert),
        _ => None,
    }
}

type Taken = (String, Vec<(TlsKey, String)>);

fn decode(s: &str) -> Result<String, ConnInfoError> {
    percent_encoding::percent_decode_str(s)
        .decode_utf8()
        .map(|c| c.into_owned())
        .map_err(|_| ConnInfoError::Syntax("a query parameter is not UTF-8 once decoded"))
}

fn take_url_params(s: &str) -> Result<Taken, ConnInfoError> {
    let Some((base, query)) = s.split_once('?') else {
        return Ok((s.to_string(), Vec::new()));
    };
    let mut kept = Vec::new();
    let mut taken = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match tls_key(&decode(key)?) {
            Some(k) => taken.push((k, decode(value)?)),
            None => kept.push(pair),
        }
    }
    let rest = if kept.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    Ok((rest, taken))
}

/// One `key = value` of the key/value form, with where it stands in the
/// string (to cut it out) and its unquoted value.
struct Word {
    key: String,
    value: String,
    start: usize,
    end: usize,
}

/// libpq's key/value syntax: `key = value` separated by white space, a value
/// single-quoted or bare, `\` escaping the next character in both.
fn words(s: &str) -> Result<Vec<Word>, ConnInfoError> {
    let bytes: Vec<(usize, char)> = s.char_indices().collect();
    let mut i = 0;
    let mut out = Vec::new();
    let at = |i: usize| bytes.get(i).map(|&(_, c)| c);
    let pos = |i: usize| bytes.get(i).map_or(s.len(), |&(p, _)| p);
    loop {
        while at(i).is_some_and(char::is_whitespace) {
            i += 1;
        }
        let Some(_) = at(i) else { break };
        let start = pos(i);
        let mut key = String::new();
        while let Some(c) = at(i).filter(|c| *c != '=' && !c.is_whitespace()) {
            key.push(c);
            i += 1;
        }
        while at(i).is_some_and(char::is_whitespace) {
            i += 1;
        }
        if at(i) != Some('=') {
            return Err(ConnInfoError::Syntax(
                "a word of the key/value form has no '=' (or the URL does not start with postgres://)",
            ));
        }
        i += 1;
        while at(i).is_some_and(char::is_whitespace) {
            i += 1;
        }
        let mut value = String::new();
        if at(i) == Some('\'') {
            i += 1;
            loop {
                match at(i) {
                    None => return Err(ConnInfoError::Syntax("a quoted value is not closed")),
                    Some('\'') => {
                        i += 1;
                        break;
                    }
                    Some('\\') => {
                        let Some(c) = at(i + 1) else {
                            return Err(ConnInfoError::Syntax("a quoted value is not closed"));
                        };
                        value.push(c);
                        i += 2;
                    }
                    Some(c) => {
                        value.push(c);
                        i += 1;
                    }
                }
            }
        } else {
            while let Some(c) = at(i).filter(|c| !c.is_whitespace()) {
                if c == '\\' {
                    if let Some(n) = at(i + 1) {
                        value.push(n);
                        i += 2;
                        continue;
                    }
                }
                value.push(c);
                i += 1;
            }
        }
        if key.is_empty() {
            return Err(ConnInfoError::Syntax(
                "a word of the key/value form has no key",
            ));
        }
        out.push(Word {
            key,
            value,
            start,
            end: pos(i),
        });
    }
    Ok(out)
}

fn take_words(s: &str) -> Result<Taken, ConnInfoError> {
    let mut rest = String::with_capacity(s.len());
    let mut taken = Vec::new();
    for w in words(s)? {
        match tls_key(&w.key) {
            Some(k) => taken.push((k, w.value)),
            None => {
                if !rest.is_empty() {
                    rest.push(' ');
                }
                rest.push_str(&s[w.start..w.end]);
            }
        }
    }
    Ok((rest, taken))
}

/// The connection string with its password replaced by `***`, for logs and
/// errors: the URL's `user:password@` and a `password` word or parameter.
pub fn redact(s: &str) -> String {
    if is_url(s) {
        return redact_url(s);
    }
    let Ok(ws) = words(s) else {
        // Not parseable: nothing of it is shown but its length.
        return format!("<a connection string of {} characters>", s.len());
    };
    let mut out = String::with_capacity(s.len());
    let mut last = 0;
    for w in ws.iter().filter(|w| w.key == "password") {
        out.push_str(&s[last..w.start]);
        out.push_str("password=***");
        last = w.end;
    }
    out.push_str(&s[last..]);
    out
}

fn redact_url(url: &str) -> String {
    let scheme_end = url.find("://").map_or(0, |i| i + 3);
    let rest = &url[scheme_end..];
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    let mut out = match (authority.rfind('@'), authority.find(':')) {
        (Some(at), Some(colon)) if colon < at => format!(
            "{}{}:***{}",
            &url[..scheme_end],
            &authority[..colon],
            &rest[at..authority_end]
        ),
        _ => url[..scheme_end + authority_end].to_string(),
    };
    let tail = &rest[authority_end..];
    match tail.split_once('?') {
        None => out.push_str(tail),
        Some((path, query)) => {
            out.push_str(path);
            out.push('?');
            let pairs: Vec<String> = query
                .split('&')
                .map(|p| match p.split_once('=') {
                    Some((k, _)) if decode(k).is_ok_and(|k| k == "password") => {
                        format!("{k}=***")
                    }
                    _ => p.to_string(),
                })
                .collect();
            out.push_str(&pairs.join("&"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn tls_keys_are_taken_out_of_both_forms() {
        let cases: &[(&str, &str, SslMode, Option<RootCert>)] = &[
            (
                "postgres://u@h/db",
                "postgres://u@h/db",
                SslMode::Prefer,
                None,
            ),
            (
                "postgres://u@h/db?sslmode=verify-full&sslrootcert=%2Fetc%2Frds.pem",
                "postgres://u@h/db",
                SslMode::VerifyFull,
                Some(RootCert::File("/etc/rds.pem".into())),
            ),
            (
                "postgresql://u@h/db?application_name=x&sslmode=require&connect_timeout=3",
                "postgresql://u@h/db?application_name=x&connect_timeout=3",
                SslMode::Require,
                None,
            ),
            (
                "postgres://h/db?sslrootcert=system&sslmode=verify-ca",
                "postgres://h/db",
                SslMode::VerifyCa,
                Some(RootCert::System),
            ),
            (
                "host=h user=u sslmode=disable dbname=d",
                "host=h user=u dbname=d",
                SslMode::Disable,
                None,
            ),
            (
                "host = h  sslrootcert = '/a b/c\\'s.pem' password='x y' sslmode=verify-full",
                "host = h password='x y'",
                SslMode::VerifyFull,
                Some(RootCert::File("/a b/c's.pem".into())),
            ),
            ("", "", SslMode::Prefer, None),
        ];
        for (input, rest, mode, root) in cases {
            let got = parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(&got.rest, rest, "{input}");
            assert_eq!(got.sslmode, *mode, "{input}");
            assert_eq!(&got.sslrootcert, root, "{input}");
        }
    }

    #[test]
    fn malformed_settings_are_refused_with_what_is_wrong() {
        let cases: &[(&str, &str)] = &[
            (
                "postgres://h/db?sslmode=allow",
                "sslmode=\"allow\" is not one of",
            ),
            ("postgres://h/db?sslmode=VERIFY-FULL", "is not one of"),
            (
                "postgres://h/db?sslmode=require&sslmode=disable",
                "sslmode is given twice",
            ),
            ("postgres://h/db?sslrootcert=", "sslrootcert is empty"),
            ("host=h sslmode", "has no '='"),
            ("host='h", "not closed"),
            ("=x", "has no key"),
            ("postgres://h/db?sslmode=%FF", "not UTF-8"),
        ];
        for (input, wanted) in cases {
            let err = parse(input).expect_err(input).to_string();
            assert!(err.contains(wanted), "{input}: {err}");
        }
    }

    #[test]
    fn passwords_are_redacted_in_both_forms() {
        let cases: &[(&str, &str)] = &[
            (
                "postgres://u:s3cret@h:5432/db?x=1",
                "postgres://u:***@h:5432/db?x=1",
            ),
            ("postgres://u@h/db", "postgres://u@h/db"),
            (
                "postgres://u@h/db?password=s3cret&x=1",
                "postgres://u@h/db?password=***&x=1",
            ),
            ("host=h user=u", "host=h user=u"),
            (
                "host=h password=s3cret user=u",
                "host=h password=*** user=u",
            ),
            (
                "host=h password = 'a b\\' c' user=u",
                "host=h password=*** user=u",
            ),
            (
                "host=h password='unclosed",
                "<a connection string of 25 characters>",
            ),
        ];
        for (input, wanted) in cases {
            assert_eq!(&redact(input), wanted, "{input}");
        }
    }

    fn word_value() -> impl Strategy<Value = String> {
        "[a-zA-Z0-9 '\\\\/._-]{0,12}"
    }

    fn quote(v: &str) -> String {
        format!("'{}'", v.replace('\\', "\\\\").replace('\'', "\\'"))
    }

    proptest! {
        /// Any key/value string built from quoted words parses back to its
        /// values, keeps every non-TLS word, and never shows its password.
        #[test]
        fn key_value_words_round_trip(
            host in word_value(),
            password in "[a-zA-Z0-9 '\\\\]{1,12}",
            root in "[a-zA-Z0-9/._ -]{1,12}",
            mode in prop::sample::select(vec!["disable", "prefer", "require", "verify-ca", "verify-full"]),
        ) {
            let s = format!(
                "host={} password={} sslrootcert={} sslmode={mode}",
                quote(&host), quote(&password), quote(&root)
            );
            let got = parse(&s).unwrap();
            prop_assert_eq!(got.sslmode.as_str(), mode);
            let wanted_root = if root == "system" { RootCert::System } else { RootCert::File(root.clone()) };
            prop_assert_eq!(got.sslrootcert, Some(wanted_root));
            let kept = words(&got.rest).unwrap();
            prop_assert_eq!(kept.len(), 2);
            prop_assert_eq!(&kept[0].value, &host);
            prop_assert_eq!(&kept[1].value, &password);
            let redacted = redact(&s);
            prop_assert!(redacted.contains("password=***"), "{}", redacted);
            prop_assert!(!words(&redacted).unwrap().iter().any(|w| w.key == "password" && w.value == password && password != "***"));
        }

        /// No input makes the parser or the redaction panic.
        #[test]
        fn any_string_is_parsed_or_refused(s in "\\PC{0,60}") {
            let _ = parse(&s);
            let _ = redact(&s);
        }

        #[test]
        fn any_url_keeps_its_other_parameters(
            keep in prop::collection::vec("[a-z_]{1,8}=[a-z0-9]{0,6}", 0..4),
            mode in prop::sample::select(vec!["disable", "prefer", "require", "verify-ca", "verify-full"]),
        ) {
            let keep: Vec<String> = keep.into_iter().filter(|p| !p.starts_with("sslmode=") && !p.starts_with("sslrootcert=")).collect();
            let mut params = keep.clone();
            params.insert(params.len() / 2, format!("sslmode={mode}"));
            let url = format!("postgres://u@h/db?{}", params.join("&"));
            let got = parse(&url).unwrap();
            prop_assert_eq!(got.sslmode.as_str(), mode);
            let wanted = if keep.is_empty() { "postgres://u@h/db".to_string() } else { format!("postgres://u@h/db?{}", keep.join("&")) };
            prop_assert_eq!(got.rest, wanted);
        }
    }
}
