//! Flags of the `rivers` binary (names follow CKE's rivers) and the validated configuration with all
//! defaults in one place. Pure: no I/O.

use std::time::Duration;

use super::RiversError;

/// Command-line flags of `rivers`. Durations use Go-like notation (`10s`, `500ms`, `1m30s`, `0`).
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "rivers",
    version,
    about = "A small TCP load balancer: spreads connections to --listen over healthy --upstreams"
)]
pub struct Args {
    /// Listen address and port (address:port), e.g. 127.0.0.1:16443.
    #[arg(long, default_value = "")]
    pub listen: String,
    /// Comma-separated upstream servers (addr1:port1,addr2:port2).
    #[arg(long, default_value = "")]
    pub upstreams: String,
    /// Timeout for draining open connections at shutdown ("0": wait without limit).
    #[arg(long, default_value = "10s")]
    pub shutdown_timeout: String,
    /// Timeout for dialling an upstream server.
    #[arg(long, default_value = "10s")]
    pub dial_timeout: String,
    /// Interval between TCP keep-alive probes on upstream connections ("0": no keep-alive).
    #[arg(long, default_value = "15s")]
    pub dial_keep_alive: String,
    /// Interval of the active health check (a TCP connect to every upstream).
    #[arg(long, default_value = "20s")]
    pub check_interval: String,
    /// Timeout of one health-check connect (default: the dial timeout).
    #[arg(long)]
    pub check_timeout: Option<String>,
    /// Most client connections served at once; further clients wait in the listen backlog.
    #[arg(long, default_value_t = 16384)]
    pub max_connections: usize,
    /// Address for the HTTP metrics and health listener (/metrics, /health); off when not given.
    #[arg(long)]
    pub metrics: Option<String>,
    /// Log level: error, warn, info or debug (CKE's critical and warning are accepted too).
    #[arg(long, default_value = "info", value_parser = parse_level)]
    pub loglevel: LogLevel,
    /// Log format on stderr: plain or json.
    #[arg(long, value_enum, default_value = "plain")]
    pub logformat: LogFormat,
}

/// Log level of the binary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogLevel {
    /// Errors only.
    Error,
    /// Warnings and errors.
    Warn,
    /// Upstream state changes, start and stop (default).
    Info,
    /// Also one line per proxied connection.
    Debug,
}

impl LogLevel {
    pub(crate) fn directive(self) -> &'static str {
        match self {
            LogLevel::Error => "error",
            LogLevel::Warn => "warn",
            LogLevel::Info => "info",
            LogLevel::Debug => "debug",
        }
    }
}

fn parse_level(s: &str) -> Result<LogLevel, String> {
    match s.to_ascii_lowercase().as_str() {
        "critical" | "error" => Ok(LogLevel::Error),
        "warning" | "warn" => Ok(LogLevel::Warn),
        "info" => Ok(LogLevel::Info),
        "debug" => Ok(LogLevel::Debug),
        _ => Err(format!("unknown log level {s:?} (use error, warn, info or debug)")),
    }
}

/// Log format of the binary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Plain,
    /// One JSON object per line.
    Json,
}

/// Validated configuration of a [`super::Server`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Address to accept client connections on.
    pub listen: String,
    /// Upstream servers as `host:port`, in the order given.
    pub upstreams: Vec<String>,
    /// How long shutdown waits for open connections; zero means without limit.
    pub shutdown_timeout: Duration,
    /// Timeout for dialling an upstream for a client.
    pub dial_timeout: Duration,
    /// TCP keep-alive idle time and probe interval on upstream sockets; zero disables keep-alive.
    pub dial_keep_alive: Duration,
    /// Interval of the active health check.
    pub check_interval: Duration,
    /// Timeout of one health-check connect.
    pub check_timeout: Duration,
    /// Most client connections served at once.
    pub max_connections: usize,
    /// Address of the metrics/health HTTP listener, if any.
    pub metrics: Option<String>,
}

