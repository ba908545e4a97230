//! A client of the Docker Engine API, as far as a builder needs one: `POST /images/load` with
//! a docker-archive stream. Docker's dockerd and Podman's `podman system service` both serve it.
//!
//! The endpoint comes from `DOCKER_HOST` (`unix:///path` or `tcp://host:port`; default
//! `unix:///var/run/docker.sock`), as the docker CLI reads it. The body is streamed: the
//! archive is never held whole in memory or written to a temporary file.

use std::path::PathBuf;

use bytes::Bytes;
use futures_util::Stream;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use hyper_util::rt::TokioIo;

/// Where the engine listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    Unix(PathBuf),
    Tcp(String),
}

/// Why talking to the engine failed.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("invalid DOCKER_HOST `{0}`: expected unix:///PATH or tcp://HOST:PORT")]
    InvalidHost(String),
    #[error("cannot connect to the engine at {endpoint}: {source} (is dockerd or `podman system service` running? DOCKER_HOST selects another)")]
    Connect {
        endpoint: String,
        #[source]
        source: std::io::Error,
    },
    #[error("engine API at {endpoint}: {detail}")]
    Http { endpoint: String, detail: String },
    #[error("the engine refused the image: {0}")]
    Refused(String),
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Endpoint::Unix(path) => write!(f, "unix://{}", path.display()),
            Endpoint::Tcp(addr) => write!(f, "tcp://{addr}"),
        }
    }
}

impl Endpoint {
    /// Parses a `DOCKER_HOST` value.
    pub fn parse(host: &str) -> Result<Endpoint, EngineError> {
        if let Some(path) = host.strip_prefix("unix://") {
            if path.is_empty() {
                return Err(EngineError::InvalidHost(host.to_string()));
            }
            return Ok(Endpoint::Unix(PathBuf::from(path)));
        }
        if let Some(addr) = host.strip_prefix("tcp://") {
            let addr = addr.trim_end_matches('/');
            if addr.is_empty() || !addr.contains(':') {
                return Err(EngineError::InvalidHost(host.to_string()));
            }
            return Ok(Endpoint::Tcp(addr.to_string()));
        }
        Err(EngineError::InvalidHost(host.to_string()))
    }

    /// `DOCKER_HOST`, else the default socket.
    pub fn from_env() -> Result<Endpoint, EngineError> {
        match std::env::var("DOCKER_HOST") {
            Ok(host) if !host.is_empty() => Endpoint::parse(&host),
            _ => Ok(Endpoint::Unix(PathBuf::from("/var/run/docker.sock"))),
        }
    }
}

type Body = http_body_util::combinators::BoxBody<Bytes, std::io::Error>;

/// Sends one request on a fresh connection; returns the status and the whole reply body.
async fn request(
    endpoint: &Endpoint,
    method: hyper::Method,
    path: &str,
    content_type: Option<&str>,
    body: Body,
) -> Result<(u16, Vec<u8>), EngineError> {
    let http = |detail: String| EngineError::Http {
        endpoint: endpoint.to_string(),
        detail,
    };
    let connect = |source| EngineError::Connect {
        endpoint: endpoint.to_string(),
        source,
    };
    let mut builder = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header(hyper::header::HOST, "docker");
    if let Some(t) = content_type {
        builder = builder.header(hyper::header::CONTENT_TYPE, t);
    }
    let req = builder.body(body).map_err(|e| http(e.to_string()))?;
    let (response, driver) = match endpoint {
        Endpoint::Unix(path) => {
            let stream = tokio::net::UnixStream::connect(path)
                .await
                .map_err(connect)?;
            send(TokioIo::new(stream), req).await
        }
        Endpoint::Tcp(addr) => {
            let stream = tokio::net::TcpStream::connect(addr)
                .await
                .map_err(connect)?;
            send(TokioIo::new(stream), req).await
        }
    }
    .map_err(|e| http(e.to_string()))?;
    let status = response.status().as_u16();
    let mut body = response.into_body();
    let mut bytes = Vec::new();
    let read = loop {
        match body.frame().await {
            None => break Ok(()),
            Some(Err(e)) => break Err(http(e.to_string())),
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    if bytes.len() + data.len() > REPLY_LIMIT {
                        break Err(http("the reply is larger than 4 MiB".to_string()));
                    }
                    bytes.extend_from_slice(data);
                }
            }
        }
    };
    // The exchange is over: stop the connection task, which drops whatever of the request
    // body it still holds (a writer still producing it then sees the channel closed rather
    // than waiting for ever on an engine that answered early).
    driver.abort();
    read?;
    Ok((status, bytes))
}

