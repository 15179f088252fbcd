//! The Vault client: vaultrs's typed requests behind a thin layer that keeps what cke needs of a
//! client: reads retried on transport errors and 5xx, writes retried only when they were never
//! sent, one AppRole re-login on a 403, errors that name the endpoint, method and path, and answers
//! that are not Vault's (a proxy's page) taken as errors, never as "nothing stored".
//!
//! Every request is a vaultrs request type (`vaultrs::api::*::requests::*`): its path and method
//! come from vaultrs, so no Vault URL is built here. Where vaultrs lacks an endpoint or misreads
//! OpenBao, the request still goes through vaultrs's client (its middleware and rustify, the
//! generic request path vaultrs itself uses); each such place says why.

use std::future::Future;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use rustify::endpoint::Endpoint;
use rustify::enums::{RequestMethod, RequestType, ResponseType};
use serde_json::Value;
use vaultrs::error::ClientError;

use crate::storage::VaultConfig;

/// Errors from Vault; every variant names the endpoint and the path.
#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    /// Vault could not be reached, or the connection broke before its answer was read.
    #[error("vault at {endpoint}: {method} {path}: {reason}")]
    Unreachable {
        /// Vault address.
        endpoint: String,
        /// HTTP method.
        method: String,
        /// API path.
        path: String,
        /// What the transport said.
        reason: String,
        /// True when no connection was made, so the request surely never reached Vault.
        connect: bool,
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
        /// Vault's `errors`, or the head of an answer that is not Vault's.
        message: String,
    },
    /// The answer is not what the API documents (not JSON, fields missing, not Vault's at all).
    #[error("vault at {endpoint}: {path}: unexpected response: {reason}")]
    Unexpected {
        /// Vault address.
        endpoint: String,
        /// API path.
        path: String,
        /// What is wrong with it.
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
        matches!(self, VaultError::Unreachable { connect: true, .. })
    }

    /// The kind, as the `kind` label of `cke_vault_request_errors_total`.
    fn kind(&self) -> &'static str {
        match self {
            VaultError::Unreachable { .. } => "unreachable",
            VaultError::Status { .. } => "status",
            VaultError::Unexpected { .. } => "unexpected",
            VaultError::Config(_) => "config",
        }
    }
}

#[derive(Clone)]
struct AppRole {
    role_id: String,
    secret_id: String,
}

/// Leaves the secret id out, so that no `{:?}` can log it.
impl std::fmt::Debug for AppRole {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppRole")
            .field("role_id", &self.role_id)
            .field("secret_id", &"(hidden)")
            .finish()
    }
}

/// The mount of the AppRole auth method (CKE's layout).
pub(crate) const APPROLE_MOUNT: &str = "approle";

/// A Vault client. Cheap to clone; clones share the token.
#[derive(Clone)]
pub struct VaultClient {
    endpoint: String,
    address: url::Url,
    http: reqwest::Client,
    /// vaultrs's client carrying the current token; swapped whole on login.
    inner: Arc<RwLock<Arc<vaultrs::client::VaultClient>>>,
    approle: Option<AppRole>,
    retries: u32,
}

impl std::fmt::Debug for VaultClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VaultClient").field("endpoint", &self.endpoint).finish()
    }
}

/// The request's name for metrics: vaultrs's request type without its module path and `Request`
/// suffix (`SignCertificate`, `GetSecret`); a bounded set.
fn request_name<E>() -> &'static str {
    let full = std::any::type_name::<E>();
    let last = full.rsplit("::").next().unwrap_or(full);
    last.strip_suffix("Request").unwrap_or(last)
}

fn method_name(m: &RequestMethod) -> &'static str {
    match m {
        RequestMethod::CONNECT => "CONNECT",
        RequestMethod::DELETE => "DELETE",
        RequestMethod::GET => "GET",
        RequestMethod::HEAD => "HEAD",
        RequestMethod::LIST => "LIST",
        RequestMethod::OPTIONS => "OPTIONS",
        RequestMethod::PATCH => "PATCH",
        RequestMethod::POST => "POST",
        RequestMethod::PUT => "PUT",
        RequestMethod::TRACE => "TRACE",
    }
}

