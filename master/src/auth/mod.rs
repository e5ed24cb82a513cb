//! Who may talk to the master and what they may do: principals and secrets from a
//! credentials file, Mesos-like ACLs, the `Authorization` header of HTTP callers, and the
//! gate a framework connection passes before its SUBSCRIBE reaches the core. Pure: the
//! shell asks, this module answers; nothing here does I/O except reading the two files at
//! start.
//!
//! Without a credentials file nobody is asked to authenticate (HTTP callers are anonymous,
//! a framework's principal is taken as given); without an ACL file everything is allowed.

mod acls;
mod credentials;
mod gate;

use std::path::Path;

use base64::Engine as _;

pub use acls::{Acls, Action};
pub use credentials::{Credentials, Mismatch, check_principal};
pub use gate::{FrameworkGate, Verdict};

/// A credentials or ACL file the master cannot use; the master refuses to start.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("cannot read {what} file {path}: {source}")]
    Read {
        what: &'static str,
        path: String,
        source: std::io::Error,
    },
    #[error("invalid {what} file {path}: {reason}")]
    Invalid {
        what: &'static str,
        path: String,
        reason: String,
    },
}

/// Why a caller was turned away. The `Display` text is what the caller is told; the log
/// adds [`Refusal::detail`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// No credential where the master requires one.
    #[error(
        "authentication required: this master has a credentials file; give a principal and secret"
    )]
    Missing { principal: Option<String> },
    /// An `Authorization` header this master cannot read.
    #[error("authentication failed: {reason}")]
    Malformed { reason: String },
    /// An unknown principal or a wrong secret; the caller is not told which.
    #[error("authentication failed for principal '{principal}'")]
    BadCredential {
        principal: String,
        mismatch: Mismatch,
    },
    /// FrameworkInfo names another principal than the one that authenticated.
    #[error(
        "the framework's principal '{claimed}' is not the authenticated principal '{authenticated}'"
    )]
    PrincipalMismatch {
        claimed: String,
        authenticated: String,
    },
    /// Authenticated (or anonymous) but not allowed by the ACLs.
    #[error("{} may not {action}", who(.principal))]
    Forbidden {
        principal: Option<String>,
        action: Action,
    },
}

fn who(principal: &Option<String>) -> String {
    match principal {
        Some(p) => format!("principal '{p}'"),
        None => "anonymous callers".to_owned(),
    }
}

impl Refusal {
    /// The principal the refusal is about, or "anonymous", for logs.
    pub fn principal(&self) -> &str {
        match self {
            Refusal::Missing { principal } | Refusal::Forbidden { principal, .. } => {
                principal.as_deref().unwrap_or("anonymous")
            }
            Refusal::Malformed { .. } => "anonymous",
            Refusal::BadCredential { principal, .. } => principal,
            Refusal::PrincipalMismatch { authenticated, .. } => authenticated,
        }
    }

    /// True when the caller did not prove who it is (HTTP 401), false when it did and may
    /// not do what it asked (HTTP 403).
    pub fn is_authentication(&self) -> bool {
        matches!(
            self,
            Refusal::Missing { .. } | Refusal::Malformed { .. } | Refusal::BadCredential { .. }
        )
    }

    /// The message with what only the operator should see (which half of a credential was
    /// wrong).
    pub fn detail(&self) -> String {
        match self {
            Refusal::BadCredential { mismatch, .. } => format!("{self} ({})", mismatch.describe()),
            _ => self.to_string(),
        }
    }
}

/// The master's credentials and ACLs; the default requires nothing and allows everything.
#[derive(Debug, Clone, Default)]
pub struct Security {
    credentials: Option<Credentials>,
    acls: Option<Acls>,
}

fn read(what: &'static str, path: &Path) -> Result<String, AuthError> {
    std::fs::read_to_string(path).map_err(|source| AuthError::Read {
        what,
        path: path.display().to_string(),
        source,
    })
}

impl Security {
    pub fn new(credentials: Option<Credentials>, acls: Option<Acls>) -> Security {
        Security { credentials, acls }
    }