/// The largest reply read from the engine (`/images/load` answers a few lines).
const REPLY_LIMIT: usize = 4 << 20;

type Driver = tokio::task::JoinHandle<Result<(), hyper::Error>>;

async fn send<IO>(
    io: IO,
    req: hyper::Request<Body>,
) -> Result<(hyper::Response<hyper::body::Incoming>, Driver), hyper::Error>
where
    IO: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(io).await?;
    // The connection task drives the socket until the caller aborts it.
    let driver = tokio::spawn(connection);
    match sender.send_request(req).await {
        Ok(response) => Ok((response, driver)),
        Err(e) => {
            driver.abort();
            Err(e)
        }
    }
}

/// `GET /_ping`: whether an engine answers at `endpoint`.
pub async fn ping(endpoint: &Endpoint) -> Result<(), EngineError> {
    let empty = http_body_util::Empty::new()
        .map_err(|never| match never {})
        .boxed();
    let (status, body) = request(endpoint, hyper::Method::GET, "/_ping", None, empty).await?;
    if status != 200 {
        return Err(EngineError::Http {
            endpoint: endpoint.to_string(),
            detail: format!(
                "/_ping answered {status}: {}",
                String::from_utf8_lossy(&body)
            ),
        });
    }
    Ok(())
}

/// `POST /images/load` with `archive` (a docker-archive tar stream). Returns the engine's
/// messages (`Loaded image: NAME`, ...). An `error` in the reply is [`EngineError::Refused`].
pub async fn load_image<S>(endpoint: &Endpoint, archive: S) -> Result<Vec<String>, EngineError>
where
    S: Stream<Item = Result<Bytes, std::io::Error>> + Send + Sync + 'static,
{
    use futures_util::StreamExt;
    let body = BodyExt::boxed(StreamBody::new(archive.map(|chunk| chunk.map(Frame::data))));
    let (status, reply) = request(
        endpoint,
        hyper::Method::POST,
        "/images/load?quiet=1",
        Some("application/x-tar"),
        body,
    )
    .await?;
    let text = String::from_utf8_lossy(&reply).to_string();
    if status != 200 {
        return Err(EngineError::Refused(format!(
            "HTTP {status}: {}",
            text.trim()
        )));
    }
    // The reply is a stream of JSON messages: {"stream": "..."} or {"error": "..."}.
    let mut messages = Vec::new();
    let mut stream = serde_json::Deserializer::from_str(&text).into_iter::<serde_json::Value>();
    for value in stream.by_ref() {
        let Ok(value) = value else { break };
        if let Some(error) = value["error"].as_str() {
            return Err(EngineError::Refused(error.to_string()));
        }
        if let Some(line) = value["stream"].as_str() {
            messages.extend(
                line.lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty())
                    .map(str::to_string),
            );
        }
    }
    Ok(messages)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_host_values() {
        assert_eq!(
            Endpoint::parse("unix:///run/podman/podman.sock").ok(),
            Some(Endpoint::Unix("/run/podman/podman.sock".into()))
        );
        assert_eq!(
            Endpoint::parse("tcp://127.0.0.1:2375").ok(),
            Some(Endpoint::Tcp("127.0.0.1:2375".into()))
        );
        for bad in [
            "",
            "unix://",
            "tcp://",
            "http://x:1",
            "/var/run/docker.sock",
            "ssh://h",
        ] {
            assert!(Endpoint::parse(bad).is_err(), "{bad}");
        }
    }
}
