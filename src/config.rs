//! The management-etcd connection file (`/etc/cke/config.yml`), in CKE's etcdutil format, in two
//! layers: [`RawConfig`] as written, [`Config`] validated with defaults applied.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// Default path of the config file.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/cke/config.yml";
/// Default key prefix.
pub const DEFAULT_PREFIX: &str = "/cke/";
/// Default etcd endpoint.
pub const DEFAULT_ENDPOINT: &str = "http://127.0.0.1:2379";
/// Default per-request timeout.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);

/// The file as written (all fields optional).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// etcd endpoints (`http://` or `https://`).
    #[serde(default)]
    pub endpoints: Vec<String>,
    /// Key prefix, e.g. `/cke/`.
    #[serde(default)]
    pub prefix: Option<String>,
    /// Request timeout, e.g. `2s`.
    #[serde(default)]
    pub timeout: Option<String>,
    /// Username for etcd authentication.
    #[serde(default)]
    pub username: Option<String>,
    /// Password for etcd authentication.
    #[serde(default)]
    pub password: Option<String>,
    /// Path of a PEM CA bundle for https endpoints.
    #[serde(default, rename = "tls-ca-file")]
    pub tls_ca_file: Option<String>,
    /// Inline PEM CA bundle.
    #[serde(default, rename = "tls-ca")]
    pub tls_ca: Option<String>,
    /// Path of a client certificate.
    #[serde(default, rename = "tls-cert-file")]
    pub tls_cert_file: Option<String>,
    /// Inline client certificate.
    #[serde(default, rename = "tls-cert")]
    pub tls_cert: Option<String>,
    /// Path of the client certificate's key.
    #[serde(default, rename = "tls-key-file")]
    pub tls_key_file: Option<String>,
    /// Inline client key.
    #[serde(default, rename = "tls-key")]
    pub tls_key: Option<String>,
}

/// TLS material for the management etcd.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsMaterial {
    /// PEM CA bundle.
    pub ca: Option<String>,
    /// PEM client certificate and key.
    pub identity: Option<(String, String)>,
}

/// The validated configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// etcd endpoints.
    pub endpoints: Vec<String>,
    /// Key prefix, always ending in `/`.
    pub prefix: String,
    /// Request timeout.
    pub timeout: Duration,
    /// Username and password.
    pub auth: Option<(String, String)>,
    /// TLS, when any endpoint is https or client certificates are given.
    pub tls: Option<TlsMaterial>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            endpoints: vec![DEFAULT_ENDPOINT.to_string()],
            prefix: DEFAULT_PREFIX.to_string(),
            timeout: DEFAULT_TIMEOUT,
            auth: None,
            tls: None,
        }
    }
}

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {error}")]
    Read {
        /// File path.
        path: PathBuf,
        /// I/O error.
        error: std::io::Error,
    },
    /// The file is not valid YAML of the expected shape.
    #[error("config file {path}: {error}")]
    Parse {
        /// File path.
        path: PathBuf,
        /// Parse error (names the field).
        error: serde_yaml::Error,
    },
    /// A field has an invalid value.
    #[error("config file {path}: {field}: {reason}")]
    Invalid {
        /// File path.
        path: PathBuf,
        /// Field name.
        field: &'static str,
        /// Why.
        reason: String,
    },
}

impl Config {
    /// Loads `path`. When `path` is the default path and the file does not exist, the defaults
    /// (`http://127.0.0.1:2379`, `/cke/`) are used, as CKE does.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && path == Path::new(DEFAULT_CONFIG_PATH) => {
                return Ok(Config::default())
            }
            Err(e) => {
                return Err(ConfigError::Read {
                    path: path.to_path_buf(),
                    error: e,
                })
            }
        };
        Self::parse(&text, path)
    }

    /// Parses and validates the text of a config file; `path` is used in messages and to resolve
    /// nothing else.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let raw: RawConfig = if text.trim().is_empty() {
            RawConfig::default()
        } else {
            serde_yaml::from_str(text).map_err(|e| ConfigError::Parse {
                path: path.to_path_buf(),
                error: e,
            })?
        };
        raw.validate(path)
    }
}