impl Config {
    /// A configuration with CKE's defaults for the given listen address and upstreams (not yet
    /// validated; [`super::Server::bind`] validates).
    pub fn new(listen: impl Into<String>, upstreams: Vec<String>) -> Config {
        Config {
            listen: listen.into(),
            upstreams,
            shutdown_timeout: Duration::from_secs(10),
            dial_timeout: Duration::from_secs(10),
            dial_keep_alive: Duration::from_secs(15),
            check_interval: Duration::from_secs(20),
            check_timeout: Duration::from_secs(10),
            max_connections: 16384,
            metrics: None,
        }
    }

    /// Checks every field; the error names the flag and the reason.
    pub fn validate(&self) -> Result<(), RiversError> {
        if self.listen.trim().is_empty() {
            return Err(RiversError::ListenEmpty);
        }
        validate_upstreams(&self.upstreams)?;
        for (flag, d) in [
            ("dial-timeout", self.dial_timeout),
            ("check-interval", self.check_interval),
            ("check-timeout", self.check_timeout),
        ] {
            if d.is_zero() {
                return Err(RiversError::InvalidFlag {
                    flag,
                    value: "0".into(),
                    reason: "must be greater than zero".into(),
                });
            }
        }
        if self.max_connections == 0 {
            return Err(RiversError::InvalidFlag {
                flag: "max-connections",
                value: "0".into(),
                reason: "must be at least 1".into(),
            });
        }
        if let Some(m) = &self.metrics {
            if m.trim().is_empty() {
                return Err(RiversError::InvalidFlag {
                    flag: "metrics",
                    value: m.clone(),
                    reason: "is blank".into(),
                });
            }
        }
        Ok(())
    }
}

/// Checks an upstream list: not empty, every entry `host:port` with a port in 1..=65535, no duplicates.
pub(crate) fn validate_upstreams(upstreams: &[String]) -> Result<(), RiversError> {
    if upstreams.is_empty() {
        return Err(RiversError::UpstreamsEmpty);
    }
    let mut seen = std::collections::HashSet::new();
    for u in upstreams {
        let bad = |reason: &str| RiversError::InvalidUpstream {
            address: u.clone(),
            reason: reason.into(),
        };
        let Some((host, port)) = u.rsplit_once(':') else {
            return Err(bad("expected host:port"));
        };
        if host.is_empty() || host == "[]" {
            return Err(bad("the host is empty"));
        }
        if host.contains(':') && !(host.starts_with('[') && host.ends_with(']')) {
            return Err(bad("write IPv6 addresses in brackets, e.g. [::1]:6443"));
        }
        if host
            .chars()
            .any(|c| c.is_whitespace() || c == '"' || c == '\\' || c == ',')
        {
            return Err(bad("the host contains a space, quote, backslash or comma"));
        }
        match port.parse::<u16>() {
            Ok(p) if p > 0 => {}
            _ => return Err(bad("the port must be a number from 1 to 65535")),
        }
        if !seen.insert(u.as_str()) {
            return Err(bad("listed twice"));
        }
    }
    Ok(())
}

fn parse_duration(flag: &'static str, value: &str) -> Result<Duration, RiversError> {
    let v = value.trim();
    if v == "0" {
        return Ok(Duration::ZERO);
    }
    humantime::parse_duration(v).map_err(|e| RiversError::InvalidFlag {
        flag,
        value: value.to_string(),
        reason: format!("not a duration like 10s or 500ms ({e})"),
    })
}

