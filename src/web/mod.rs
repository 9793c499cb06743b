//! The browser page: a receiver for a person who has only a browser (see docs/browser.md).
//!
//! This module owns the page's files, embedded in the binary so that the page a sender or a
//! relay serves is always the one built with it, the link that opens it ([`link`]), and the
//! HTTP answers that serve them ([`answer`]), which the sender's listener (`transport::http`)
//! and the relay (`relay::server`) both give. Serving the page reads no transfer and changes
//! nothing, so a chat preview or a link scanner that fetches the link consumes nothing; only the
//! page's own requests, which carry what the key in the link's fragment gives, reach the
//! transfer. An upload link ([`upload`]) opens the same page the other way round: the page
//! sends a file to the node that made the link.
//!
//! The page speaks the receive side of the same protocol as every other receiver, in JavaScript
//! (`assets/protocol.js`), over HTTP to the sender or through the relay's mailboxes over
//! WebSocket: the bearer token, mailboxes and frame keys by HKDF-SHA256 from the session key,
//! frames opened with AES-256-GCM (WebCrypto where the page is a secure context, the vendored
//! `@noble/ciphers` otherwise), the whole-file SHA-256 checked with hash-wasm's WebAssembly
//! (`assets/vendor.js`, built from `web/` and committed).

mod answer;
mod link;
pub mod upload;

pub use answer::answer;
pub use link::link;

use crate::id::TransferId;

/// Where a link points: `/r/<transfer id>`; the key follows in the fragment.
pub const PAGE_PREFIX: &str = "/r/";
/// Where the page's scripts and style sheet live.
const ASSET_PREFIX: &str = "/web/";

/// One embedded file.
#[derive(Clone, Copy, Debug)]
pub struct Asset {
    pub body: &'static [u8],
    pub content_type: &'static str,
}

const PAGE: Asset = Asset { body: include_bytes!("assets/index.html"), content_type: "text/html; charset=utf-8" };
const JS: &str = "text/javascript; charset=utf-8";
const FILES: &[(&str, Asset)] = &[
    ("app.js", Asset { body: include_bytes!("assets/app.js"), content_type: JS }),
    ("protocol.js", Asset { body: include_bytes!("assets/protocol.js"), content_type: JS }),
    ("tree.js", Asset { body: include_bytes!("assets/tree.js"), content_type: JS }),
    ("upload.js", Asset { body: include_bytes!("assets/upload.js"), content_type: JS }),
    ("vendor.js", Asset { body: include_bytes!("assets/vendor.js"), content_type: JS }),
    ("page.css", Asset { body: include_bytes!("assets/page.css"), content_type: "text/css; charset=utf-8" }),
    ("icon.svg", Asset { body: include_bytes!("assets/icon.svg"), content_type: "image/svg+xml" }),
];

/// The embedded file a `GET` of `path` names, if any: the page for `/r/<id>` whatever the id
/// (whether it names a transfer is for the key holder's requests to find out), or one of its
/// files under `/web/`.
pub fn asset(path: &str) -> Option<Asset> {
    if let Some(id) = path.strip_prefix(PAGE_PREFIX) {
        return id.parse::<TransferId>().is_ok().then_some(PAGE);
    }
    let name = path.strip_prefix(ASSET_PREFIX)?;
    FILES.iter().find(|(n, _)| *n == name).map(|(_, asset)| *asset)
}

/// Headers on every answer carrying the page or its files. The policy allows scripts, styles and
/// requests from the serving origin only (no inline script, no third party, no framing; and
/// `'wasm-unsafe-eval'`, which lets the vendored SHA-256 compile its WebAssembly and allows no
/// JavaScript `eval`),
/// and the page sends no `Referer`, so the link's path leaves with no request to anyone else.
pub const HEADERS: &[(&str, &str)] = &[
    (
        "content-security-policy",
        "default-src 'none'; script-src 'self' 'wasm-unsafe-eval'; style-src 'self'; connect-src 'self'; img-src 'self'; \
         base-uri 'none'; form-action 'none'; frame-ancestors 'none'; require-trusted-types-for 'script'",
    ),
    ("referrer-policy", "no-referrer"),
    ("x-content-type-options", "nosniff"),
    ("x-frame-options", "DENY"),
    ("cross-origin-opener-policy", "same-origin"),
    ("cross-origin-resource-policy", "same-origin"),
    ("cache-control", "no-store"),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_answers_any_well_formed_id_and_nothing_else() {
        let id = TransferId([9; 16]);
        assert!(asset(&format!("/r/{id}")).is_some_and(|a| a.content_type.starts_with("text/html")));
        assert!(asset("/r/not-an-id").is_none());
        assert!(asset("/r/").is_none());
        assert!(asset("/web/app.js").is_some());
        assert!(asset("/web/../Cargo.toml").is_none());
        assert!(asset("/web/").is_none());
    }

    #[test]
    fn the_page_loads_no_inline_script_and_only_embedded_files() {
        let html = std::str::from_utf8(PAGE.body).unwrap();
        for tag in html.split("<script").skip(1) {
            let open = &tag[..tag.find('>').unwrap()];
            assert!(open.contains("src=\"/web/"), "an inline or foreign script: <script{open}>");
        }
        for src in html.split("src=\"").skip(1).chain(html.split("href=\"").skip(1)) {
            let url = &src[..src.find('"').unwrap()];
            let name = url.strip_prefix(ASSET_PREFIX).unwrap_or_else(|| panic!("{url} is not an embedded file"));
            assert!(FILES.iter().any(|(n, _)| *n == name), "{url} is not embedded");
        }
    }
}
