//! The CLI's blocking client for the agent's Unix socket: one request per call, sent with hyper's HTTP/1.1
//! client on a small current-thread tokio runtime of its own.

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach the agent at {}: {source} (is `berth agent` running? --socket sets the path)", path.display())]
    Connect {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot start the client's async runtime: {source}")]
    Runtime { source: std::io::Error },
    #[error("bad request {method} {target}: {source}")]
    Request {
        method: String,
        target: String,
        source: hyper::http::Error,
    },
    /// The exchange broke off or the answer was not HTTP.
    #[error("agent socket {}: {source}", path.display())]
    Protocol { path: PathBuf, source: hyper::Error },
    #[error("agent socket {}: no answer within {}s", path.display(), after.as_secs_f64())]
    Timeout { path: PathBuf, after: Duration },
    /// The agent answered with an error status.
    #[error("{message}")]
    Agent { status: u16, message: String },
}

/// Send one request and return the body of a 2xx answer. `timeout` bounds the whole exchange, connect
/// included (`None` waits as long as the agent takes, for `--wait`). Blocking: call it outside any async
/// runtime (it runs one of its own).
pub fn call(
    socket: &Path,
    method: &str,
    path: &str,
    timeout: Option<Duration>,
) -> Result<Vec<u8>, ClientError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
        .map_err(|source| ClientError::Runtime { source })?;
    rt.block_on(async {
        let exchange = exchange(socket, method, path);
        match timeout {
            None => exchange.await,
            Some(after) => tokio::time::timeout(after, exchange)
                .await
                .unwrap_or_else(|_| {
                    Err(ClientError::Timeout {
                        path: socket.to_path_buf(),
                        after,
                    })
                }),
        }
    })
}

async fn exchange(socket: &Path, method: &str, target: &str) -> Result<Vec<u8>, ClientError> {
    let protocol = |source| ClientError::Protocol {
        path: socket.to_path_buf(),
        source,
    };
    let request = hyper::Request::builder()
        .method(method)
        .uri(target)
        .header(hyper::header::HOST, "berth")
        .body(Empty::<Bytes>::new())
        .map_err(|source| ClientError::Request {
            method: method.to_string(),
            target: target.to_string(),
            source,
        })?;
    let stream = tokio::net::UnixStream::connect(socket)
        .await
        .map_err(|source| ClientError::Connect {
            path: socket.to_path_buf(),
            source,
        })?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(protocol)?;
    // The connection task drives the socket; it ends when the answer is read and `sender` is dropped.
    let driver = tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "agent socket connection");
        }
    });
    let response = sender.send_request(request).await.map_err(protocol)?;
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(protocol)?
        .to_bytes()
        .to_vec();
    drop(sender);
    let _ = driver.await;
    if status.is_success() {
        Ok(body)
    } else {
        let message = serde_json::from_slice::<super::ErrorBody>(&body)
            .map(|e| e.error)
            .unwrap_or_else(|_| String::from_utf8_lossy(&body).to_string());
        Err(ClientError::Agent {
            status: status.as_u16(),
            message,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::os::unix::net::UnixListener;

    /// A one-connection server answering `answer` verbatim to the first request it reads.
    fn serve_once(
        answer: &'static [u8],
    ) -> (tempfile::TempDir, PathBuf, std::thread::JoinHandle<()>) {
        let dir = tempfile::Builder::new()
            .prefix("b")
            .tempdir_in("/tmp")
            .unwrap();
        let socket = dir.path().join("s");
        let listener = UnixListener::bind(&socket).unwrap();
        let server = std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut buf = [0u8; 4096];
            let mut seen = Vec::new();
            while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = stream.read(&mut buf).unwrap();
                if n == 0 {
                    return;
                }
                seen.extend_from_slice(&buf[..n]);
            }
            stream.write_all(answer).unwrap();
        });
        (dir, socket, server)
    }

    #[test]
    fn reads_a_chunked_answer() {
        let (_dir, socket, server) = serve_once(
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
        );
        let body = call(&socket, "GET", "/v1/status", Some(Duration::from_secs(10))).unwrap();
        assert_eq!(body, b"abcde");
        server.join().unwrap();
    }

    #[test]
    fn an_error_status_carries_the_agents_message() {
        let (_dir, socket, server) = serve_once(
            b"HTTP/1.1 409 Conflict\r\ncontent-length: 21\r\nconnection: close\r\n\r\n{\"error\": \"no such\"}\n",
        );
        let err = call(&socket, "POST", "/v1/rollback?seq=9", None).unwrap_err();
        assert!(
            matches!(&err, ClientError::Agent { status: 409, message } if message == "no such"),
            "{err:?}"
        );
        server.join().unwrap();
    }

    #[test]
    fn a_missing_socket_names_it_and_hints_at_the_agent() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("none.sock");
        let err = call(&socket, "GET", "/v1/status", Some(Duration::from_secs(5))).unwrap_err();
        assert!(matches!(err, ClientError::Connect { .. }), "{err:?}");
        let text = err.to_string();
        assert!(
            text.contains("none.sock") && text.contains("berth agent"),
            "{text}"
        );
    }

    #[test]
    fn the_timeout_bounds_an_agent_that_never_answers() {
        let dir = tempfile::Builder::new()
            .prefix("b")
            .tempdir_in("/tmp")
            .unwrap();
        let socket = dir.path().join("s");
        // Bound but never accepted: connect succeeds (the backlog), no answer ever comes.
        let _listener = UnixListener::bind(&socket).unwrap();
        let start = std::time::Instant::now();
        let err = call(
            &socket,
            "GET",
            "/v1/status",
            Some(Duration::from_millis(300)),
        )
        .unwrap_err();
        assert!(matches!(err, ClientError::Timeout { .. }), "{err:?}");
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "{:?}",
            start.elapsed()
        );
    }
}
