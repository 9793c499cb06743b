//! Transfers and received files as MCP resources, for hosts that watch instead of polling and
//! agents that have no file tool.
//!
//! - `agentferry://transfers/{transfer_id}`: the transfer's status as JSON (what check_session
//!   shows; no ticket, no secret). `resources/subscribe` to it delivers
//!   `notifications/resources/updated` whenever its state or progress changes, through to the
//!   final state; a transfer id not known yet may be subscribed to, and its appearance is the
//!   first change.
//! - `agentferry://files/{transfer_id}`: the file a completed incoming transfer saved, and
//!   `agentferry://files/{transfer_id}/{relative path}` a file inside a received folder (path
//!   segments percent-encoded). Read as a base64 blob with a MIME type guessed from the name, up
//!   to [`MAX_READ_BYTES`]; larger files are refused (`resource_too_large`) and are read from
//!   `saved_to` instead. The path is resolved (symlinks, `..`) and must stay inside what the
//!   transfer saved.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
};

use base64::{Engine as _, engine::general_purpose::STANDARD as B64};
use rmcp::{
    ErrorData, Peer, RoleServer,
    model::{ReadResourceResult, Resource, ResourceContents, ResourceTemplate},
};
use serde_json::json;

use super::{FerryServer, JOURNAL_POLL};
use crate::{
    id::TransferId,
    journal::{Role, State, TransferStatus},
};

/// The largest file `resources/read` returns (10 MiB; base64 makes the answer a third larger).
pub(super) const MAX_READ_BYTES: u64 = 10 * 1024 * 1024;
/// Files listed per received folder at most.
const MAX_LISTED_PER_FOLDER: usize = 1000;

const TRANSFERS: &str = "agentferry://transfers/";
const FILES: &str = "agentferry://files/";

/// Open subscriptions: the URI and the task that notifies about it.
#[derive(Clone, Default)]
pub(super) struct Subscriptions(Arc<Mutex<HashMap<String, tokio::task::AbortHandle>>>);

/// A JSON-RPC error with our `{code, hint}` as data.
fn error(not_found: bool, code: &str, message: String, hint: &str) -> ErrorData {
    let data = Some(json!({ "code": code, "hint": hint }));
    if not_found { ErrorData::resource_not_found(message, data) } else { ErrorData::invalid_params(message, data) }
}

fn unknown(uri: &str) -> ErrorData {
    error(
        true,
        "resource_not_found",
        format!("no resource {uri}"),
        "call resources/list, or check_session, to see the transfers and received files",
    )
}

pub(super) fn templates() -> Vec<ResourceTemplate> {
    vec![
        ResourceTemplate::new(format!("{TRANSFERS}{{transfer_id}}"), "transfer")
            .with_title("A transfer's status")
            .with_description("The status check_session shows, as JSON; subscribe to follow it")
            .with_mime_type("application/json"),
        ResourceTemplate::new(format!("{FILES}{{transfer_id}}"), "received file")
            .with_title("A received file")
            .with_description(format!("The file a completed incoming transfer saved, up to {MAX_READ_BYTES} bytes")),
        ResourceTemplate::new(format!("{FILES}{{transfer_id}}/{{+path}}"), "file in a received folder")
            .with_title("A file inside a received folder")
            .with_description(format!("Path relative to the folder, up to {MAX_READ_BYTES} bytes")),
    ]
}

/// Every transfer, and every file completed incoming transfers saved.
pub(super) async fn list(server: &FerryServer) -> Result<Vec<Resource>, ErrorData> {
    let node = server.node().await;
    let transfers = server.registry.list(&node).map_err(internal)?;
    let mut resources = Vec::new();
    for t in &transfers {
        resources.push(
            Resource::new(format!("{TRANSFERS}{}", t.transfer_id), format!("transfer {}", t.file_name))
                .with_description(format!("{:?} {:?}", t.role, t.state).to_lowercase())
                .with_mime_type("application/json"),
        );
    }
    for t in transfers.iter().filter(|t| t.role == Role::Receive && t.state == State::Completed) {
        let Some(saved) = &t.saved_to else { continue };
        match std::fs::symlink_metadata(saved) {
            Ok(m) if m.is_file() => resources.push(file_resource(&format!("{FILES}{}", t.transfer_id), saved, m.len())),
            Ok(m) if m.is_dir() => {
                for (rel, size) in walk(saved) {
                    let uri = format!("{FILES}{}/{}", t.transfer_id, encode(&rel));
                    resources.push(file_resource(&uri, &saved.join(&rel), size));
                }
            }
            _ => {}
        }
    }
    Ok(resources)
}