/// A request's path for messages, as vaultrs has it (some of its paths start with `/`, one with
/// a tab).
fn path_of<E: Endpoint>(e: &E) -> String {
    e.path().trim().trim_start_matches('/').to_string()
}

/// The head of an answer, for messages.
fn head(text: &str) -> String {
    text.chars().take(200).collect()
}

/// Vault's error body: `{"errors": [...]}`.
fn vault_errors(content: &str) -> Option<Vec<String>> {
    serde_json::from_str::<vaultrs::api::EndpointError>(content)
        .ok()
        .map(|e| e.errors)
}

/// A GET of any path, answered as raw JSON. vaultrs has no untyped read; this one serves
/// [`VaultClient::read`] (diagnostics and tests look at what is stored as Vault returns it).
/// vault-path-exception: the caller names the path.
struct RawRead {
    path: String,
}

impl Endpoint for RawRead {
    type Response = Value;
    const REQUEST_BODY_TYPE: RequestType = RequestType::JSON;
    const RESPONSE_BODY_TYPE: ResponseType = ResponseType::JSON;

    fn path(&self) -> String {
        self.path.clone()
    }

    fn method(&self) -> RequestMethod {
        RequestMethod::GET
    }
}

/// vaultrs's middleware (API version, token, `X-Vault-Request`) plus the form content type.
struct FormBody<'a>(&'a vaultrs::api::EndpointMiddleware);

impl rustify::endpoint::MiddleWare for FormBody<'_> {
    fn request<E: Endpoint>(
        &self,
        endpoint: &E,
        req: &mut http::Request<Vec<u8>>,
    ) -> Result<(), rustify::errors::ClientError> {
        self.0.request(endpoint, req)?;
        req.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/x-www-form-urlencoded"),
        );
        Ok(())
    }

    fn response<E: Endpoint>(
        &self,
        endpoint: &E,
        resp: &mut http::Response<Vec<u8>>,
    ) -> Result<(), rustify::errors::ClientError> {
        self.0.response(endpoint, resp)
    }
}

