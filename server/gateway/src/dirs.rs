//! Directories and mutable files in the web API (Tahoe-style), over a grid that exposes a
//! `lafs_client::Client` ([`Grid::client`](crate::grid::Grid::client); other grids answer
//! 501).
//!
//! | request | what |
//! |---|---|
//! | `POST /uri?t=mkdir` | new empty mutable directory; answers its write cap |
//! | `POST /uri?t=mkdir-immutable` | body `{"name": "cap", ...}`: new immutable directory; answers its read cap |
//! | `GET /uri/$DIRCAP[/path]?t=json` | listing (`["dirnode", {...}]`) or, for a file, `["filenode", {...}]` |
//! | `GET /uri/$DIRCAP/path/to/file` | the file (immutable: redirect to `/uri/$FILECAP`; mutable: its bytes) |
//! | `PUT /uri/$DIRCAP/path/name` | store the body as an immutable file and link it as `name` (`?t=mkdir`: a new directory instead); answers the child's cap |
//! | `DELETE /uri/$DIRCAP/path/name` | unlink `name` |
//! | `POST /uri/$DIRCAP[/path]?t=rename&from_name=A&to_name=B` | rename an entry |
//! | `GET /uri/$MUTABLECAP` | the latest version of a mutable file |
//! | `PUT /uri/$MUTABLECAP[?offset=N]` | overwrite (or write at N, N = size appends) |

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{FromRequest, Path, Query, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use futures_util::TryStreamExt;
use lafs_caps::{Cap, DirWriteCap};
use lafs_client::{is_dir_cap, Client};
use serde_json::{json, Value};

use crate::error::ApiError;
use crate::uri::{body_stream, parse_cap, upload_plaintext, QueryMap};
use crate::AppState;
use crate::ByteStream;

/// Largest body accepted by a `PUT` into a directory or to a mutable file (held in memory).
const MAX_PUT_BODY: usize = 64 << 20;

fn client(state: &AppState) -> Result<Client, ApiError> {
    state.grid().grid_client().ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_IMPLEMENTED,
            "directories and mutable files need a gateway connected to a grid",
        )
    })
}

fn client_error(e: lafs_client::Error) -> ApiError {
    use lafs_client::Error as E;
    let status = match &e {
        E::NotFound { .. } | E::NotEnoughShares { .. } => StatusCode::GONE,
        E::Dirnode(lafs_dirnode::Error::NotFound { .. }) => StatusCode::NOT_FOUND,
        E::Dirnode(lafs_dirnode::Error::NotPermitted { .. }) => StatusCode::FORBIDDEN,
        E::Dirnode(lafs_dirnode::Error::NotADirectoryCap { .. }) => StatusCode::BAD_REQUEST,
        E::Dirnode(lafs_dirnode::Error::AlreadyExists { .. }) => StatusCode::CONFLICT,
        E::Dirnode(_) | E::BadParams(_) | E::UnsupportedCap(_) => StatusCode::BAD_REQUEST,
        E::UncoordinatedWrite { .. } => StatusCode::CONFLICT,
        _ => StatusCode::SERVICE_UNAVAILABLE,
    };
    ApiError::new(status, e.to_string())
}