fn file_resource(uri: &str, path: &Path, size: u64) -> Resource {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    Resource::new(uri, name).with_mime_type(mime_type(path)).with_size(size)
}

/// Regular files below `dir` (relative, `/`-separated), symlinks skipped, at most
/// [`MAX_LISTED_PER_FOLDER`].
fn walk(dir: &Path) -> Vec<(String, u64)> {
    let mut found = Vec::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(dir.join(&rel)) else { continue };
        for entry in entries.flatten() {
            let Ok(meta) = entry.path().symlink_metadata() else { continue };
            let child = rel.join(entry.file_name());
            if meta.is_dir() {
                stack.push(child);
            } else if meta.is_file() {
                found.push((child.to_string_lossy().into_owned(), meta.len()));
                if found.len() >= MAX_LISTED_PER_FOLDER {
                    return found;
                }
            }
        }
    }
    found.sort();
    found
}

pub(super) async fn read(server: &FerryServer, uri: &str) -> Result<ReadResourceResult, ErrorData> {
    if let Some(id) = uri.strip_prefix(TRANSFERS) {
        let status = transfer(server, id).await.ok_or_else(|| unknown(uri))?;
        let text = serde_json::to_string(&status).expect("status serialises");
        let contents = ResourceContents::text(text, uri).with_mime_type("application/json");
        return Ok(ReadResourceResult::new(vec![contents]));
    }
    let Some(rest) = uri.strip_prefix(FILES) else { return Err(unknown(uri)) };
    let (id, rel) = rest.split_once('/').map_or((rest, None), |(id, rel)| (id, Some(rel)));
    let status = transfer(server, id).await.filter(|s| s.role == Role::Receive).ok_or_else(|| unknown(uri))?;
    let saved = match (&status.state, &status.saved_to) {
        (State::Completed, Some(saved)) => saved.clone(),
        _ => {
            return Err(error(
                true,
                "transfer_not_completed",
                format!("transfer {id} has not completed; its file cannot be read yet"),
                "subscribe to agentferry://transfers/{id}, or call check_session with wait: true, then read again",
            ));
        }
    };
    let path = match rel {
        None => saved.clone(),
        Some(rel) => {
            let rel = decode(rel).filter(|r| is_relative_inside(r)).ok_or_else(|| unknown(uri))?;
            saved.join(rel)
        }
    };
    // Resolved, it must still be the saved file or inside the saved folder.
    let real = std::fs::canonicalize(&path).map_err(|_| unknown(uri))?;
    let root = std::fs::canonicalize(&saved).map_err(|_| unknown(uri))?;
    let meta = std::fs::metadata(&real).map_err(|_| unknown(uri))?;
    if !real.starts_with(&root) || !meta.is_file() {
        return Err(if meta.is_dir() && rel.is_none() {
            error(
                true,
                "resource_is_folder",
                format!("transfer {id} saved a folder"),
                "read one file in it: resources/list lists them as agentferry://files/{id}/{path}",
            )
        } else {
            unknown(uri)
        });
    }
    if meta.len() > MAX_READ_BYTES {
        return Err(error(
            false,
            "resource_too_large",
            format!("the file is {} bytes; resources/read returns at most {MAX_READ_BYTES}", meta.len()),
            "read it from the path in the transfer's saved_to (check_session shows it) with a file tool",
        ));
    }
    let bytes = tokio::fs::read(&real).await.map_err(internal)?;
    let contents = ResourceContents::blob(B64.encode(bytes), uri).with_mime_type(mime_type(&real));
    Ok(ReadResourceResult::new(vec![contents]))
}

/// The status of transfer `id` (its receiving side first, when this node has both).
async fn transfer(server: &FerryServer, id: &str) -> Option<TransferStatus> {
    let id: TransferId = id.parse().ok()?;
    let node = server.node().await;
    let mut all = server.status_of(&node, &id).ok()?;
    all.sort_by_key(|s| s.role != Role::Receive);
    all.into_iter().next()
}

/// Start notifying `peer` about changes of `uri` (a transfer).
pub(super) async fn subscribe(server: &FerryServer, uri: &str, peer: Peer<RoleServer>) -> Result<(), ErrorData> {
    let Some(id) = uri.strip_prefix(TRANSFERS).and_then(|id| id.parse::<TransferId>().ok()) else {
        return Err(error(
            false,
            "not_subscribable",
            format!("{uri} does not change; only transfers can be subscribed to"),
            "subscribe to agentferry://transfers/{transfer_id}",
        ));
    };
    // A transfer not known yet may be subscribed to (a receiver can subscribe before it
    // accepts); its appearance is the first change.
    let first = transfer(server, &id.to_string()).await;
    let task = tokio::spawn(follow(server.clone(), id, uri.to_owned(), first, peer));
    if let Some(old) = server.subscriptions.0.lock().expect("not poisoned").insert(uri.to_owned(), task.abort_handle())
    {
        old.abort();
    }
    Ok(())
}