    /// Reads the credentials file and the ACL file, either of which may be absent.
    pub fn load(credentials: Option<&Path>, acls: Option<&Path>) -> Result<Security, AuthError> {
        let invalid = |what, path: &Path| {
            let path = path.display().to_string();
            move |reason| AuthError::Invalid { what, path, reason }
        };
        let credentials = match credentials {
            None => None,
            Some(p) => Some(
                Credentials::parse(&read("credentials", p)?).map_err(invalid("credentials", p))?,
            ),
        };
        let acls = match acls {
            None => None,
            Some(p) => Some(Acls::parse(&read("ACL", p)?).map_err(invalid("ACL", p))?),
        };
        Ok(Security { credentials, acls })
    }

    /// Whether callers must prove a principal (a credentials file was given).
    pub fn requires_authentication(&self) -> bool {
        self.credentials.is_some()
    }

    /// One line for the start-up log.
    pub fn describe(&self) -> String {
        let credentials = match &self.credentials {
            Some(c) => match c.principals().count() {
                1 => "authentication required (1 principal)".to_owned(),
                n => format!("authentication required ({n} principals)"),
            },
            None => "no authentication".to_owned(),
        };
        let acls = if self.acls.is_some() {
            "ACLs enforced"
        } else {
            "no ACLs"
        };
        format!("{credentials}, {acls}")
    }

    /// Checks a principal and secret against the credentials file. Without one, any
    /// principal is taken as given.
    pub fn authenticate(&self, principal: &str, secret: &str) -> Result<(), Refusal> {
        match &self.credentials {
            None => Ok(()),
            Some(c) => c
                .check(principal, secret)
                .map_err(|mismatch| Refusal::BadCredential {
                    principal: principal.to_owned(),
                    mismatch,
                }),
        }
    }

    /// Whether `principal` (None: anonymous) may do `action`; allowed when there are no
    /// ACLs.
    pub fn authorize(&self, principal: Option<&str>, action: Action) -> Result<(), Refusal> {
        match &self.acls {
            Some(acls) if !acls.allows(principal, &action) => Err(Refusal::Forbidden {
                principal: principal.map(str::to_owned),
                action,
            }),
            _ => Ok(()),
        }
    }

    /// The principal of an HTTP request from its `Authorization` header (`Basic
    /// base64(principal:secret)`, as Mesos, or `Bearer principal:secret`). Without a
    /// credentials file every caller is anonymous (None) and the header is not read.
    pub fn http_principal(&self, authorization: Option<&str>) -> Result<Option<String>, Refusal> {
        if self.credentials.is_none() {
            return Ok(None);
        }
        let Some(header) = authorization else {
            return Err(Refusal::Missing { principal: None });
        };
        let (principal, secret) = parse_authorization(header)?;
        self.authenticate(&principal, &secret)?;
        Ok(Some(principal))
    }
}