fn text(status: StatusCode, body: String) -> Response {
    let mut r = (status, body).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

fn json_response(v: &Value) -> Response {
    let mut r = (StatusCode::OK, v.to_string()).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

fn is_mutable_file(cap: &Cap) -> bool {
    matches!(cap, Cap::MutableWrite(_) | Cap::MutableRead(_))
}

/// Whether `GET /uri/$CAP` is served here rather than by the immutable-file handler.
pub(crate) fn handles(cap: &Cap) -> bool {
    is_dir_cap(cap) || is_mutable_file(cap)
}

fn caps_json(cap: &Cap) -> Value {
    let ro = lafs_client::read_level(cap);
    let mut m = serde_json::Map::new();
    if ro != *cap {
        m.insert("rw_uri".into(), json!(cap.to_string()));
    }
    m.insert("ro_uri".into(), json!(ro.to_string()));
    m.insert(
        "mutable".into(),
        json!(matches!(
            cap,
            Cap::MutableWrite(_) | Cap::MutableRead(_) | Cap::DirWrite(_) | Cap::DirRead(_)
        )),
    );
    Value::Object(m)
}

async fn describe(c: &Client, cap: &Cap) -> Result<Value, ApiError> {
    if !is_dir_cap(cap) {
        let mut info = caps_json(cap);
        if let Cap::MutableWrite(w) = cap {
            let got = c.read_mutable(&w.read_cap()).await.map_err(client_error)?;
            info["size"] = json!(got.data.len());
            info["seqnum"] = json!(got.seqnum);
        } else if let Cap::MutableRead(r) = cap {
            let got = c.read_mutable(r).await.map_err(client_error)?;
            info["size"] = json!(got.data.len());
            info["seqnum"] = json!(got.seqnum);
        }
        return Ok(json!(["filenode", info]));
    }
    let opened = c.open_dir(cap).await.map_err(client_error)?;
    let mut info = caps_json(cap);
    if let Some(s) = opened.seqnum {
        info["seqnum"] = json!(s);
    }
    let mut children = serde_json::Map::new();
    match opened.dir.entries() {
        Ok(entries) => {
            for e in entries {
                let child = e.write_cap.clone().unwrap_or(e.read_cap.clone());
                let mut ci = caps_json(&child);
                ci["metadata"] = match serde_json::from_slice::<Value>(&e.metadata) {
                    Ok(v) => v,
                    Err(_) => json!({}),
                };
                let kind = if is_dir_cap(&child) {
                    "dirnode"
                } else {
                    "filenode"
                };
                children.insert(e.name, json!([kind, ci]));
            }
            info["children"] = Value::Object(children);
        }
        Err(lafs_dirnode::Error::NotPermitted { .. }) => {
            // Traversal level: no names. List the children's traversal/verify caps.
            let caps = opened
                .dir
                .traverse_caps()
                .map_err(|e| client_error(e.into_client()))?;
            info["traverse_children"] =
                json!(caps.iter().map(ToString::to_string).collect::<Vec<_>>());
        }
        Err(e) => return Err(client_error(e.into_client())),
    }
    Ok(json!(["dirnode", info]))
}

trait IntoClient {
    fn into_client(self) -> lafs_client::Error;
}

impl IntoClient for lafs_dirnode::Error {
    fn into_client(self) -> lafs_client::Error {
        lafs_client::Error::Dirnode(self)
    }
}

async fn serve_cap(c: &Client, cap: &Cap, q: &QueryMap) -> Result<Response, ApiError> {
    if q.get("t").map(String::as_str) == Some("json") {
        return Ok(json_response(&describe(c, cap).await?));
    }
    match cap {
        Cap::MutableWrite(w) => {
            let got = c.read_mutable(&w.read_cap()).await.map_err(client_error)?;
            Ok((StatusCode::OK, got.data).into_response())
        }
        Cap::MutableRead(r) => {
            let got = c.read_mutable(r).await.map_err(client_error)?;
            Ok((StatusCode::OK, got.data).into_response())
        }
        c2 if is_dir_cap(c2) => Err(ApiError::bad_request(
            "a directory has no bytes; ask for ?t=json",
        )),
        other => Ok(Redirect::to(&format!("/uri/{other}")).into_response()),
    }
}

/// `GET /uri/$CAP` for directory and mutable-file caps.
pub(crate) async fn get_cap(
    state: &AppState,
    cap: Cap,
    q: &QueryMap,
) -> Result<Response, ApiError> {
    let c = client(state)?;
    serve_cap(&c, &cap, q).await
}

/// `GET /uri/$DIRCAP/path`.
pub(crate) async fn get_path(
    State(state): State<AppState>,
    Path((cap, path)): Path<(String, String)>,
    Query(q): Query<QueryMap>,
) -> Result<Response, ApiError> {
    let c = client(&state)?;
    let root = parse_cap(&cap)?;
    let target = c.resolve(&root, &path).await.map_err(client_error)?;
    serve_cap(&c, &target, &q).await
}

fn split_parent(path: &str) -> Result<(String, String), ApiError> {
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    let Some((name, dirs)) = parts.split_last() else {
        return Err(ApiError::bad_request("the path names no entry"));
    };
    Ok((dirs.join("/"), (*name).to_owned()))
}

async fn writable_dir(c: &Client, root: &Cap, path: &str) -> Result<DirWriteCap, ApiError> {
    match c.resolve(root, path).await.map_err(client_error)? {
        Cap::DirWrite(w) => Ok(w),
        other if is_dir_cap(&other) => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "this directory is read-only through this cap",
        )),
        _ => Err(ApiError::bad_request("not a directory")),
    }
}

