//! The GraphQL client of sabakan's `searchMachines`: CKE's exact query, sent as CKE sends it
//! (`POST <url>`, JSON body `{"query", "variables"}`, `Content-Type: application/json`), on reqwest.

use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;

use super::machine::{Machine, QueryVariables};

/// The query CKE sends (`sabakan/query.go`), byte for byte.
pub const GRAPHQL_QUERY: &str = r#"
query ckeSearch($having: MachineParams = null,
                $notHaving: MachineParams = {
                  roles: ["boot"]
                  states: [RETIRED]
                }) {
  searchMachines(having: $having, notHaving: $notHaving) {
    spec {
      serial
      labels {
        name
        value
      }
      rack
      indexInRack
      role
      ipv4
      registerDate
      retireDate
      bmc {
        bmcType
      }
    }
    status {
      state
      duration
    }
  }
}
"#;

/// How long one query may take.
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(30);

/// A failed query.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// The request could not be sent, or no answer came.
    #[error("sabakan at {url} cannot be reached")]
    Http {
        /// The GraphQL endpoint.
        url: String,
        /// The transport error.
        #[source]
        source: reqwest::Error,
    },
    /// Sabakan answered with another status than 200.
    #[error("sabakan at {url} returns {status}: {body}")]
    Status {
        /// The GraphQL endpoint.
        url: String,
        /// The HTTP status.
        status: u16,
        /// The body, as sent.
        body: String,
    },
    /// The answer is not a GraphQL result of the query.
    #[error("sabakan at {url} answered something that is not the query's result")]
    Decode {
        /// The GraphQL endpoint.
        url: String,
        /// The decoding error.
        #[source]
        source: serde_json::Error,
    },
    /// Sabakan answered with GraphQL errors.
    #[error("sabakan at {url} returns error: {}", .messages.join("; "))]
    GraphQl {
        /// The GraphQL endpoint.
        url: String,
        /// The errors' messages.
        messages: Vec<String>,
    },
}

/// Searches sabakan's machines (a trait so that the integrator can be tested without a server).
#[async_trait]
pub trait MachineSearch: Send + Sync {
    /// The machines matching `variables` (the query's defaults when `None`).
    async fn search(&self, url: &str, variables: Option<&QueryVariables>) -> Result<Vec<Machine>, QueryError>;
}

/// The real client.
#[derive(Debug, Clone)]
pub struct SabakanClient {
    http: reqwest::Client,
}

impl Default for SabakanClient {
    fn default() -> Self {
        SabakanClient::new()
    }
}

impl SabakanClient {
    /// A client with [`QUERY_TIMEOUT`].
    pub fn new() -> Self {
        SabakanClient {
            http: crate::infra::http_client_builder()
                .timeout(QUERY_TIMEOUT)
                .build()
                .expect("a reqwest client with a timeout builds"),
        }
    }
}

#[derive(Deserialize)]
struct GraphQlResult {
    #[serde(default)]
    data: Option<SearchData>,
    #[serde(default)]
    errors: Vec<GraphQlError>,
}

#[derive(Deserialize)]
struct SearchData {
    #[serde(rename = "searchMachines", default)]
    machines: Option<Vec<Machine>>,
}

#[derive(Deserialize)]
struct GraphQlError {
    message: String,
}

/// The request body: the variables are left out when `None`, so that the query's defaults apply.
pub fn request_body(variables: Option<&QueryVariables>) -> serde_json::Value {
    let mut body = serde_json::json!({ "query": GRAPHQL_QUERY });
    if let Some(v) = variables {
        body["variables"] = serde_json::to_value(v).expect("query variables serialize");
    }
    body
}

#[async_trait]
impl MachineSearch for SabakanClient {
    async fn search(&self, url: &str, variables: Option<&QueryVariables>) -> Result<Vec<Machine>, QueryError> {
        let http = |source| QueryError::Http {
            url: url.to_string(),
            source,
        };
        let resp = self
            .http
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(request_body(variables).to_string())
            .send()
            .await
            .map_err(http)?;
        let status = resp.status();
        let bytes = resp.bytes().await.map_err(http)?;
        if status != reqwest::StatusCode::OK {
            return Err(QueryError::Status {
                url: url.to_string(),
                status: status.as_u16(),
                body: String::from_utf8_lossy(&bytes).into_owned(),
            });
        }
        let result: GraphQlResult = serde_json::from_slice(&bytes).map_err(|source| QueryError::Decode {
            url: url.to_string(),
            source,
        })?;
        if !result.errors.is_empty() {
            return Err(QueryError::GraphQl {
                url: url.to_string(),
                messages: result.errors.into_iter().map(|e| e.message).collect(),
            });
        }
        Ok(result.data.and_then(|d| d.machines).unwrap_or_default())
    }
}
