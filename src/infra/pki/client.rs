//! The HTTP client: requests with bounded retries, AppRole login and token renewal.

use std::sync::Arc;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::Value;
use tokio::sync::RwLock;

use crate::storage::VaultConfig;

/// Errors from Vault; every variant names the path.
#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    /// Vault could not be reached.
    #[error("vault at {endpoint}: {method} {path}: {error}")]
    Unreachable {
        /// Vault address.
        endpoint: String,
        /// HTTP method.
        method: String,
        /// API path.
        path: String,
        /// Transport error.
        error: reqwest::Error,
    },
    /// Vault answered with an error status.
    #[error("vault at {endpoint}: {method} {path}: HTTP {status}: {message}")]
    Status {
        /// Vault address.
        endpoint: String,
        /// HTTP method.
        method: String,
        /// API path.
        path: String,
        /// HTTP status.
        status: u16,
        /// Vault's `errors`.
        message: String,
    },
    /// The answer is not what the API documents.
    #[error("vault at {endpoint}: {path}: unexpected response: {reason}")]
    Unexpected {
        /// Vault address.
        endpoint: String,
        /// API path.
        path: String,
        /// What is missing.
        reason: String,
    },
    /// The client could not be configured (bad CA certificate, bad address).
    #[error("vault client: {0}")]
    Config(String),
}

impl VaultError {
    /// HTTP status, when Vault answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            VaultError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// True when the request surely never reached Vault (no connection could be made).
    pub fn is_connect(&self) -> bool {
        matches!(self, VaultError::Unreachable { error, .. } if error.is_connect())
    }
}

#[derive(Debug, Clone)]
struct AppRole {
    role_id: String,
    secret_id: String,
}

/// A Vault client. Cheap to clone; clones share the token.
#[derive(Clone)]
pub struct VaultClient {
    http: reqwest::Client,
    endpoint: String,
    token: Arc<RwLock<String>>,
    approle: Option<AppRole>,
    retries: u32,
}

impl std::fmt::Debug for VaultClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VaultClient").field("endpoint", &self.endpoint).finish()
    }
}

