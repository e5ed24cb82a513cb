//! A principal and its secret, as a framework or an operator presents them to a master
//! that has a credentials file: in AUTHENTICATE before SUBSCRIBE, and as the
//! `Authorization` header of HTTP calls.

use std::path::Path;

use fleet_proto::messages::scheduler::{Call, Secret};

use crate::error::ClientError;

/// A principal and secret. `Debug` never shows the secret.
#[derive(Clone, PartialEq)]
pub struct Credential {
    pub principal: String,
    pub secret: Secret,
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credential")
            .field("principal", &self.principal)
            .finish_non_exhaustive()
    }
}

impl Credential {
    pub fn new(principal: impl Into<String>, secret: impl Into<String>) -> Credential {
        Credential {
            principal: principal.into(),
            secret: Secret(secret.into()),
        }
    }

    /// Reads the secret from `path`: the whole file, less one trailing newline (as
    /// `echo secret > file` leaves it). An empty secret is an error naming the file.
    pub fn from_file(principal: &str, path: &Path) -> Result<Credential, ClientError> {
        let invalid = |reason: String| ClientError::InvalidOption {
            option: "--secret-file",
            reason,
        };
        let text = std::fs::read_to_string(path)
            .map_err(|e| invalid(format!("cannot read {}: {e}", path.display())))?;
        let secret = text
            .strip_suffix('\n')
            .map(|s| s.strip_suffix('\r').unwrap_or(s))
            .unwrap_or(&text);
        if secret.is_empty() {
            return Err(invalid(format!("{} holds no secret", path.display())));
        }
        Ok(Credential::new(principal, secret))
    }

    /// The call that proves this principal to the master.
    pub fn authenticate_call(&self) -> Call {
        Call::Authenticate {
            principal: self.principal.clone(),
            secret: self.secret.clone(),
        }
    }

    /// The `Authorization` header value for HTTP calls.
    pub fn authorization(&self) -> String {
        format!("Bearer {}:{}", self.principal, self.secret.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_file_loses_one_trailing_newline_and_is_never_shown() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        std::fs::write(&path, "s3cret\n").unwrap();
        let c = Credential::from_file("web", &path).unwrap();
        assert_eq!(c.secret.0, "s3cret");
        assert_eq!(c.authorization(), "Bearer web:s3cret");
        assert!(!format!("{c:?}").contains("s3cret"));
        assert!(!format!("{:?}", c.authenticate_call()).contains("s3cret"));
        std::fs::write(&path, "\n").unwrap();
        let err = Credential::from_file("web", &path).unwrap_err().to_string();
        assert!(err.contains("holds no secret"), "{err}");
        let err = Credential::from_file("web", &dir.path().join("none"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("cannot read") && err.contains("none"), "{err}");
    }
}
