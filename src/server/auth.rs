//! Who may do what. A tokens file has one line per token,
//! `<token> <subject> [reader|writer|admin]` (writer when omitted; `#`
//! starts a comment). Requests carry `Authorization: Bearer <token>`, or
//! HTTP Basic with the token as the password (what the Kafka clients'
//! `basic.auth.user.info` and kafkajs' `auth` send). Without a token a
//! request is anonymous: read-only by default, nothing with
//! `--anonymous none`.

use std::collections::HashMap;
use std::path::Path;

use base64::Engine;

use crate::error::{Error, Result};

/// What a caller may do; each role includes the ones before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    Reader,
    Writer,
    /// Also `__builtins__`, `force`, and the global configuration.
    Admin,
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "reader" => Ok(Role::Reader),
            "writer" => Ok(Role::Writer),
            "admin" => Ok(Role::Admin),
            _ => Err(format!("unknown role {s:?} (reader, writer or admin)")),
        }
    }
}

/// An authenticated (or anonymous) caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The subject named in the tokens file; `anonymous` without a token.
    pub name: String,
    /// `None`: anonymous and anonymous access is off.
    pub role: Option<Role>,
    /// No token was given.
    pub anonymous: bool,
}

/// Why a request is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denied {
    /// No or an unknown token (HTTP 401, gRPC UNAUTHENTICATED).
    Unauthenticated(String),
    /// Known caller, not allowed (HTTP 403, gRPC PERMISSION_DENIED).
    Forbidden(String),
}

impl std::fmt::Display for Denied {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Denied::Unauthenticated(m) | Denied::Forbidden(m) => f.write_str(m),
        }
    }
}

/// The tokens and the anonymous policy.
#[derive(Debug, Clone, Default)]
pub struct Auth {
    tokens: HashMap<String, (String, Role)>,
    /// What a request without a token may do.
    pub anonymous: Option<Role>,
    /// `--read-only`: no writes at all, whoever asks.
    pub read_only: bool,
}

impl Auth {
    /// Parses a tokens file's text.
    pub fn parse(text: &str, source: &str) -> Result<HashMap<String, (String, Role)>> {
        let mut tokens = HashMap::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or_default().trim();
            if line.is_empty() {
                continue;
            }
            let bad = |why: String| Error::InvalidInput(format!("{source}:{}: {why}", n + 1));
            let parts: Vec<&str> = line.split_whitespace().collect();
            let (token, subject, role) = match parts.as_slice() {
                [t, s] => (*t, *s, Role::Writer),
                [t, s, r] => (*t, *s, r.parse().map_err(bad)?),
                _ => {
                    return Err(bad(
                        "expected `<token> <subject> [reader|writer|admin]`".into()
                    ));
                }
            };
            if tokens
                .insert(token.to_string(), (subject.to_string(), role))
                .is_some()
            {
                return Err(bad("this token is given twice".into()));
            }
        }
        Ok(tokens)
    }

    pub fn from_file(path: &Path) -> Result<HashMap<String, (String, Role)>> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            Error::InvalidInput(format!("cannot read tokens file {}: {e}", path.display()))
        })?;
        Self::parse(&text, &path.display().to_string())
    }

    pub fn new(
        tokens: HashMap<String, (String, Role)>,
        anonymous: Option<Role>,
        read_only: bool,
    ) -> Self {
        Auth {
            tokens,
            anonymous,
            read_only,
        }
    }

    /// The caller an `Authorization` header value names.
    pub fn caller(&self, authorization: Option<&str>) -> std::result::Result<Caller, Denied> {
        let Some(value) = authorization.map(str::trim).filter(|v| !v.is_empty()) else {
            return Ok(Caller {
                name: "anonymous".into(),
                role: self.anonymous,
                anonymous: true,
            });
        };
        let token = if let Some(t) = strip_scheme(value, "Bearer") {
            t.trim().to_string()
        } else if let Some(b) = strip_scheme(value, "Basic") {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(b.trim())
                .ok()
                .and_then(|d| String::from_utf8(d).ok())
                .ok_or_else(|| Denied::Unauthenticated("malformed Basic credentials".into()))?;
            match decoded.split_once(':') {
                Some((_, password)) => password.to_string(),
                None => decoded,
            }
        } else {
            return Err(Denied::Unauthenticated(
                "unsupported Authorization scheme: use `Bearer <token>` or Basic with the token as password".into(),
            ));
        };
        match self.tokens.get(&token) {
            Some((name, role)) => Ok(Caller {
                name: name.clone(),
                role: Some(*role),
                anonymous: false,
            }),
            None => Err(Denied::Unauthenticated("unknown token".into())),
        }
    }

    /// Refuses unless `caller` has at least `need`; writes (`Writer` and
    /// up) are refused in read-only mode.
    pub fn require(&self, caller: &Caller, need: Role) -> std::result::Result<(), Denied> {
        if need >= Role::Writer && self.read_only {
            return Err(Denied::Forbidden(
                "the server is read-only (--read-only)".into(),
            ));
        }
        match caller.role {
            Some(r) if r >= need => Ok(()),
            None => Err(Denied::Unauthenticated(
                "a token is required (anonymous access is off)".into(),
            )),
            Some(_) if caller.anonymous => Err(Denied::Unauthenticated(format!(
                "anonymous callers may only read; this needs a {} token",
                role_name(need)
            ))),
            Some(_) => Err(Denied::Forbidden(format!(
                "{} may not do this: it needs the {} role",
                caller.name,
                role_name(need)
            ))),
        }
    }
}