impl RawConfig {
    /// Applies defaults and checks values.
    pub fn validate(self, path: &Path) -> Result<Config, ConfigError> {
        let invalid = |field: &'static str, reason: String| ConfigError::Invalid {
            path: path.to_path_buf(),
            field,
            reason,
        };
        let endpoints = if self.endpoints.is_empty() {
            vec![DEFAULT_ENDPOINT.to_string()]
        } else {
            self.endpoints
        };
        for ep in &endpoints {
            if !(ep.starts_with("http://") || ep.starts_with("https://")) {
                return Err(invalid(
                    "endpoints",
                    format!("{ep:?} must start with http:// or https://"),
                ));
            }
        }
        let mut prefix = self.prefix.unwrap_or_else(|| DEFAULT_PREFIX.to_string());
        if !prefix.starts_with('/') {
            return Err(invalid("prefix", format!("{prefix:?} must start with /")));
        }
        if !prefix.ends_with('/') {
            prefix.push('/');
        }
        let timeout = match self.timeout {
            None => DEFAULT_TIMEOUT,
            Some(t) => {
                let d = humantime::parse_duration(&t).map_err(|e| invalid("timeout", format!("{t:?}: {e}")))?;
                if d.is_zero() {
                    return Err(invalid("timeout", "must be positive".into()));
                }
                d
            }
        };
        let auth = match (self.username, self.password) {
            (Some(u), p) if !u.is_empty() => Some((u, p.unwrap_or_default())),
            (_, Some(p)) if !p.is_empty() => return Err(invalid("password", "is set without username".into())),
            _ => None,
        };
        let read = |field: &'static str,
                    file: Option<String>,
                    inline: Option<String>|
         -> Result<Option<String>, ConfigError> {
            match (file, inline) {
                (Some(f), _) if !f.is_empty() => std::fs::read_to_string(&f)
                    .map(Some)
                    .map_err(|e| invalid(field, format!("cannot read {f}: {e}"))),
                (_, Some(i)) if !i.is_empty() => Ok(Some(i)),
                _ => Ok(None),
            }
        };
        let ca = read("tls-ca-file", self.tls_ca_file, self.tls_ca)?;
        let cert = read("tls-cert-file", self.tls_cert_file, self.tls_cert)?;
        let key = read("tls-key-file", self.tls_key_file, self.tls_key)?;
        let identity = match (cert, key) {
            (Some(c), Some(k)) => Some((c, k)),
            (None, None) => None,
            (Some(_), None) => return Err(invalid("tls-key-file", "is required with tls-cert-file".into())),
            (None, Some(_)) => return Err(invalid("tls-cert-file", "is required with tls-key-file".into())),
        };
        let https = endpoints.iter().any(|e| e.starts_with("https://"));
        let tls = if https || ca.is_some() || identity.is_some() {
            Some(TlsMaterial { ca, identity })
        } else {
            None
        };
        Ok(Config {
            endpoints,
            prefix,
            timeout,
            auth,
            tls,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("test.yml"))
    }

    #[test]
    fn defaults() {
        let c = parse("").unwrap();
        assert_eq!(c, Config::default());
        let c = parse("endpoints: [\"http://10.0.0.1:2379\"]\nprefix: /x\ntimeout: 5s\n").unwrap();
        assert_eq!(c.prefix, "/x/");
        assert_eq!(c.timeout, Duration::from_secs(5));
    }

    #[test]
    fn errors_name_the_field() {
        for (text, field) in [
            ("endpoints: [\"10.0.0.1:2379\"]", "endpoints"),
            ("prefix: cke/", "prefix"),
            ("timeout: soon", "timeout"),
            ("password: x", "password"),
            ("tls-cert-file: /nonexistent/cert.pem", "tls-cert-file"),
        ] {
            let e = parse(text).unwrap_err().to_string();
            assert!(e.contains(field), "{text}: {e}");
        }
        let e = parse("endpoint: x").unwrap_err().to_string();
        assert!(e.contains("unknown field `endpoint`"), "{e}");
    }
}