/// Splits an `Authorization` header value into principal and secret.
pub fn parse_authorization(header: &str) -> Result<(String, String), Refusal> {
    let malformed = |reason: String| Refusal::Malformed { reason };
    let (scheme, token) = header.trim().split_once(' ').ok_or_else(|| {
        malformed("expected 'Basic <base64>' or 'Bearer <principal>:<secret>'".into())
    })?;
    let token = token.trim();
    let pair = if scheme.eq_ignore_ascii_case("basic") {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(token)
            .map_err(|e| malformed(format!("the Basic credential is not base64: {e}")))?;
        String::from_utf8(bytes)
            .map_err(|_| malformed("the Basic credential is not UTF-8".into()))?
    } else if scheme.eq_ignore_ascii_case("bearer") {
        token.to_owned()
    } else {
        return Err(malformed(format!(
            "unsupported scheme '{scheme}'; use Basic or Bearer"
        )));
    };
    let (principal, secret) = pair
        .split_once(':')
        .ok_or_else(|| malformed("expected <principal>:<secret>".into()))?;
    if principal.is_empty() {
        return Err(malformed("the principal is empty".into()));
    }
    Ok((principal.to_owned(), secret.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secured(acls: Option<&str>) -> Security {
        Security::new(
            Some(
                Credentials::parse(
                    r#"{"credentials": [{"principal": "ops", "secret": "o:p"},
                                        {"principal": "web", "secret": "w"}]}"#,
                )
                .unwrap(),
            ),
            acls.map(|a| Acls::parse(a).unwrap()),
        )
    }

    #[test]
    fn http_callers_prove_a_principal_with_basic_or_bearer() {
        let s = secured(None);
        let basic = base64::engine::general_purpose::STANDARD.encode("ops:o:p");
        assert_eq!(
            s.http_principal(Some(&format!("Basic {basic}"))),
            Ok(Some("ops".to_owned()))
        );
        assert_eq!(
            s.http_principal(Some("bearer web:w")),
            Ok(Some("web".to_owned()))
        );
        let missing = s.http_principal(None).unwrap_err();
        assert!(missing.is_authentication());
        assert_eq!(missing.principal(), "anonymous");
        let wrong = s.http_principal(Some("Bearer web:x")).unwrap_err();
        assert_eq!(
            wrong.to_string(),
            "authentication failed for principal 'web'"
        );
        assert_eq!(wrong.principal(), "web");
        assert!(
            wrong.detail().contains("wrong secret"),
            "{}",
            wrong.detail()
        );
        for bad in [
            "Bearer",
            "Digest a:b",
            "Bearer nocolon",
            "Basic !!!",
            "Bearer :x",
        ] {
            let err = s.http_principal(Some(bad)).unwrap_err();
            assert!(matches!(err, Refusal::Malformed { .. }), "{bad}: {err:?}");
        }
        // Without credentials nobody is asked, whatever the header says.
        assert_eq!(
            Security::default().http_principal(Some("Bearer x:y")),
            Ok(None)
        );
        assert_eq!(Security::default().http_principal(None), Ok(None));
    }

    #[test]
    fn forbidden_names_the_principal_and_the_action() {
        let s = secured(Some(
            r#"{"update_quotas": [{"principals": {"values": ["ops"]}, "roles": {"type": "ANY"}},
                                  {"principals": {"type": "ANY"}, "roles": {"type": "NONE"}}]}"#,
        ));
        let quota = Action::UpdateQuota { role: "dev".into() };
        assert_eq!(s.authorize(Some("ops"), quota.clone()), Ok(()));
        let err = s.authorize(Some("web"), quota.clone()).unwrap_err();
        assert!(!err.is_authentication());
        assert_eq!(
            err.to_string(),
            "principal 'web' may not set the quota of role 'dev'"
        );
        let err = s.authorize(None, quota).unwrap_err();
        assert_eq!(
            err.to_string(),
            "anonymous callers may not set the quota of role 'dev'"
        );
        assert_eq!(err.principal(), "anonymous");
        assert_eq!(
            Security::default().authorize(None, Action::UpdateWeight { role: "a".into() }),
            Ok(())
        );
    }

    #[test]
    fn bad_files_are_refused_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let creds = dir.path().join("credentials.json");
        std::fs::write(&creds, r#"{"credentials": [{"principal": "a"}]}"#).unwrap();
        let err = Security::load(Some(&creds), None).unwrap_err().to_string();
        assert!(
            err.contains("credentials.json") && err.contains("\"secret\""),
            "{err}"
        );
        let acls = dir.path().join("acls.json");
        std::fs::write(&acls, r#"{"set_quota": []}"#).unwrap();
        let err = Security::load(None, Some(&acls)).unwrap_err().to_string();
        assert!(
            err.contains("acls.json") && err.contains("set_quota"),
            "{err}"
        );
        let err = Security::load(Some(&dir.path().join("none.json")), None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("cannot read credentials file") && err.contains("none.json"));
        std::fs::write(
            &creds,
            r#"{"credentials": [{"principal": "a", "secret": "b"}]}"#,
        )
        .unwrap();
        std::fs::write(&acls, r#"{"permissive": false}"#).unwrap();
        let s = Security::load(Some(&creds), Some(&acls)).unwrap();
        assert!(s.requires_authentication());
        assert_eq!(
            s.describe(),
            "authentication required (1 principal), ACLs enforced"
        );
    }
}
