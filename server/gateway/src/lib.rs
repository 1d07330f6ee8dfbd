//! The lafs gateway: the user-facing HTTP web API, in front of a grid.
//!
//! | endpoint | what |
//! |---|---|
//! | `PUT /uri` | upload the (streamed) body; answers the readcap |
//! | `POST /uri` | multipart form upload (field `file`); answers the cap or redirects (`when_done`) |
//! | `GET`/`HEAD /uri/$CAP` | the plaintext, with `Range`; `?t=json` describes the file |
//! | `GET`/`HEAD /ciphertext/$VERIFYCAP` | verified ciphertext, with `Range`; `?t=ueb`, `?t=json`, `?t=proof&segments=a-b` |
//! | `PUT /ciphertext?selection_index=…` | store client-encrypted ciphertext; answers the verifycap |
//! | `POST /ciphertext/uploads?selection_index=…&size=N`, `PUT …/{id}?offset=`, `POST …/{id}/finish` | the same in chunks, for browsers |
//! | `GET /grid/servers` | the storage servers' ids and URLs (public), for browsers that talk to them directly |
//! | `GET /…` | the web app's static files |
//!
//! The HTTP layer talks to a [`Grid`]: [`MemoryGrid`] in tests, real storage servers through
//! the network client in `lafs run`/`lafs demo`. The API is specified in
//! `docs/spec/gateway.md`.
//!
//! ```no_run
//! # async fn run() -> std::io::Result<()> {
//! use std::sync::Arc;
//! use lafs_gateway::{serve, AppState, Config, MemoryGrid};
//!
//! let state = AppState::new(Config::default(), Arc::new(MemoryGrid::new()));
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:3456").await?;
//! serve(listener, state, std::future::pending()).await
//! # }
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod ciphertext;
mod client_grid;
mod content;
mod dirs;
pub mod download;
mod error;
pub mod grid;
mod memory;
mod proof;
mod upload_session;
mod uri;

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::http::{header, HeaderName, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::Router;
use lafs_codec::Params;
use lafs_serve::{serve_connections, Limits};
use tokio::net::TcpListener;
use tower_http::cors::{Any, CorsLayer};
use tower_http::services::ServeDir;

pub use client_grid::{ClientGrid, ServerList};
pub use error::ApiError;
pub use grid::{
    BoxFuture, ByteStream, Grid, GridError, GridFile, ShareView, UploadMode, UploadSpec, Uploaded,
};
pub use memory::MemoryGrid;
pub use proof::{CiphertextProof, ProofNode, MAX_PROOF_SEGMENTS};

/// Gateway configuration. `Default`: API only (no web app), 3-of-10 with 1 MiB segments,
/// 10 s to send request headers, 1024 connections; chunked ciphertext uploads: no size limit,
/// 64 sessions at once, each expiring after 10 minutes without a request.
#[derive(Debug, Clone)]
pub struct Config {
    /// Directory of the web app (Trunk output, `web/dist`); `None` serves only the API.
    pub static_dir: Option<PathBuf>,
    /// Encoding parameters of uploads that do not name their own.
    pub default_params: Params,
    /// Time allowed for a client to send the request line and headers.
    pub header_read_timeout: Duration,
    /// Largest number of open connections; more wait in the accept queue.
    pub max_connections: usize,
    /// Largest upload (bytes) a chunked ciphertext upload session may announce (`None`: any);
    /// a larger one is refused with `413` before a byte is sent.
    pub max_upload_size: Option<u64>,
    /// Chunked ciphertext upload sessions receiving or storing at once; more are refused
    /// with `503`.
    pub max_upload_sessions: usize,
    /// A chunked upload session with no request for this long expires: its uploader stops
    /// and later requests for it answer `404`.
    pub upload_session_idle: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            static_dir: None,
            default_params: Params::default(),
            header_read_timeout: Duration::from_secs(10),
            max_connections: 1024,
            max_upload_size: None,
            max_upload_sessions: 64,
            upload_session_idle: Duration::from_secs(600),
        }
    }
}

/// Shared state of a running gateway. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    config: Config,
    grid: Arc<dyn Grid>,
    uploads: Arc<upload_session::Sessions>,
}

