//! The direct HTTP path (hyper 1.x, HTTP/1.1): the sender serves, the receiver dials.
//!
//! Routes, all under one transfer id and all requiring `Authorization: Bearer <token>`, where the
//! token is derived from the session key (the key itself never travels):
//!
//! | method | path | answer |
//! |---|---|---|
//! | `GET`/`HEAD` | `/v1/transfers/{id}` | the manifest as a sealed frame; a probe, consumes nothing |
//! | `GET` | `/v1/transfers/{id}/frames?from=N&to=M` | sealed frames for chunks `[N, M)`, then the trailer if `M` is the end |
//! | `POST` | `/v1/transfers/{id}/complete` | body `{"sha256": ...}`: the receiver verified the file |
//!
//! A wrong or missing token, an unknown id or an expired ticket all get the same bodyless `403`,
//! so the server tells a stranger nothing.
//!
//! A node that listens for pushes also answers `POST /v1/inbox`: the body is an offer (see
//! [`crate::offer`]), authenticated by its own MAC rather than a bearer token, and handed to
//! whatever [`InboxHandler`] the node installed.

mod client;
mod server;

pub use client::{AttemptReport, Connected, HttpPeer, connect_any, race};
pub use server::{HttpServer, InboxFuture, InboxHandler};

const PREFIX: &str = "/v1/transfers/";
const INBOX_PATH: &str = "/v1/inbox";