pub(super) fn unsubscribe(server: &FerryServer, uri: &str) {
    if let Some(task) = server.subscriptions.0.lock().expect("not poisoned").remove(uri) {
        task.abort();
    }
}

/// Notify `peer` each time the transfer's state or progress changes, until a final state.
async fn follow(
    server: FerryServer,
    id: TransferId,
    uri: String,
    first: Option<TransferStatus>,
    peer: Peer<RoleServer>,
) {
    let is_final = |state: State| state == State::Completed || state == State::Failed;
    let mut last = first.as_ref().map(|s| (s.state, s.bytes_done));
    let mut done = last.is_some_and(|(state, _)| is_final(state));
    while !done {
        match server.registry.watch(&id) {
            // Running here: wake on its next change.
            Some(mut live) => {
                if live.changed().await.is_err() {
                    tokio::time::sleep(JOURNAL_POLL).await;
                }
            }
            // Pending, or run by another process: read the journal again.
            None => tokio::time::sleep(JOURNAL_POLL).await,
        }
        let Some(now) = transfer(&server, &id.to_string()).await else { continue };
        if Some((now.state, now.bytes_done)) != last {
            last = Some((now.state, now.bytes_done));
            done = is_final(now.state);
            let updated = rmcp::model::ResourceUpdatedNotificationParam::new(uri.clone());
            if peer.notify_resource_updated(updated).await.is_err() {
                break;
            }
        }
    }
    server.subscriptions.0.lock().expect("not poisoned").remove(&uri);
}

fn internal(e: impl std::fmt::Display) -> ErrorData {
    ErrorData::internal_error(e.to_string(), None)
}

/// A `/`-separated relative path with no `..`, `.` or empty segment.
fn is_relative_inside(rel: &str) -> bool {
    !rel.is_empty() && rel.split('/').all(|s| !s.is_empty() && s != "." && s != "..")
}

/// Percent-encode everything but unreserved characters and `/`.
fn encode(rel: &str) -> String {
    let mut out = String::new();
    for b in rel.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Undo [`encode`] (and any percent-encoding, as in `file://` URIs).
pub(super) fn decode(s: &str) -> Option<String> {
    let mut out = Vec::new();
    let mut bytes = s.bytes();
    while let Some(b) = bytes.next() {
        if b == b'%' {
            let hex = [bytes.next()?, bytes.next()?];
            out.push(u8::from_str_radix(std::str::from_utf8(&hex).ok()?, 16).ok()?);
        } else {
            out.push(b);
        }
    }
    String::from_utf8(out).ok()
}

/// The MIME type of a file, from its extension; `application/octet-stream` when unknown.
fn mime_type(path: &Path) -> &'static str {
    let ext = path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).unwrap_or_default();
    match ext.as_str() {
        "txt" | "log" => "text/plain",
        "md" => "text/markdown",
        "csv" => "text/csv",
        "html" | "htm" => "text/html",
        "json" => "application/json",
        "xml" => "application/xml",
        "yaml" | "yml" => "application/yaml",
        "pdf" => "application/pdf",
        "zip" => "application/zip",
        "gz" | "tgz" => "application/gzip",
        "tar" => "application/x-tar",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "svg" => "image/svg+xml",
        "mp3" => "audio/mpeg",
        "wav" => "audio/wav",
        "mp4" => "video/mp4",
        "rs" | "py" | "js" | "ts" | "sh" | "c" | "h" | "go" | "toml" => "text/plain",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_in_uris_round_trip_and_cannot_climb() {
        let rel = "sub dir/ünï/a%b.txt";
        assert_eq!(decode(&encode(rel)).unwrap(), rel);
        assert!(!encode(rel).contains(' '));
        for bad in ["../x", "a/../../x", "/etc/passwd", "a//b", "./a", ""] {
            assert!(!is_relative_inside(&decode(bad).unwrap()), "{bad}");
        }
        assert!(is_relative_inside("a/b.txt"));
        assert_eq!(mime_type(Path::new("x.PNG")), "image/png");
        assert_eq!(mime_type(Path::new("x")), "application/octet-stream");
    }
}
