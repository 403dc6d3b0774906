//! The seeds' configuration files (`examples/config/`), read in the format each names.

use std::path::{Path, PathBuf};

use ratewarden::config::PolicyConfig;

pub fn config_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/config")
}

/// Reads a configuration in the format its extension names.
pub fn parse(path: &Path) -> PolicyConfig {
    let text = std::fs::read_to_string(path).unwrap();
    match path.extension().and_then(|e| e.to_str()) {
        Some("toml") => toml::from_str(&text).unwrap(),
        Some("json") => serde_json::from_str(&text).unwrap(),
        Some("yaml" | "yml") => serde_norway::from_str(&text).unwrap(),
        other => panic!("unexpected config file extension {other:?}"),
    }
}
