//! Layered settings: a command-line flag wins over the `--config` TOML file, which wins over
//! a FLEET_* environment variable, which wins over the built-in default.

use std::path::Path;
use std::str::FromStr;

use anyhow::{Context, Result, anyhow};

/// The config file and environment behind the flags of one command.
pub struct Layers {
    file: Option<(String, toml::Table)>,
}

impl Layers {
    /// Reads `path` when given; a missing or malformed file is an error naming it.
    pub fn load(path: Option<&Path>) -> Result<Self> {
        let file = match path {
            None => None,
            Some(p) => {
                let text = std::fs::read_to_string(p)
                    .with_context(|| format!("cannot read config file {}", p.display()))?;
                let table: toml::Table = text
                    .parse()
                    .with_context(|| format!("invalid TOML in config file {}", p.display()))?;
                Some((p.display().to_string(), table))
            }
        };
        Ok(Layers { file })
    }

    /// The value of setting `key` (spelled like its flag, e.g. "work-dir"): the flag, else
    /// the config file (key "work-dir" or "work_dir"), else FLEET_WORK_DIR.
    pub fn get<T>(&self, flag: Option<T>, key: &str) -> Result<Option<T>>
    where
        T: FromStr,
        T::Err: std::fmt::Display,
    {
        if flag.is_some() {
            return Ok(flag);
        }
        if let Some((path, table)) = &self.file {
            let value = table.get(key).or_else(|| table.get(&key.replace('-', "_")));
            if let Some(v) = value {
                let text = match v {
                    toml::Value::String(s) => s.clone(),
                    toml::Value::Array(items) => items
                        .iter()
                        .map(|i| match i {
                            toml::Value::String(s) => s.clone(),
                            other => other.to_string(),
                        })
                        .collect::<Vec<_>>()
                        .join(","),
                    other => other.to_string(),
                };
                return text
                    .parse()
                    .map(Some)
                    .map_err(|e| anyhow!("invalid value '{text}' for '{key}' in {path}: {e}"));
            }
        }
        let var = format!("FLEET_{}", key.replace('-', "_").to_uppercase());
        match std::env::var(&var) {
            Ok(text) => text
                .parse()
                .map(Some)
                .map_err(|e| anyhow!("invalid value '{text}' in environment variable {var}: {e}")),
            Err(_) => Ok(None),
        }
    }

    /// Like `get`, with a default.
    pub fn get_or<T>(&self, flag: Option<T>, key: &str, default: T) -> Result<T>
    where
        T: FromStr,
        T::Err: std::fmt::Display,
    {
        Ok(self.get(flag, key)?.unwrap_or(default))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flag_beats_file_beats_environment() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(
            &path,
            "work-dir = \"/from/file\"\nmasters = [\"a:1\", \"b:2\"]\n",
        )
        .unwrap();
        let layers = Layers::load(Some(&path)).unwrap();
        // SAFETY: tests in this module are the only readers of this variable.
        unsafe { std::env::set_var("FLEET_ONLY_ENV_KEY", "from-env") };
        let flag: Option<String> = Some("/from/flag".into());
        assert_eq!(layers.get(flag, "work-dir").unwrap().unwrap(), "/from/flag");
        assert_eq!(
            layers.get::<String>(None, "work-dir").unwrap().unwrap(),
            "/from/file"
        );
        assert_eq!(
            layers.get::<String>(None, "masters").unwrap().unwrap(),
            "a:1,b:2"
        );
        assert_eq!(
            layers.get::<String>(None, "only-env-key").unwrap().unwrap(),
            "from-env"
        );
        assert_eq!(layers.get::<String>(None, "nowhere").unwrap(), None);
    }

    #[test]
    fn bad_values_name_their_source() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "port = \"many\"\n").unwrap();
        let layers = Layers::load(Some(&path)).unwrap();
        let err = layers.get::<u16>(None, "port").unwrap_err().to_string();
        assert!(err.contains("'many'") && err.contains("c.toml"), "{err}");
        assert!(Layers::load(Some(Path::new("/nonexistent/x.toml"))).is_err());
    }
}
