//! The optional TOML configuration file (`--config PATH` or `CELERIAC_CONFIG`). Each area owns
//! one top-level section and parses it itself with [`ConfigFile::section`]:
//!
//! ```toml
//! [database]          # url, schema (flags and environment variables take precedence)
//! [worker]            # worker defaults
//! [routes]            # task name / glob → executor (built-in, http, process)
//! [beat]              # periodic schedules
//! [server]            # HTTP API, dashboard and metrics
//! [limits]            # rate limits and concurrency caps
//! ```
//!
//! Unknown sections are an error (a typo must not be silently ignored).

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

use crate::error::{Error, Result};

/// The top-level sections a configuration file may have.
pub const SECTIONS: &[&str] = &["database", "worker", "routes", "beat", "server", "limits"];

/// A parsed configuration file.
#[derive(Debug, Clone, Default)]
pub struct ConfigFile {
    path: Option<PathBuf>,
    table: toml::Table,
}

impl ConfigFile {
    /// No file: every section absent.
    pub fn empty() -> Self {
        Self::default()
    }

    /// Read and parse `path`; errors name the file and the position.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            Error::Invalid(format!("cannot read config file {}: {e}", path.display()))
        })?;
        let mut me = Self::parse(&text)
            .map_err(|e| Error::Invalid(format!("config file {}: {e}", path.display())))?;
        me.path = Some(path.to_path_buf());
        Ok(me)
    }

    /// Parse TOML text.
    pub fn parse(text: &str) -> Result<Self> {
        let table: toml::Table = text
            .parse()
            .map_err(|e: toml::de::Error| Error::Invalid(one_line(&e.to_string())))?;
        if let Some(unknown) = table.keys().find(|k| !SECTIONS.contains(&k.as_str())) {
            return Err(Error::Invalid(format!(
                "unknown section [{unknown}] (known: {})",
                SECTIONS.join(", ")
            )));
        }
        Ok(ConfigFile { path: None, table })
    }

    /// Where it was read from.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Section `name` deserialized as `T`; `None` when absent.
    pub fn section<T: DeserializeOwned>(&self, name: &str) -> Result<Option<T>> {
        debug_assert!(SECTIONS.contains(&name), "unregistered section {name}");
        match self.table.get(name) {
            None => Ok(None),
            Some(v) => v
                .clone()
                .try_into()
                .map(Some)
                .map_err(|e: toml::de::Error| {
                    Error::Invalid(format!("[{name}]: {}", one_line(&e.to_string())))
                }),
        }
    }
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// `[database]`.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseSection {
    /// PostgreSQL URL (DATABASE_URL / --database-url win).
    pub url: Option<String>,
    /// Schema (CELERIAC_SCHEMA / --schema win).
    pub schema: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_parse_and_unknown_ones_fail() {
        let f = ConfigFile::parse("[database]\nurl = \"postgres://x\"\n").unwrap();
        let db: DatabaseSection = f.section("database").unwrap().unwrap();
        assert_eq!(db.url.as_deref(), Some("postgres://x"));
        assert!(f.section::<DatabaseSection>("worker").unwrap().is_none());
        let err = ConfigFile::parse("[databse]\n").unwrap_err().to_string();
        assert!(err.contains("unknown section [databse]"), "{err}");
        let err = ConfigFile::parse("[database]\nurl = 3\n")
            .unwrap()
            .section::<DatabaseSection>("database")
            .unwrap_err()
            .to_string();
        assert!(err.contains("[database]"), "{err}");
        assert!(ConfigFile::parse("[database\n").is_err());
    }
}