impl Args {
    /// Turns the flags into a validated [`Config`].
    pub fn into_config(self) -> Result<Config, RiversError> {
        let upstreams: Vec<String> = self
            .upstreams
            .split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect();
        let dial_timeout = parse_duration("dial-timeout", &self.dial_timeout)?;
        let check_timeout = match &self.check_timeout {
            Some(v) => parse_duration("check-timeout", v)?,
            None => dial_timeout,
        };
        let config = Config {
            listen: self.listen.trim().to_string(),
            upstreams,
            shutdown_timeout: parse_duration("shutdown-timeout", &self.shutdown_timeout)?,
            dial_timeout,
            dial_keep_alive: parse_duration("dial-keep-alive", &self.dial_keep_alive)?,
            check_interval: parse_duration("check-interval", &self.check_interval)?,
            check_timeout,
            max_connections: self.max_connections,
            metrics: self.metrics.map(|m| m.trim().to_string()),
        };
        config.validate()?;
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    fn args(extra: &[&str]) -> Result<Config, RiversError> {
        let mut v = vec!["rivers"];
        v.extend_from_slice(extra);
        Args::try_parse_from(v).unwrap().into_config()
    }

    #[test]
    fn cke_style_flags_parse_with_defaults() {
        let c = args(&["--listen=127.0.0.1:16443", "--upstreams=10.0.0.1:6443,10.0.0.2:6443"]).unwrap();
        assert_eq!(c.listen, "127.0.0.1:16443");
        assert_eq!(c.upstreams, vec!["10.0.0.1:6443", "10.0.0.2:6443"]);
        assert_eq!(c.shutdown_timeout, Duration::from_secs(10));
        assert_eq!(c.dial_timeout, Duration::from_secs(10));
        assert_eq!(c.dial_keep_alive, Duration::from_secs(15));
        assert_eq!(c.check_interval, Duration::from_secs(20));
        assert_eq!(c.check_timeout, Duration::from_secs(10));
        assert_eq!(c.metrics, None);
    }

    #[test]
    fn durations_and_zero() {
        let c = args(&[
            "--listen",
            "127.0.0.1:1",
            "--upstreams",
            "a:1",
            "--shutdown-timeout",
            "0",
            "--dial-timeout",
            "500ms",
            "--check-interval",
            "1m30s",
            "--dial-keep-alive",
            "0",
            "--check-timeout",
            "1.5s",
        ])
        .unwrap();
        assert_eq!(
            c.check_timeout,
            Duration::from_millis(1500),
            "fractions are accepted, as in Go"
        );
        assert_eq!(c.shutdown_timeout, Duration::ZERO);
        assert_eq!(c.dial_timeout, Duration::from_millis(500));
        assert_eq!(c.check_interval, Duration::from_secs(90));
        assert_eq!(c.dial_keep_alive, Duration::ZERO);
    }

    #[test]
    fn bad_input_names_the_flag() {
        let cases: &[(&[&str], &str)] = &[
            (&["--upstreams", "a:1"], "--listen is empty"),
            (&["--listen", "127.0.0.1:1"], "--upstreams is empty"),
            (&["--listen", "x:1", "--upstreams", " , "], "--upstreams is empty"),
            (&["--listen", "x:1", "--upstreams", "a"], "expected host:port"),
            (&["--listen", "x:1", "--upstreams", "a:0"], "port must be"),
            (&["--listen", "x:1", "--upstreams", "a:99999"], "port must be"),
            (&["--listen", "x:1", "--upstreams", ":80"], "host is empty"),
            (&["--listen", "x:1", "--upstreams", "::1:80"], "brackets"),
            (&["--listen", "x:1", "--upstreams", "a:1,a:1"], "listed twice"),
            (
                &["--listen", "x:1", "--upstreams", "a:1", "--dial-timeout", "ten"],
                "invalid --dial-timeout",
            ),
            (
                &["--listen", "x:1", "--upstreams", "a:1", "--check-interval", "0"],
                "invalid --check-interval",
            ),
            (
                &["--listen", "x:1", "--upstreams", "a:1", "--max-connections", "0"],
                "invalid --max-connections",
            ),
        ];
        for (flags, want) in cases {
            let err = args(flags).expect_err(&format!("{flags:?} must fail")).to_string();
            assert!(err.contains(want), "{flags:?}: {err:?} does not contain {want:?}");
        }
        assert!(args(&["--listen", "x:1", "--upstreams", "[::1]:80,b:2"]).is_ok());
    }

    #[test]
    fn log_levels_accept_cke_names() {
        let a = Args::try_parse_from(["rivers", "--loglevel", "warning"]).unwrap();
        assert_eq!(a.loglevel, LogLevel::Warn);
        let a = Args::try_parse_from(["rivers", "--loglevel", "critical", "--logformat", "json"]).unwrap();
        assert_eq!(a.loglevel, LogLevel::Error);
        assert_eq!(a.logformat, LogFormat::Json);
        assert!(Args::try_parse_from(["rivers", "--loglevel", "loud"]).is_err());
    }
}
