//! The lafs gateway: the user-facing HTTP web API, in front of a grid.
//!
//! | endpoint | what |
//! |---|---|
//! | `PUT /uri` | upload the (streamed) body; answers the readcap |
//! | `POST /uri` | multipart form upload (field `file`); answers the cap or redirects (`when_done`) |
//! | `GET`/`HEAD /uri/$CAP` | the plaintext, with `Range`; `?t=json` describes the file |
//! | `GET`/`HEAD /ciphertext/$VERIFYCAP` | verified ciphertext, with `Range`; `?t=ueb`, `?t=json`, `?t=proof&segments=a-b` |
//! | `PUT /ciphertext?selection_index=…` | store client-encrypted ciphertext; answers the verifycap |
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
pub mod download;
mod error;
pub mod grid;
mod memory;
mod proof;
mod uri;

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::http::{header, HeaderName, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use axum::Router;
use lafs_codec::Params;
use tokio::net::TcpListener;
use tower_http::cors::{Any, CorsLayer};
use tower_http::services::ServeDir;

pub use client_grid::ClientGrid;
pub use error::ApiError;
pub use grid::{
    BoxFuture, ByteStream, Grid, GridError, GridFile, ShareView, UploadMode, UploadSpec, Uploaded,
};
pub use memory::MemoryGrid;
pub use proof::{CiphertextProof, ProofNode, MAX_PROOF_SEGMENTS};

/// Gateway configuration. `Default`: API only (no web app), 3-of-10 with 1 MiB segments.
#[derive(Debug, Clone, Default)]
pub struct Config {
    /// Directory of the web app (Trunk output, `web/dist`); `None` serves only the API.
    pub static_dir: Option<PathBuf>,
    /// Encoding parameters of uploads that do not name their own.
    pub default_params: Params,
}

/// Shared state of a running gateway. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    config: Config,
    grid: Arc<dyn Grid>,
}

impl AppState {
    /// State serving `grid`.
    pub fn new(config: Config, grid: Arc<dyn Grid>) -> Self {
        Self {
            inner: Arc::new(Inner { config, grid }),
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
        ]);
    let api = Router::new()
        .route(
            "/uri",
            put(uri::put_uri)
                .post(uri::post_uri)
                .get(uri::get_uri_query),
        )
        .route("/uri/", put(uri::put_uri).post(uri::post_uri))
        .route("/uri/{cap}", get(uri::get_cap))
        .route("/ciphertext", put(ciphertext::put_ciphertext))
        .route("/ciphertext/{cap}", get(ciphertext::get_ciphertext))
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
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, app(state))
        .with_graceful_shutdown(shutdown)
        .await
}
