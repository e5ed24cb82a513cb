//! `--principal` and `--secret-file` of the client commands (`fleet run`, `fleet status`,
//! `fleet quota`, ...), for a master with a credentials file.

use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::Args;
use fleet_client::Credential;

/// The variable a secret may come in when no `--secret-file` is given.
pub const SECRET_VAR: &str = "FLEET_SECRET";

#[derive(Args, Clone, Debug, Default)]
pub struct CredentialArgs {
    /// Principal to authenticate as, when the master has a credentials file.
    #[arg(long, global = true, env = "FLEET_PRINCIPAL")]
    pub principal: Option<String>,
    /// File holding the principal's secret; without it, the FLEET_SECRET variable.
    #[arg(long, global = true, env = "FLEET_SECRET_FILE")]
    pub secret_file: Option<PathBuf>,
}

impl CredentialArgs {
    /// The credential asked for, if any; a principal without a secret (or the reverse) is
    /// an error saying what is missing.
    pub fn credential(&self) -> Result<Option<Credential>> {
        let Some(principal) = &self.principal else {
            if let Some(file) = &self.secret_file {
                bail!(
                    "--secret-file {} needs --principal (or FLEET_PRINCIPAL)",
                    file.display()
                );
            }
            return Ok(None);
        };
        if let Some(file) = &self.secret_file {
            return Ok(Some(Credential::from_file(principal, file)?));
        }
        match std::env::var(SECRET_VAR) {
            Ok(secret) if !secret.is_empty() => Ok(Some(Credential::new(principal, secret))),
            _ => bail!(
                "--principal {principal} needs a secret: --secret-file FILE or the {SECRET_VAR} variable"
            ),
        }
    }
}