impl VaultClient {
    fn build(endpoint: &str, ca_cert: &str) -> Result<(url::Url, reqwest::Client), VaultError> {
        if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
            return Err(VaultError::Config(format!(
                "endpoint {endpoint:?} must start with http:// or https://"
            )));
        }
        let address = url::Url::parse(endpoint)
            .map_err(|e| VaultError::Config(format!("endpoint {endpoint:?} is not a URL: {e}")))?;
        let mut b = crate::infra::http_client_builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(30));
        if endpoint.starts_with("http://") {
            // No TLS: skip loading the platform's roots (as vaultrs does for http addresses).
            b = b.tls_certs_only(Vec::new());
        } else if !ca_cert.trim().is_empty() {
            let certs = reqwest::Certificate::from_pem_bundle(ca_cert.as_bytes())
                .map_err(|e| VaultError::Config(format!("ca-cert is not a PEM certificate: {e}")))?;
            if certs.is_empty() {
                return Err(VaultError::Config("ca-cert holds no PEM certificate".into()));
            }
            b = b.tls_certs_merge(certs);
        }
        let http = b.build().map_err(|e| VaultError::Config(e.to_string()))?;
        Ok((address, http))
    }

    /// vaultrs's client for `token`. Built by hand rather than with `VaultClient::new`, which reads
    /// CA certificates from files only and defaults settings from `VAULT_*` variables; cke's CA
    /// comes from the `vault` key and nothing may change behind its back.
    fn vaultrs_client(
        endpoint: &str,
        address: &url::Url,
        http: &reqwest::Client,
        token: &str,
    ) -> Arc<vaultrs::client::VaultClient> {
        let settings = vaultrs::client::VaultClientSettings {
            address: address.clone(),
            ca_certs: vec![],
            identity: None,
            timeout: Some(Duration::from_secs(30)),
            token: token.to_string(),
            verify: true,
            version: 1,
            wrapping: false,
            namespace: None,
            proxy: None,
        };
        Arc::new(vaultrs::client::VaultClient {
            http: rustify::clients::reqwest::Client::new(endpoint, http.clone()),
            middle: vaultrs::api::EndpointMiddleware {
                token: token.to_string(),
                version: "v1".into(),
                wrap: None,
                namespace: None,
            },
            settings,
        })
    }

    /// Uses `token` from now on.
    fn set_token(&self, token: &str) {
        *self.inner.write().unwrap() = Self::vaultrs_client(&self.endpoint, &self.address, &self.http, token);
    }

    /// A client using a fixed token (e.g. `VAULT_TOKEN` for `vault init`).
    pub fn with_token(endpoint: &str, ca_cert: &str, token: &str) -> Result<Self, VaultError> {
        let endpoint = endpoint.trim_end_matches('/').to_string();
        let (address, http) = Self::build(&endpoint, ca_cert)?;
        let inner = Self::vaultrs_client(&endpoint, &address, &http, token);
        Ok(VaultClient {
            endpoint,
            address,
            http,
            inner: Arc::new(RwLock::new(inner)),
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
        self.current().middle.token.clone()
    }

    fn current(&self) -> Arc<vaultrs::client::VaultClient> {
        self.inner.read().unwrap().clone()
    }

    /// AppRole login; returns the token's lease duration. vaultrs's login returns the token without
    /// using it: the client carrying it replaces the current one here.
    pub async fn login(&self) -> Result<Duration, VaultError> {
        let Some(a) = &self.approle else {
            return Err(VaultError::Config("no AppRole credentials to log in with".into()));
        };
        let make = || {
            vaultrs::api::auth::approle::requests::LoginWithApproleRequest::builder()
                .mount(APPROLE_MOUNT)
                .role_id(a.role_id.clone())
                .secret_id(a.secret_id.clone())
                .build()
                .expect("every field is set")
        };
        // Sent once: a login is not worth retrying behind the caller's back (it retries itself).
        let auth = self
            .attempt(&make(), make(), |c, e| async move { vaultrs::api::auth(&*c, e).await })
            .await?;
        self.set_token(&auth.client_token);
        Ok(Duration::from_secs(auth.lease_duration))
    }

    /// Renews the token; returns the new lease duration.
    pub async fn renew(&self) -> Result<Duration, VaultError> {
        let make = || {
            vaultrs::api::token::requests::RenewTokenSelfRequest::builder()
                .build()
                .expect("no field is required")
        };
        let auth = self
            .attempt(&make(), make(), |c, e| async move { vaultrs::api::auth(&*c, e).await })
            .await?;
        Ok(Duration::from_secs(auth.lease_duration))
    }

    /// The current token's remaining TTL and policies (`auth/token/lookup-self`).
    pub async fn lookup(&self) -> Result<vaultrs::api::token::responses::LookupTokenResponse, VaultError> {
        self.result(|| {
            vaultrs::api::token::requests::LookupTokenSelfRequest::builder()
                .build()
                .expect("no field is required")
        })
        .await
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

    /// An [`VaultError::Unexpected`] naming the path of `request`.
    pub(crate) fn unexpected_for<E: Endpoint>(&self, request: &E, reason: &str) -> VaultError {
        self.unexpected(&path_of(request), reason)
    }

    /// vaultrs's error as ours, naming the endpoint, method and path.
    fn error(&self, method: &RequestMethod, path: &str, e: ClientError) -> VaultError {
        use rustify::errors::ClientError as Rest;
        let method = method_name(method).to_string();
        let status = |status: u16, message: String| VaultError::Status {
            endpoint: self.endpoint.clone(),
            method: method.clone(),
            path: path.into(),
            status,
            message,
        };
        let unreachable = |reason: String, connect: bool| VaultError::Unreachable {
            endpoint: self.endpoint.clone(),
            method: method.clone(),
            path: path.into(),
            reason,
            connect,
        };
        match e {
            ClientError::APIError { code, errors } => status(code, errors.join("; ")),
            ClientError::RestClientError { source } => match source {
                Rest::ServerResponseError { code, content } => {
                    let content = content.unwrap_or_default();
                    match vault_errors(&content) {
                        Some(errors) => status(code, errors.join("; ")),
                        // A 5xx from a proxy is worth a retry like Vault's own; any other status
                        // that is not Vault's (a 404 page) must not read as "not stored".
                        None if code >= 500 => status(code, head(&content)),
                        None => self.unexpected(
                            path,
                            &format!("HTTP {code} with an answer that is not Vault's: {}", head(&content)),
                        ),
                    }
                }
                Rest::RequestError { source, .. } => {
                    let connect = source.downcast_ref::<reqwest::Error>().is_some_and(|e| e.is_connect());
                    unreachable(crate::error::error_chain(source.as_ref()), connect)
                }
                Rest::ResponseError { source } => unreachable(crate::error::error_chain(source.as_ref()), false),
                Rest::ResponseParseError { source, content } => {
                    let content = content.unwrap_or_default();
                    if serde_json::from_str::<Value>(&content).is_err() {
                        self.unexpected(path, &format!("the answer is not JSON: {}", head(&content)))
                    } else {
                        self.unexpected(path, &format!("the answer does not read as documented: {source}"))
                    }
                }
                other => self.unexpected(path, &crate::error::error_chain(&other)),
            },
            ClientError::ResponseEmptyError | ClientError::ResponseDataEmptyError => {
                self.unexpected(path, "the answer carries no data")
            }
            other => self.unexpected(path, &crate::error::error_chain(&other)),
        }
    }

    /// One attempt of `endpoint` through `run` (one of vaultrs's `exec_*`), counted in the metrics.
    /// `probe` is the same request, for its method and path.
    async fn attempt<E, T, F, Fut>(&self, probe: &E, endpoint: E, run: F) -> Result<T, VaultError>
    where
        E: Endpoint,
        F: FnOnce(Arc<vaultrs::client::VaultClient>, E) -> Fut,
        Fut: Future<Output = Result<T, ClientError>>,
    {
        let name = request_name::<E>();
        crate::metrics::process().vault_request(name);
        let r = run(self.current(), endpoint)
            .await
            .map_err(|e| self.error(&probe.method(), &path_of(probe), e));
        if let Err(e) = &r {
            crate::metrics::process().vault_request_error(name, e.kind());
        }
        r
    }

    /// A request with bounded retries: transport errors and 5xx are retried with backoff for
    /// reads; writes only when the connection was never made; a 403 with AppRole credentials
    /// triggers one re-login and a retry. `make` builds the request afresh for each attempt.
    async fn call<E, T, F, Fut>(&self, make: impl Fn() -> E, run: F) -> Result<T, VaultError>
    where
        E: Endpoint,
        F: Fn(Arc<vaultrs::client::VaultClient>, E) -> Fut,
        Fut: Future<Output = Result<T, ClientError>>,
    {
        let probe = make();
        let read = matches!(probe.method(), RequestMethod::GET | RequestMethod::LIST);
        let mut relogged = false;
        let mut attempt = 0;
        if self.approle.is_some() && self.current().middle.token.is_empty() {
            // Not logged in yet (Vault was down or sealed when the client was made: `connect_later`).
            relogged = true;
            self.login().await?;
        }
        loop {
            match self.attempt(&probe, make(), &run).await {
                Ok(v) => return Ok(v),
                Err(e) if e.status() == Some(403) && self.approle.is_some() && !relogged => {
                    tracing::info!(path = path_of(&probe), "vault refused the token; logging in again");
                    relogged = true;
                    self.login().await?;
                }
                // A write is retried only when it surely did not reach Vault (the connection was
                // never made): a retried `root/generate` or `sign` would make a second CA or
                // certificate. Reads are retried on any transport error and on 5xx.
                Err(e)
                    if attempt < self.retries
                        && (if read {
                            matches!(e, VaultError::Unreachable { .. }) || e.status().is_some_and(|s| s >= 500)
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

    /// A request whose answer is Vault's usual envelope; returns its `data`.
    pub(crate) async fn result<E: Endpoint>(&self, make: impl Fn() -> E) -> Result<E::Response, VaultError> {
        self.call(make, |c, e| async move { vaultrs::api::exec_with_result(&*c, e).await })
            .await
    }

    /// Like [`Self::result`], `None` for 404.
    pub(crate) async fn result_opt<E: Endpoint>(
        &self,
        make: impl Fn() -> E,
    ) -> Result<Option<E::Response>, VaultError> {
        match self.result(make).await {
            Ok(v) => Ok(Some(v)),
            Err(e) if e.status() == Some(404) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// A request whose answer is parsed whole (vaultrs's `exec_with_no_result`, as for KV v1
    /// reads); `None` for 404.
    pub(crate) async fn whole_opt<E: Endpoint>(&self, make: impl Fn() -> E) -> Result<Option<E::Response>, VaultError> {
        match self
            .call(
                make,
                |c, e| async move { vaultrs::api::exec_with_no_result(&*c, e).await },
            )
            .await
        {
            Ok(v) => Ok(Some(v)),
            Err(e) if e.status() == Some(404) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// A write with no answer expected (204, or Vault's envelope). Sent through vaultrs's
    /// middleware and client as vaultrs's `exec_with_empty` does, plus one check that vaultrs
    /// skips: a body that is not JSON is no Vault answer (a proxy's page), so the write is
    /// reported failed rather than taken as done.
    pub(crate) async fn empty<E: Endpoint>(&self, make: impl Fn() -> E) -> Result<(), VaultError> {
        self.call(make, |c, e| async move {
            let r = e
                .with_middleware(&c.middle)
                .exec(&c.http)
                .await
                .map_err(|source| ClientError::RestClientError { source })?;
            written(&r.raw())
        })
        .await
    }

    /// Like [`Self::empty`], with the body sent form-encoded (`Content-Type:
    /// application/x-www-form-urlencoded`; the endpoint's body must be encoded so). Vault and OpenBao
    /// parse such a body as a form, which their JSON complexity limits do not apply to (OpenBao
    /// refuses a JSON body of more than 1000 strings by default: a KV v1 secret of 500 fields).
    pub(crate) async fn empty_form<E: Endpoint>(&self, make: impl Fn() -> E) -> Result<(), VaultError> {
        self.call(make, |c, e| async move {
            let r = e
                .with_middleware(&FormBody(&c.middle))
                .exec(&c.http)
                .await
                .map_err(|source| ClientError::RestClientError { source })?;
            written(&r.raw())
        })
        .await
    }

    /// A raw read of `path` (`None` for 404), the JSON as Vault answers it, for diagnostics and
    /// tests; cke's own requests are typed.
    pub async fn read(&self, path: &str) -> Result<Option<Value>, VaultError> {
        self.whole_opt(|| RawRead { path: path.to_string() }).await
    }

    /// Whether Vault serves requests (`sys/health`, which needs no token): sent once, without logging
    /// in first. Sealed is an HTTP 503, not initialised a 501.
    /// Standbys that forward requests count as serving (`standbyok`). Only the status is read:
    /// vaultrs's `ReadHealthResponse` wants fields that not every server sends.
    pub async fn health(&self) -> Result<(), VaultError> {
        let make = || {
            vaultrs::api::sys::requests::ReadHealthRequest::builder()
                .standbyok(true)
                .perfstandbyok(true)
                .build()
                .expect("no field is required")
        };
        self.attempt(&make(), make(), |c, e| async move {
            e.with_middleware(&c.middle)
                .exec(&c.http)
                .await
                .map(|_| ())
                .map_err(|source| ClientError::RestClientError { source })
        })
        .await
    }

    /// A client that does not retry (fail fast, e.g. for CLI checks).
    pub fn without_retries(mut self) -> Self {
        self.retries = 0;
        self
    }
}

/// A write's answer: empty, or JSON (a body that is neither is an error naming it).
fn written(body: &[u8]) -> Result<(), ClientError> {
    if body.iter().all(u8::is_ascii_whitespace) || serde_json::from_slice::<Value>(body).is_ok() {
        Ok(())
    } else {
        Err(ClientError::RestClientError {
            source: rustify::errors::ClientError::ResponseParseError {
                source: anyhow::anyhow!("a write answered with a body that is not JSON"),
                content: Some(String::from_utf8_lossy(body).into_owned()),
            },
        })
    }
}