fn role_name(r: Role) -> &'static str {
    match r {
        Role::Reader => "reader",
        Role::Writer => "writer",
        Role::Admin => "admin",
    }
}

fn strip_scheme<'a>(value: &'a str, scheme: &str) -> Option<&'a str> {
    let (s, rest) = value.split_once(' ')?;
    s.eq_ignore_ascii_case(scheme).then_some(rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth() -> Auth {
        let tokens = Auth::parse(
            "# ops\nt-read alice reader\nt-write ci\nt-admin root admin # comment\n",
            "tokens",
        )
        .unwrap();
        Auth::new(tokens, Some(Role::Reader), false)
    }

    #[test]
    fn tokens_file_lines_and_errors() {
        let a = auth();
        assert_eq!(a.tokens["t-write"], ("ci".to_string(), Role::Writer));
        let e = Auth::parse("x y superuser\n", "f").unwrap_err().to_string();
        assert!(e.contains("f:1: unknown role \"superuser\""), "{e}");
        assert!(
            Auth::parse("a b\na c\n", "f")
                .unwrap_err()
                .to_string()
                .contains("f:2")
        );
        assert!(Auth::parse("lonely\n", "f").is_err());
    }

    #[test]
    fn bearer_basic_and_anonymous() {
        let a = auth();
        let anon = a.caller(None).unwrap();
        assert!(a.require(&anon, Role::Reader).is_ok());
        assert!(matches!(
            a.require(&anon, Role::Writer),
            Err(Denied::Unauthenticated(_))
        ));
        let w = a.caller(Some("Bearer t-write")).unwrap();
        assert_eq!(w.name, "ci");
        assert!(a.require(&w, Role::Writer).is_ok());
        assert!(matches!(
            a.require(&w, Role::Admin),
            Err(Denied::Forbidden(_))
        ));
        let basic = base64::engine::general_purpose::STANDARD.encode("key:t-admin");
        let root = a.caller(Some(&format!("Basic {basic}"))).unwrap();
        assert!(a.require(&root, Role::Admin).is_ok());
        assert!(matches!(
            a.caller(Some("Bearer nope")),
            Err(Denied::Unauthenticated(_))
        ));
        assert!(a.caller(Some("Digest x")).is_err());

        let closed = Auth::new(a.tokens.clone(), None, false);
        let anon = closed.caller(None).unwrap();
        assert!(matches!(
            closed.require(&anon, Role::Reader),
            Err(Denied::Unauthenticated(_))
        ));

        let ro = Auth::new(a.tokens.clone(), Some(Role::Reader), true);
        let root = ro.caller(Some("Bearer t-admin")).unwrap();
        assert!(matches!(
            ro.require(&root, Role::Writer),
            Err(Denied::Forbidden(_))
        ));
        assert!(ro.require(&root, Role::Reader).is_ok());
    }
}
