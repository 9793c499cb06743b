//! The direct HTTP path (hyper 1.x, HTTP/1.1): the sender serves, the receiver dials.
//!
//! One route carries the transfer: `POST /v2/transfers/{id}` with `Authorization: Bearer
//! <token>` (derived from the session key; the key itself never travels). The body is one
//! sealed control frame, the same bytes a relay mailbox would carry; the answer streams the
//! frames the sender's session produces for it (the manifest for a hello, chunks and the trailer
//! for a want, nothing for a complete). A wrong or missing token, an unknown id or an expired
//! ticket all get the same bodyless `403`, so the server tells a stranger nothing. A source that
//! offers a live transfer's id with wrong tokens too often gets `429` for that transfer a while
//! ([`guesses`]): the one answer that says an id is live, kept because a password-protected link
//! makes the token guessable.
//!
//! `GET /r/{id}` and `GET /web/{file}` answer the browser page that a link opens (see
//! [`crate::web`]); they carry no transfer data and need no token.
//!
//! A node that listens for pushes also answers `POST /v1/inbox`: the body is an offer (see
//! [`crate::offer`]), authenticated by its own MAC rather than a bearer token, and handed to
//! whatever [`InboxHandler`] the node installed.

mod client;
mod guesses;
mod server;

pub use client::{HttpLink, connect, deliver};
pub use server::{HttpServer, InboxFuture, InboxHandler, TokenCheck};

use crate::id::TransferId;

const PREFIX: &str = "/v2/transfers/";
const INBOX_PATH: &str = "/v1/inbox";

fn transfer_path(id: &TransferId) -> String {
    format!("{PREFIX}{id}")
}
