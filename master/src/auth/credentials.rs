//! The credentials file: principals and their secrets, in Mesos' JSON shape
//! (`{"credentials": [{"principal": "web", "secret": "..."}]}`), and the constant-time check
//! of a presented secret.

use std::collections::BTreeMap;

use serde_json::Value;
use subtle::ConstantTimeEq;

/// Principals and secrets, as read from a credentials file.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    secrets: BTreeMap<String, String>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("principals", &self.secrets.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// Why a presented principal and secret were not accepted; the peer is told only that
/// authentication failed, the log says which.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mismatch {
    UnknownPrincipal,
    WrongSecret,
}

impl Mismatch {
    pub fn describe(self) -> &'static str {
        match self {
            Mismatch::UnknownPrincipal => "unknown principal",
            Mismatch::WrongSecret => "wrong secret",
        }
    }
}

/// A principal is a name without whitespace or ':' (an `Authorization` header carries
/// `principal:secret`, split at the first ':').
pub fn check_principal(principal: &str) -> Result<(), String> {
    if principal.is_empty() {
        return Err("a principal must not be empty".into());
    }
    if principal.chars().any(|c| c == ':' || c.is_whitespace()) {
        return Err(format!(
            "principal {principal:?}: a principal has no whitespace and no ':'"
        ));
    }
    Ok(())
}

impl Credentials {
    /// Parses the text of a credentials file. Every principal needs a non-empty secret, no
    /// principal may appear twice, and at least one must be given (an empty file would
    /// lock every caller out).
    pub fn parse(text: &str) -> Result<Credentials, String> {
        let doc: Value = serde_json::from_str(text).map_err(|e| format!("not valid JSON: {e}"))?;
        let Some(top) = doc.as_object() else {
            return Err("expected an object {\"credentials\": [...]}".into());
        };
        if let Some(key) = top.keys().find(|k| *k != "credentials") {
            return Err(format!(
                "unknown key {key:?}; expected only \"credentials\""
            ));
        }
        let list = top
            .get("credentials")
            .and_then(Value::as_array)
            .ok_or("expected \"credentials\": [{\"principal\": ..., \"secret\": ...}]")?;
        if list.is_empty() {
            return Err("\"credentials\" is empty: name at least one principal".into());
        }
        let mut secrets = BTreeMap::new();
        for (i, entry) in list.iter().enumerate() {
            let at = format!("credentials[{i}]");
            let Some(entry) = entry.as_object() else {
                return Err(format!(
                    "{at}: expected {{\"principal\": ..., \"secret\": ...}}"
                ));
            };
            if let Some(key) = entry.keys().find(|k| *k != "principal" && *k != "secret") {
                return Err(format!(
                    "{at}: unknown key {key:?}; expected \"principal\" and \"secret\""
                ));
            }
            let principal = entry
                .get("principal")
                .and_then(Value::as_str)
                .ok_or_else(|| format!("{at}: needs a string \"principal\""))?;
            check_principal(principal).map_err(|e| format!("{at}: {e}"))?;
            let secret = entry.get("secret").and_then(Value::as_str).ok_or_else(|| {
                format!("{at}: principal '{principal}' needs a string \"secret\"")
            })?;
            if secret.is_empty() {
                return Err(format!("{at}: principal '{principal}' has an empty secret"));
            }
            if secrets
                .insert(principal.to_owned(), secret.to_owned())
                .is_some()
            {
                return Err(format!("{at}: principal '{principal}' is listed twice"));
            }
        }
        Ok(Credentials { secrets })
    }

    /// Checks `secret` for `principal`. The comparison (`subtle`) takes the same time
    /// wherever two secrets of one length differ, so timing shows at most the length; an
    /// unknown principal costs a comparison too.
    pub fn check(&self, principal: &str, secret: &str) -> Result<(), Mismatch> {
        match self.secrets.get(principal) {
            Some(expected) => {
                if bool::from(expected.as_bytes().ct_eq(secret.as_bytes())) {
                    Ok(())
                } else {
                    Err(Mismatch::WrongSecret)
                }
            }
            None => {
                let _ = secret.as_bytes().ct_eq(secret.as_bytes());
                Err(Mismatch::UnknownPrincipal)
            }
        }
    }

    pub fn principals(&self) -> impl Iterator<Item = &str> {
        self.secrets.keys().map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mesos_shape_parses_and_checks_secrets() {
        let c = Credentials::parse(
            r#"{"credentials": [{"principal": "web", "secret": "s3cret"},
                                {"principal": "ops", "secret": "a:b c"}]}"#,
        )
        .unwrap();
        assert_eq!(c.principals().collect::<Vec<_>>(), ["ops", "web"]);
        assert_eq!(c.check("web", "s3cret"), Ok(()));
        assert_eq!(c.check("ops", "a:b c"), Ok(()));
        assert_eq!(c.check("web", "s3cre"), Err(Mismatch::WrongSecret));
        assert_eq!(c.check("web", "s3cret "), Err(Mismatch::WrongSecret));
        assert_eq!(c.check("web", ""), Err(Mismatch::WrongSecret));
        assert_eq!(c.check("nobody", "s3cret"), Err(Mismatch::UnknownPrincipal));
        let shown = format!("{c:?}");
        assert!(
            shown.contains("web") && !shown.contains("s3cret"),
            "{shown}"
        );
    }

    #[test]
    fn bad_files_say_what_is_wrong() {
        for (text, says) in [
            ("{", "not valid JSON"),
            ("[]", "expected an object"),
            (r#"{"credential": []}"#, "\"credential\""),
            (r#"{"credentials": []}"#, "is empty"),
            (
                r#"{"credentials": [{"secret": "x"}]}"#,
                "credentials[0]: needs a string \"principal\"",
            ),
            (
                r#"{"credentials": [{"principal": "a"}]}"#,
                "'a' needs a string \"secret\"",
            ),
            (
                r#"{"credentials": [{"principal": "a", "secret": ""}]}"#,
                "empty secret",
            ),
            (
                r#"{"credentials": [{"principal": "a:b", "secret": "x"}]}"#,
                "no ':'",
            ),
            (
                r#"{"credentials": [{"principal": "", "secret": "x"}]}"#,
                "must not be empty",
            ),
            (
                r#"{"credentials": [{"principal": "a", "secret": "x", "role": "r"}]}"#,
                "unknown key \"role\"",
            ),
            (
                r#"{"credentials": [{"principal": "a", "secret": "x"}, {"principal": "a", "secret": "y"}]}"#,
                "credentials[1]: principal 'a' is listed twice",
            ),
        ] {
            let err = Credentials::parse(text).unwrap_err();
            assert!(err.contains(says), "{text}: {err}");
        }
    }
}
