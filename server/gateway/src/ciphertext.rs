//! `/ciphertext`: verifycap endpoints. The gateway never sees a readcap here: it serves and
//! stores ciphertext, and a client holding the readcap decrypts (or encrypts) itself.

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use lafs_caps::{Cap, ImmutableVerifyCap, SelectionIndex};

use crate::proof::{ciphertext_proof, ProofError};
use crate::uri::{
    body_stream, etag_for, file_json, json_response, not_modified, params_from_query, parse_cap,
    respond, QueryMap, Source, TypeRule,
};
use crate::{ApiError, AppState, UploadMode, UploadSpec};

fn verify_cap(text: &str) -> Result<ImmutableVerifyCap, ApiError> {
    match parse_cap(text)? {
        Cap::ImmutableVerify(v) => Ok(v),
        Cap::ImmutableRead(_) => Err(ApiError::bad_request(
            "this is a readcap: /ciphertext takes the verifycap (lafsv1...), derived from the \
             readcap on the client; never send a readcap to the gateway's ciphertext endpoints",
        )),
        Cap::Literal(_) => Err(ApiError::bad_request(
            "a literal cap holds its data in the cap itself: there is no ciphertext on the grid",
        )),
        _ => Err(ApiError::bad_request(
            "this kind of cap is not supported here",
        )),
    }
}

/// Parses `a-b` (inclusive) or `a` into a half-open segment range.
fn parse_segments(text: &str) -> Result<core::ops::Range<u64>, ApiError> {
    let bad = || {
        ApiError::bad_request(format!(
            "bad segments=`{text}`: expected a-b (inclusive) or a"
        ))
    };
    let (a, b) = match text.split_once('-') {
        Some((a, b)) => (a, b),
        None => (text, text),
    };
    let a: u64 = a.parse().map_err(|_| bad())?;
    let b: u64 = b.parse().map_err(|_| bad())?;
    if a > b {
        return Err(bad());
    }
    Ok(a..b.saturating_add(1))
}

/// `GET`/`HEAD /ciphertext/$VERIFYCAP[?t=json|ueb|proof&segments=a-b]`.
pub(crate) async fn get_ciphertext(
    State(state): State<AppState>,
    Path(cap): Path<String>,
    Query(q): Query<QueryMap>,
    method: Method,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let vc = verify_cap(&cap)?;
    let t = q.get("t").map(String::as_str).unwrap_or("");
    if !matches!(t, "" | "json" | "ueb" | "proof") {
        return Err(ApiError::bad_request(format!(
            "unknown t=`{t}` (supported: t=json, t=ueb, t=proof&segments=a-b)"
        )));
    }
    let segments = if t == "proof" {
        let Some(s) = q.get("segments") else {
            return Err(ApiError::bad_request("t=proof needs segments=a-b"));
        };
        Some(parse_segments(s)?)
    } else {
        None
    };
    if t.is_empty() {
        let etag = etag_for(&Cap::ImmutableVerify(vc), "c");
        if let Some(resp) = not_modified(&headers, &etag) {
            return Ok(resp);
        }
        let source = Source::open(state.grid(), Cap::ImmutableVerify(vc)).await?;
        return respond(
            source,
            &method,
            &headers,
            TypeRule::Fixed("application/octet-stream"),
            HeaderMap::new(),
            Some(etag),
        )
        .await;
    }
    let file = state.grid().inspect(vc).await?;
    match t {
        "json" => Ok(json_response(&file_json(&vc, &*file))),
        "ueb" => Ok((
            [(header::CONTENT_TYPE, "application/octet-stream")],
            file.ueb().to_bytes().to_vec(),
        )
            .into_response()),
        "proof" => {
            let segments = segments.unwrap_or(0..0);
            match ciphertext_proof(&*file, segments).await {
                Ok(p) => Ok(json_response(&serde_json::to_value(p).map_err(|e| {
                    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
                })?)),
                Err(ProofError::Grid(e)) => Err(e.into()),
                Err(e) => Err(ApiError::bad_request(e.to_string())),
            }
        }
        _ => Err(ApiError::bad_request(format!("unknown t=`{t}`"))),
    }
}

/// `PUT /ciphertext?selection_index=HEX[&k=&n=&segment_size=]`: the body is ciphertext
/// (AES-128-CTR under the client's key); answers the verifycap (text). The client builds the
/// readcap from its key and the storage index in the verifycap.
pub(crate) async fn put_ciphertext(
    State(state): State<AppState>,
    Query(q): Query<QueryMap>,
    body: Body,
) -> Result<Response, ApiError> {
    let params = params_from_query(&q, state.config().default_params)?;
    let Some(sel) = q.get("selection_index") else {
        return Err(ApiError::bad_request(
            "PUT /ciphertext needs selection_index=<32 hex digits> (derived from the key)",
        ));
    };
    let sel: [u8; 16] = hex::decode(sel)
        .ok()
        .and_then(|v| v.try_into().ok())
        .ok_or_else(|| ApiError::bad_request("selection_index must be 32 lowercase hex digits"))?;
    let spec = UploadSpec {
        params,
        mode: UploadMode::Ciphertext(SelectionIndex(sel)),
    };
    let done = state.grid().upload(spec, body_stream(body)).await?;
    tracing::info!("uploaded ciphertext");
    Ok((
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        done.verify_cap.to_string(),
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments() {
        assert_eq!(parse_segments("3").unwrap(), 3..4);
        assert_eq!(parse_segments("0-2").unwrap(), 0..3);
        assert!(parse_segments("2-1").is_err());
        assert!(parse_segments("x").is_err());
        assert!(parse_segments("-1").is_err());
    }
}
