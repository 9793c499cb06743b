//! The receiver's HTTP path: probe every address for an authentic manifest, then stream the
//! frames of one request into the disk worker, cutting the byte stream at frame boundaries.

use std::{sync::Arc, time::Duration};

use bytes::BytesMut;
use http_body_util::BodyExt;
use tokio::sync::mpsc;

use super::{Event, Events, worker::WorkerIn};
use crate::{
    core::Request,
    error::{Result, TransferError},
    frame::{self, FrameKind, HEADER_LEN, Opened, Opener, TAG_LEN},
    manifest::Manifest,
    ticket::Ticket,
    transport::{
        PathKind,
        http::{Connected, HttpPeer, connect_any},
    },
};

/// How long one round of probes may take before it counts as failed.
pub(super) const PROBE_BUDGET: Duration = Duration::from_secs(5);

/// The whole-file hash a manifest announces, if it does.
pub(super) fn expected_hash(manifest: &Manifest) -> Option<[u8; 32]> {
    let raw = data_encoding::HEXLOWER.decode(manifest.sha256.as_deref()?.as_bytes()).ok()?;
    raw.try_into().ok()
}

/// Race the ticket's addresses for an authentic manifest; every finished try becomes an
/// `attempt` event.
pub(super) async fn probe_http(ticket: &Ticket, expect: &Manifest, events: &Events) -> Result<(HttpPeer, Manifest)> {
    let (key, id, expect) = (ticket.session_key.clone(), ticket.transfer_id, expect.clone());
    let verify = move |frame: &mut BytesMut| {
        let mut opener = Opener::new(key.clone(), id, 0);
        let not_ours = || TransferError::IntegrityMismatch("the answer is not sealed with the ticket's key".into());
        let opened = opener.open(frame).map_err(|_| not_ours())?;
        if opened.kind != FrameKind::Manifest {
            return Err(not_ours());
        }
        let manifest: Manifest = serde_json::from_slice(Opened::payload(frame))
            .map_err(|e| TransferError::Protocol(format!("manifest: {e}")))?;
        if manifest.size != expect.size || manifest.chunk_size != expect.chunk_size {
            return Err(TransferError::Protocol("the manifest disagrees with the ticket".into()));
        }
        Ok(manifest)
    };
    let token = ticket.session_key.http_token(&id);
    let (result, attempts) = connect_any(&ticket.addrs, id, &token, PROBE_BUDGET, verify).await;
    for a in attempts {
        events
            .send(Event::Attempt {
                transfer_id: id,
                path: PathKind::Http.as_str(),
                addr: a.addr.to_string(),
                ok: a.error.is_none(),
                elapsed_ms: a.elapsed.as_millis() as u64,
                error_code: a.error.as_ref().map(|e| e.code()),
            })
            .await;
    }
    let Connected { peer, answer } = result?;
    Ok((peer, answer))
}

/// One request on the HTTP path: dial, probe, stream frames to the worker.
pub(super) struct NetTask {
    pub ticket: Arc<Ticket>,
    pub manifest: Manifest,
    pub to_worker: mpsc::Sender<WorkerIn>,
    pub events: Events,
    pub generation: u64,
}

impl NetTask {
    pub async fn run(self, request: Request) {
        let fatal = match self.stream(request).await {
            Ok(()) => None,
            Err(e @ TransferError::Unauthorized) => Some(e),
            Err(e) => {
                tracing::debug!(transfer = %self.ticket.transfer_id, "stream ended: {e}");
                None
            }
        };
        let _ = self.to_worker.send(WorkerIn::StreamEnd { generation: self.generation, fatal }).await;
    }

    async fn connect(&self) -> Result<HttpPeer> {
        let (peer, manifest) = probe_http(&self.ticket, &self.manifest, &self.events).await?;
        if let Some(hash) = expected_hash(&manifest) {
            let _ = self.to_worker.send(WorkerIn::Expected(hash)).await;
        }
        Ok(peer)
    }

    async fn stream(&self, request: Request) -> Result<()> {
        let mut peer = self.connect().await?;
        let mut body = peer.frames(request).await?;
        let max_chunk = self.manifest.chunk_size as usize;
        let frame_capacity = HEADER_LEN + max_chunk + TAG_LEN;
        let mut buf = BytesMut::with_capacity(frame_capacity);
        while let Some(next) = body.frame().await {
            let data = next.map_err(|e| TransferError::PeerUnreachable(e.to_string()))?;
            let Ok(data) = data.into_data() else { continue };
            buf.extend_from_slice(&data);
            loop {
                match frame::check(&buf, max_chunk) {
                    Ok(Some(len)) => {
                        let whole = buf.split_to(len);
                        buf.reserve(frame_capacity);
                        if self.to_worker.send(WorkerIn::Frame(whole)).await.is_err() {
                            return Ok(());
                        }
                    }
                    Ok(None) => break,
                    Err(e) => {
                        // The stream is desynchronised: count it as one bad frame and start over.
                        let _ = self.to_worker.send(WorkerIn::Frame(BytesMut::new())).await;
                        return Err(TransferError::Protocol(format!("bad frame header: {e}")));
                    }
                }
            }
        }
        if !buf.is_empty() {
            return Err(TransferError::PeerUnreachable("the stream ended inside a frame".into()));
        }
        Ok(())
    }
}
