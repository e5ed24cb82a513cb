//! v2 `pids` controller: `pids.max`.

use std::path::Path;

use crate::cgroups::controller::{Controller, Limits};
use crate::cgroups::fs;
use crate::error::AgentError;

pub struct Pids;

impl Controller for Pids {
    const NAME: &'static str = "pids";

    fn apply(dir: &Path, limits: &Limits) -> Result<(), AgentError> {
        match limits.pids_max {
            Some(max) => fs::write(dir, "pids.max", &max.to_string()),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        Pids::apply(
            dir.path(),
            &Limits {
                pids_max: Some(64),
                ..Limits::default()
            },
        )
        .unwrap();
        assert_eq!(fs::read(dir.path(), "pids.max").unwrap(), "64");
    }

    #[test]
    fn zero_is_a_real_limit() {
        let dir = tempfile::tempdir().unwrap();
        Pids::apply(
            dir.path(),
            &Limits {
                pids_max: Some(0),
                ..Limits::default()
            },
        )
        .unwrap();
        assert_eq!(fs::read(dir.path(), "pids.max").unwrap(), "0");
    }
}