async fn body_bytes(body: Body) -> Result<Vec<u8>, ApiError> {
    axum::body::to_bytes(body, MAX_PUT_BODY)
        .await
        .map(|b| b.to_vec())
        .map_err(|e| {
            ApiError::bad_request(format!(
                "could not read the body (limit {MAX_PUT_BODY} bytes): {e}"
            ))
        })
}

/// `PUT /uri/$DIRCAP/path/name`: upload and link (or `?t=mkdir`).
pub(crate) async fn put_path(
    State(state): State<AppState>,
    Path((cap, path)): Path<(String, String)>,
    Query(q): Query<QueryMap>,
    body: Body,
) -> Result<Response, ApiError> {
    let c = client(&state)?;
    let root = parse_cap(&cap)?;
    let (parent, name) = split_parent(&path)?;
    let dir = writable_dir(&c, &root, &parent).await?;
    let mut size = None;
    let child: Cap = match q.get("t").map(String::as_str) {
        Some("mkdir") => c.mkdir().await.map_err(client_error)?.into(),
        None | Some("") => {
            // Streamed into the uploader as it arrives (any size, memory bounded), counted for
            // the entry's `{"size": N}` metadata (what the web app and `lafs cp` record).
            let counted = Arc::new(AtomicU64::new(0));
            let n = Arc::clone(&counted);
            let body: ByteStream = Box::pin(body_stream(body).inspect_ok(move |b| {
                n.fetch_add(b.len() as u64, Ordering::Relaxed);
            }));
            let cap = upload_plaintext(&state, state.config().default_params, body).await?;
            size = Some(counted.load(Ordering::Relaxed));
            cap
        }
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "PUT into a directory supports t=mkdir, not t=`{other}`"
            )))
        }
    };
    let meta = match size {
        Some(n) => lafs_client::size_metadata(n),
        None => b"{}".to_vec(),
    };
    c.dir_set(&dir, &name, &child, &meta)
        .await
        .map_err(client_error)?;
    Ok(text(StatusCode::CREATED, child.to_string()))
}