impl AppState {
    /// State serving `grid`.
    pub fn new(config: Config, grid: Arc<dyn Grid>) -> Self {
        Self {
            inner: Arc::new(Inner {
                config,
                grid,
                uploads: Arc::default(),
            }),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// The grid.
    pub fn grid(&self) -> &Arc<dyn Grid> {
        &self.inner.grid
    }

    /// The open chunked ciphertext upload sessions.
    pub(crate) fn uploads(&self) -> &Arc<upload_session::Sessions> {
        &self.inner.uploads
    }
}

/// The router: `/uri`, `/ciphertext` and the static web app, with CORS open to any origin.
pub fn app(state: AppState) -> Router {
    let cors = CorsLayer::new()
        .allow_origin(Any)
        .allow_methods([
            Method::GET,
            Method::HEAD,
            Method::PUT,
            Method::POST,
            Method::DELETE,
            Method::OPTIONS,
        ])
        .allow_headers([header::RANGE, header::CONTENT_TYPE, header::IF_NONE_MATCH])
        .expose_headers([
            header::CONTENT_RANGE,
            header::CONTENT_LENGTH,
            header::ACCEPT_RANGES,
            header::CONTENT_TYPE,
            header::CONTENT_DISPOSITION,
            HeaderName::from_static("x-lafs-file-size"),
            HeaderName::from_static(upload_session::UPLOAD_OFFSET),
        ]);
    let api = Router::new()
        .route(
            "/uri",
            put(uri::put_uri)
                .post(dirs::post_uri)
                .get(uri::get_uri_query),
        )
        .route("/uri/", put(uri::put_uri).post(uri::post_uri))
        .route(
            "/uri/{cap}",
            get(uri::get_cap).put(dirs::put_cap).post(dirs::post_cap),
        )
        .route(
            "/uri/{cap}/{*path}",
            get(dirs::get_path)
                .put(dirs::put_path)
                .delete(dirs::delete_path)
                .post(dirs::post_path),
        )
        .route("/ciphertext", put(ciphertext::put_ciphertext))
        .route("/ciphertext/{cap}", get(ciphertext::get_ciphertext))
        .route("/ciphertext/uploads", post(upload_session::create))
        .route(
            "/ciphertext/uploads/{id}",
            get(upload_session::status)
                .put(upload_session::put_chunk)
                .delete(upload_session::delete),
        )
        .route(
            "/ciphertext/uploads/{id}/finish",
            post(upload_session::finish),
        )
        .route("/grid/servers", get(grid_servers))
        .layer(DefaultBodyLimit::disable())
        .with_state(state.clone());
    let app = match &state.config().static_dir {
        Some(dir) => {
            let dir = dir.clone();
            let missing = NotBuilt { dir: dir.clone() };
            api.fallback_service(
                ServeDir::new(dir)
                    .append_index_html_on_directories(true)
                    .not_found_service(axum::routing::any(move || {
                        let m = missing.clone();
                        async move { m.response() }
                    })),
            )
        }
        None => api.fallback(|| async {
            NotBuilt {
                dir: PathBuf::new(),
            }
            .response()
        }),
    };
    app.layer(cors)
}

/// `GET /grid/servers`: `{"servers": [{"id": <base32 node key>, "url": <base URL>}, …]}`, the
/// storage servers the grid knows now (public: what the introducer announces to anyone).
async fn grid_servers(axum::extract::State(state): axum::extract::State<AppState>) -> Response {
    match state.grid().storage_servers() {
        Some(list) => {
            let servers: Vec<serde_json::Value> = list
                .into_iter()
                .map(|(id, url)| serde_json::json!({ "id": id.to_string(), "url": url }))
                .collect();
            (
                StatusCode::OK,
                [
                    (header::CONTENT_TYPE, "application/json"),
                    (header::CACHE_CONTROL, "no-store"),
                ],
                serde_json::json!({ "servers": servers }).to_string(),
            )
                .into_response()
        }
        None => (
            StatusCode::NOT_IMPLEMENTED,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            "this gateway's grid names no storage servers\n",
        )
            .into_response(),
    }
}

#[derive(Clone)]
struct NotBuilt {
    dir: PathBuf,
}

impl NotBuilt {
    fn response(&self) -> Response {
        let built = !self.dir.as_os_str().is_empty() && self.dir.join("index.html").is_file();
        let msg = if built {
            "not found\n".to_owned()
        } else if self.dir.as_os_str().is_empty() {
            "lafs gateway: this gateway serves no web app (no static directory configured).\n\
             The web API is at /uri and /ciphertext (see docs/spec/gateway.md).\n"
                .to_owned()
        } else {
            format!(
                "lafs gateway: the web app is not built ({} has no index.html).\n\
                 Build it with `trunk build --release` in web/ (scripts/demo.sh does this when \
                 trunk is installed).\nThe web API is at /uri and /ciphertext (see \
                 docs/spec/gateway.md).\n",
                self.dir.display()
            )
        };
        (
            StatusCode::NOT_FOUND,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            msg,
        )
            .into_response()
    }
}

/// Serves `app(state)` on `listener` until `shutdown` completes, then stops accepting and lets
/// open requests finish (graceful shutdown).
///
/// Each connection must send its request headers within [`Config::header_read_timeout`]
/// (slow clients are disconnected); at most [`Config::max_connections`] are served at once,
/// more wait in the accept queue. Bodies are not timed: uploads and downloads of any size
/// stream for as long as they take. The connection loop is [`lafs_serve::serve_connections`],
/// which says what happens to open connections at shutdown.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let config = state.config();
    let limits = Limits {
        max_connections: config.max_connections,
        header_read_timeout: config.header_read_timeout,
    };
    serve_connections(listener, app(state), limits, shutdown).await;
    Ok(())
}
