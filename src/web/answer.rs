//! The listener's answers for the browser page and its files (see [`crate::web`]): `GET` and
//! `HEAD` only, with the page's security headers. Nothing here looks at a transfer, so fetching
//! a link (a preview, a scanner) leaves it as it was.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, Response, StatusCode, body::Incoming, header};

use super::server::Body;
use crate::web;

/// The answer for `req` if its path names the page or one of its files.
pub(super) fn answer(req: &Request<Incoming>) -> Option<Response<Body>> {
    let asset = web::asset(req.uri().path())?;
    let (status, body) = match *req.method() {
        Method::GET => (StatusCode::OK, Bytes::from_static(asset.body)),
        Method::HEAD => (StatusCode::OK, Bytes::new()),
        _ => (StatusCode::METHOD_NOT_ALLOWED, Bytes::new()),
    };
    let mut resp = Response::new(Full::new(body).map_err(|never| match never {}).boxed());
    *resp.status_mut() = status;
    let headers = resp.headers_mut();
    headers.insert(header::CONTENT_TYPE, header::HeaderValue::from_static(asset.content_type));
    headers.insert(header::CONTENT_LENGTH, asset.body.len().into());
    for (name, value) in web::HEADERS {
        headers.insert(*name, header::HeaderValue::from_static(value));
    }
    if status == StatusCode::METHOD_NOT_ALLOWED {
        headers.insert(header::ALLOW, header::HeaderValue::from_static("GET, HEAD"));
        headers.remove(header::CONTENT_LENGTH);
    }
    Some(resp)
}