/// `DELETE /uri/$DIRCAP/path/name`.
pub(crate) async fn delete_path(
    State(state): State<AppState>,
    Path((cap, path)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let c = client(&state)?;
    let root = parse_cap(&cap)?;
    let (parent, name) = split_parent(&path)?;
    let dir = writable_dir(&c, &root, &parent).await?;
    c.dir_remove(&dir, &name).await.map_err(client_error)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn rename_in(
    c: &Client,
    dir_cap: &Cap,
    path: &str,
    q: &QueryMap,
) -> Result<Response, ApiError> {
    let (Some(from), Some(to)) = (q.get("from_name"), q.get("to_name")) else {
        return Err(ApiError::bad_request(
            "t=rename needs from_name and to_name",
        ));
    };
    let dir = writable_dir(c, dir_cap, path).await?;
    c.dir_rename(&dir, from, to).await.map_err(client_error)?;
    Ok(text(StatusCode::OK, format!("{from} renamed to {to}")))
}

/// `POST /uri/$DIRCAP/path?t=rename&from_name=A&to_name=B` (also `?t=mkdir&name=N`).
pub(crate) async fn post_path(
    State(state): State<AppState>,
    Path((cap, path)): Path<(String, String)>,
    Query(q): Query<QueryMap>,
) -> Result<Response, ApiError> {
    let c = client(&state)?;
    let root = parse_cap(&cap)?;
    post_dir_op(&c, &root, &path, &q).await
}

/// `POST /uri/$DIRCAP?t=...` on the directory itself.
pub(crate) async fn post_cap(
    State(state): State<AppState>,
    Path(cap): Path<String>,
    Query(q): Query<QueryMap>,
) -> Result<Response, ApiError> {
    let c = client(&state)?;
    let root = parse_cap(&cap)?;
    post_dir_op(&c, &root, "", &q).await
}

async fn post_dir_op(
    c: &Client,
    root: &Cap,
    path: &str,
    q: &QueryMap,
) -> Result<Response, ApiError> {
    match q.get("t").map(String::as_str) {
        Some("rename") => rename_in(c, root, path, q).await,
        Some("mkdir") => {
            let Some(name) = q.get("name") else {
                return Err(ApiError::bad_request("t=mkdir on a directory needs name="));
            };
            let dir = writable_dir(c, root, path).await?;
            let child: Cap = c.mkdir().await.map_err(client_error)?.into();
            c.dir_set(&dir, name, &child, b"{}")
                .await
                .map_err(client_error)?;
            Ok(text(StatusCode::CREATED, child.to_string()))
        }
        other => Err(ApiError::bad_request(format!(
            "POST to a directory supports t=rename and t=mkdir, not {other:?}"
        ))),
    }
}

/// `PUT /uri/$MUTABLECAP[?offset=N]`.
pub(crate) async fn put_cap(
    State(state): State<AppState>,
    Path(cap): Path<String>,
    Query(q): Query<QueryMap>,
    body: Body,
) -> Result<Response, ApiError> {
    let c = client(&state)?;
    let Cap::MutableWrite(w) = parse_cap(&cap)? else {
        return Err(ApiError::bad_request(
            "PUT /uri/$CAP needs a mutable file write cap",
        ));
    };
    let data = body_bytes(body).await?;
    let seqnum = match q.get("offset") {
        None => c.overwrite_mutable(&w, &data).await,
        Some(o) => {
            let off: u64 = o
                .parse()
                .map_err(|_| ApiError::bad_request("offset must be a decimal number"))?;
            c.write_mutable_at(&w, off, &data).await
        }
    }
    .map_err(client_error)?;
    Ok(text(StatusCode::OK, format!("{seqnum}")))
}

/// `POST /uri`: `t=mkdir`, `t=mkdir-immutable`, `t=mutable` (new mutable file from the
/// body), else the form upload.
pub(crate) async fn post_uri(
    State(state): State<AppState>,
    Query(q): Query<QueryMap>,
    req: Request,
) -> Result<Response, ApiError> {
    let t = q.get("t").cloned().unwrap_or_default();
    match t.as_str() {
        "mkdir" => {
            let c = client(&state)?;
            let cap = c.mkdir().await.map_err(client_error)?;
            Ok(text(StatusCode::OK, Cap::from(cap).to_string()))
        }
        "mkdir-immutable" => {
            let c = client(&state)?;
            let data = body_bytes(req.into_body()).await?;
            let children: BTreeMap<String, String> = if data.is_empty() {
                BTreeMap::new()
            } else {
                serde_json::from_slice(&data).map_err(|e| {
                    ApiError::bad_request(format!("body must be {{\"name\": \"cap\"}}: {e}"))
                })?
            };
            let mut entries = Vec::new();
            for (name, cap) in children {
                entries.push((name, parse_cap(&cap)?, b"{}".to_vec()));
            }
            let cap = c.mkdir_immutable(&entries).await.map_err(client_error)?;
            Ok(text(StatusCode::OK, cap.to_string()))
        }
        "mutable" => {
            let c = client(&state)?;
            let data = body_bytes(req.into_body()).await?;
            let cap = c.create_mutable(&data).await.map_err(client_error)?;
            Ok(text(StatusCode::OK, Cap::from(cap).to_string()))
        }
        _ => {
            let form = axum::extract::Multipart::from_request(req, &state)
                .await
                .map_err(|e| ApiError::bad_request(format!("expected a multipart form: {e}")))?;
            crate::uri::post_uri(State(state), Query(q), form).await
        }
    }
}
