//! The HTTP answers for the page and its files: `GET` and `HEAD` only, with [`HEADERS`]. Both
//! listeners that serve the page use it: the sender's own (`transport::http`) and the relay's
//! (`relay::server`). Nothing here looks at a transfer, so fetching a link (a preview, a
//! scanner) leaves it as it was.

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Method, Request, Response, StatusCode, header};

use super::{HEADERS, asset};

/// The answer for `req` if its path names the page or one of its files.
pub fn answer<B>(req: &Request<B>) -> Option<Response<Full<Bytes>>> {
    let asset = asset(req.uri().path())?;
    let (status, body) = match *req.method() {
        Method::GET => (StatusCode::OK, Bytes::from_static(asset.body)),
        Method::HEAD => (StatusCode::OK, Bytes::new()),
        _ => (StatusCode::METHOD_NOT_ALLOWED, Bytes::new()),
    };
    let mut resp = Response::new(Full::new(body));
    *resp.status_mut() = status;
    let headers = resp.headers_mut();
    headers.insert(header::CONTENT_TYPE, header::HeaderValue::from_static(asset.content_type));
    headers.insert(header::CONTENT_LENGTH, asset.body.len().into());
    for (name, value) in HEADERS {
        headers.insert(*name, header::HeaderValue::from_static(value));
    }
    if status == StatusCode::METHOD_NOT_ALLOWED {
        headers.insert(header::ALLOW, header::HeaderValue::from_static("GET, HEAD"));
        headers.remove(header::CONTENT_LENGTH);
    }
    Some(resp)
}
