//! Loopback HTTP servers for tests, made of the agent's own crates (axum, tokio, httparse through hyper,
//! base64): [`HttpServer`] serves an axum router on a thread of its own, and [`git_http_backend`] is a Git
//! smart-HTTP server that runs `git http-backend` as CGI behind Basic auth.
//!
//! Shared by the unit tests in `agent/src/source/tests.rs` and the integration tests (`tests/tests.rs`),
//! both of which include this file with `#[path]`; it may use only crates both can see.

use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use std::ffi::OsStr;
use std::io::Write;
use std::net::TcpListener;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// An axum router served on a listener the caller bound (so the port is known and never raced), by a
/// current-thread tokio runtime on a thread of its own. Dropping it stops the server.
pub struct HttpServer {
    pub port: u16,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl HttpServer {
    pub fn start(listener: TcpListener, router: Router) -> HttpServer {
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                axum::serve(listener, router)
                    .with_graceful_shutdown(async {
                        let _ = stopped.await;
                    })
                    .await
                    .unwrap();
            });
        });
        HttpServer {
            port,
            stop: Some(stop),
        }
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

struct GitHttp {
    root: PathBuf,
    user: String,
    /// The whole `Authorization` value that is let in.
    authorization: String,
    denied: Arc<AtomicUsize>,
}

/// A Git smart-HTTP server on 127.0.0.1 for the repositories under `root` (`git http-backend` as CGI,
/// one process per request), requiring Basic auth `user:password` (a token as password, as Git hosts take
/// them); anything else is answered 401 with `WWW-Authenticate: Basic`. Returns the server and the number
/// of requests answered 401.
pub fn git_http_backend(root: &Path, user: &str, password: &str) -> (HttpServer, Arc<AtomicUsize>) {
    let denied = Arc::new(AtomicUsize::new(0));
    let git = GitHttp {
        root: root.to_path_buf(),
        user: user.to_string(),
        authorization: format!("Basic {}", STANDARD.encode(format!("{user}:{password}"))),
        denied: denied.clone(),
    };
    let router = Router::new()
        .fallback(git_cgi)
        .layer(DefaultBodyLimit::disable())
        .with_state(Arc::new(git));
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    (HttpServer::start(listener, router), denied)
}

async fn git_cgi(
    State(git): State<Arc<GitHttp>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let authorization = headers
        .get(header::AUTHORIZATION)
        .map(HeaderValue::as_bytes);
    if authorization != Some(git.authorization.as_bytes()) {
        git.denied.fetch_add(1, Ordering::SeqCst);
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Basic realm=\"git\"")],
        )
            .into_response();
    }
    let cgi =
        tokio::task::spawn_blocking(move || http_backend(&git, &method, &uri, &headers, &body));
    match cgi.await {
        Ok(Ok(output)) => cgi_response(&output),
        _ => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

/// Run `git http-backend` with the CGI meta-variables (RFC 3875 §4.1) of one request; its stdout.
fn http_backend(
    git: &GitHttp,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &Bytes,
) -> std::io::Result<Vec<u8>> {
    let mut cmd = Command::new("git");
    cmd.arg("http-backend")
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_PROJECT_ROOT", &git.root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("REQUEST_METHOD", method.as_str())
        .env("PATH_INFO", uri.path())
        .env("QUERY_STRING", uri.query().unwrap_or(""))
        .env("CONTENT_LENGTH", body.len().to_string())
        .env("REMOTE_USER", &git.user)
        .env("REMOTE_ADDR", "127.0.0.1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    for (name, var) in [
        ("content-type", "CONTENT_TYPE"),
        ("git-protocol", "GIT_PROTOCOL"),
        ("content-encoding", "HTTP_CONTENT_ENCODING"),
    ] {
        if let Some(value) = headers.get(name) {
            cmd.env(var, OsStr::from_bytes(value.as_bytes()));
        }
    }
    let mut child = cmd.spawn()?;
    let mut stdin = child.stdin.take().unwrap();
    let body = body.clone();
    // Written from another thread while stdout is read, so neither pipe can fill and stall the other.
    let writer = std::thread::spawn(move || stdin.write_all(&body));
    let output = child.wait_with_output()?;
    let _ = writer.join();
    Ok(output.stdout)
}

/// The HTTP response for a CGI script's output (RFC 3875 §6): a header block, read with httparse, whose
/// `Status` field gives the status (200 without one), then the body.
fn cgi_response(output: &[u8]) -> Response {
    let mut fields = [httparse::EMPTY_HEADER; 32];
    let Ok(httparse::Status::Complete((body_at, fields))) =
        httparse::parse_headers(output, &mut fields)
    else {
        return StatusCode::BAD_GATEWAY.into_response();
    };
    let mut response = Response::new(Body::from(output[body_at..].to_vec()));
    for field in fields {
        if field.name.eq_ignore_ascii_case("status") {
            // "404 Not Found": the code is the first three bytes.
            let code = field.value.get(..3).map(StatusCode::from_bytes);
            *response.status_mut() = match code {
                Some(Ok(code)) => code,
                _ => StatusCode::BAD_GATEWAY,
            };
        } else if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(field.name.as_bytes()),
            HeaderValue::from_bytes(field.value),
        ) {
            response.headers_mut().append(name, value);
        }
    }
    response
}