impl VaultClient {
    fn build(endpoint: &str, ca_cert: &str) -> Result<reqwest::Client, VaultError> {
        if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
            return Err(VaultError::Config(format!(
                "endpoint {endpoint:?} must start with http:// or https://"
            )));
        }
        let mut b = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(30));
        if !ca_cert.trim().is_empty() {
            let cert = reqwest::Certificate::from_pem(ca_cert.as_bytes())
                .map_err(|e| VaultError::Config(format!("ca-cert is not a PEM certificate: {e}")))?;
            b = b.add_root_certificate(cert);
        }
        b.build().map_err(|e| VaultError::Config(e.to_string()))
    }

    /// A client using a fixed token (e.g. `VAULT_TOKEN` for `vault init`).
    pub fn with_token(endpoint: &str, ca_cert: &str, token: &str) -> Result<Self, VaultError> {
        Ok(VaultClient {
            http: Self::build(endpoint, ca_cert)?,
            endpoint: endpoint.trim_end_matches('/').to_string(),
            token: Arc::new(RwLock::new(token.to_string())),
            approle: None,
            retries: 3,
        })
    }

    /// Logs in with the AppRole of the `vault` key. The client logs in again by itself when its
    /// token is revoked or expires (a 403), so callers never see a stale token.
    pub async fn connect(config: &VaultConfig) -> Result<Self, VaultError> {
        let mut c = Self::with_token(&config.endpoint, &config.ca_cert, "")?;
        c.approle = Some(AppRole {
            role_id: config.role_id.clone(),
            secret_id: config.secret_id.clone(),
        });
        c.login().await?;
        Ok(c)
    }

    /// A client with the AppRole of the `vault` key that logs in on its first request (and again
    /// whenever its token is refused), for a daemon that must start while Vault is down or sealed.
    pub fn connect_later(config: &VaultConfig) -> Result<Self, VaultError> {
        let mut c = Self::with_token(&config.endpoint, &config.ca_cert, "")?;
        c.approle = Some(AppRole {
            role_id: config.role_id.clone(),
            secret_id: config.secret_id.clone(),
        });
        Ok(c)
    }

    /// The Vault address.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The current token (for tests and diagnostics).
    pub async fn token(&self) -> String {
        self.token.read().await.clone()
    }

    /// AppRole login; returns the token's lease duration.
    pub async fn login(&self) -> Result<Duration, VaultError> {
        let Some(a) = &self.approle else {
            return Err(VaultError::Config("no AppRole credentials to log in with".into()));
        };
        let body = serde_json::json!({ "role_id": a.role_id, "secret_id": a.secret_id });
        let v = self
            .send_once(Method::POST, "auth/approle/login", Some(&body), false)
            .await?;
        let token = v["auth"]["client_token"]
            .as_str()
            .ok_or_else(|| self.unexpected("auth/approle/login", "no auth.client_token"))?;
        *self.token.write().await = token.to_string();
        Ok(Duration::from_secs(
            v["auth"]["lease_duration"].as_u64().unwrap_or(3600),
        ))
    }

    /// Renews the token; returns the new lease duration.
    pub async fn renew(&self) -> Result<Duration, VaultError> {
        let v = self
            .send_once(
                Method::POST,
                "auth/token/renew-self",
                Some(&serde_json::json!({})),
                true,
            )
            .await?;
        Ok(Duration::from_secs(
            v["auth"]["lease_duration"].as_u64().unwrap_or(3600),
        ))
    }

    /// Renews the token at half its lease, logging in again when renewal fails. Runs until aborted.
    pub fn spawn_renewal(&self) -> tokio::task::JoinHandle<()> {
        let c = self.clone();
        tokio::spawn(async move {
            let mut wait = Duration::from_secs(60);
            loop {
                tokio::time::sleep(wait).await;
                wait = match c.renew().await {
                    Ok(lease) => (lease / 2).max(Duration::from_secs(5)),
                    Err(e) => {
                        tracing::warn!(error = %e, "vault token renewal failed; logging in again");
                        match c.login().await {
                            Ok(lease) => (lease / 2).max(Duration::from_secs(5)),
                            Err(e) => {
                                tracing::warn!(error = %e, "vault login failed");
                                Duration::from_secs(10)
                            }
                        }
                    }
                };
            }
        })
    }

    fn unexpected(&self, path: &str, reason: &str) -> VaultError {
        VaultError::Unexpected {
            endpoint: self.endpoint.clone(),
            path: path.into(),
            reason: reason.into(),
        }
    }

    async fn send_once(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        auth: bool,
    ) -> Result<Value, VaultError> {
        let url = format!("{}/v1/{}", self.endpoint, path.trim_start_matches('/'));
        let mut req = self.http.request(method.clone(), &url);
        if auth {
            req = req.header("X-Vault-Token", self.token.read().await.clone());
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req.send().await.map_err(|e| VaultError::Unreachable {
            endpoint: self.endpoint.clone(),
            method: method.to_string(),
            path: path.into(),
            error: e,
        })?;
        let status = resp.status();
        // A body that cannot be read, or a success that is not JSON (a proxy's page, say), is an
        // error: read as "nothing there", it would let a caller overwrite what is stored.
        let text = resp.text().await.map_err(|e| VaultError::Unreachable {
            endpoint: self.endpoint.clone(),
            method: method.to_string(),
            path: path.into(),
            error: e,
        })?;
        if status == StatusCode::NO_CONTENT || (status.is_success() && text.trim().is_empty()) {
            return Ok(Value::Null);
        }
        let v: Value = match serde_json::from_str(&text) {
            Ok(v) => v,
            Err(_) if status.is_success() => {
                let head: String = text.chars().take(200).collect();
                return Err(self.unexpected(path, &format!("the answer is not JSON: {head}")));
            }
            Err(_) => Value::String(text.clone()),
        };
        if !status.is_success() {
            let message = match v.get("errors") {
                Some(Value::Array(a)) => a
                    .iter()
                    .map(|e| e.as_str().unwrap_or_default().to_string())
                    .collect::<Vec<_>>()
                    .join("; "),
                _ => text.chars().take(300).collect(),
            };
            return Err(VaultError::Status {
                endpoint: self.endpoint.clone(),
                method: method.to_string(),
                path: path.into(),
                status: status.as_u16(),
                message,
            });
        }
        Ok(v)
    }

    /// An authenticated request with bounded retries: transport errors and 5xx are retried with
    /// backoff; a 403 with AppRole credentials triggers one re-login and a retry.
    pub async fn request(&self, method: Method, path: &str, body: Option<&Value>) -> Result<Value, VaultError> {
        let mut relogged = false;
        let mut attempt = 0;
        if self.approle.is_some() && self.token.read().await.is_empty() {
            // Not logged in yet (Vault was down when the client was made).
            relogged = true;
            self.login().await?;
        }
        loop {
            match self.send_once(method.clone(), path, body, true).await {
                Ok(v) => return Ok(v),
                Err(e) if e.status() == Some(403) && self.approle.is_some() && !relogged => {
                    tracing::info!(path, "vault refused the token; logging in again");
                    relogged = true;
                    self.login().await?;
                }
                // A write is retried only when it surely did not reach Vault (the connection was
                // never made): a retried `root/generate` or `sign` would make a second CA or
                // certificate. Reads are retried on any transport error and on 5xx.
                Err(e)
                    if attempt < self.retries
                        && !matches!(e, VaultError::Config(_))
                        && (if method == Method::GET {
                            e.status().is_none_or(|s| s >= 500)
                        } else {
                            e.is_connect()
                        }) =>
                {
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(200 * (1 << attempt))).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// GET; `None` for 404.
    pub async fn read(&self, path: &str) -> Result<Option<Value>, VaultError> {
        match self.request(Method::GET, path, None).await {
            Ok(v) => Ok(Some(v)),
            Err(e) if e.status() == Some(404) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// POST (Vault's write).
    pub async fn write(&self, path: &str, body: &Value) -> Result<Value, VaultError> {
        self.request(Method::POST, path, Some(body)).await
    }

    /// A client that does not retry (fail fast, e.g. for CLI checks).
    pub fn without_retries(mut self) -> Self {
        self.retries = 0;
        self
    }
}
