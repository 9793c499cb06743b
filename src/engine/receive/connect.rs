//! Connecting the paths a ticket names, for the receiver.
//!
//! Every path is connected the same way: post a sealed `hello`, accept the first answer that is
//! the sender's manifest sealed under the session key and agreeing with the ticket. Each try
//! becomes an `attempt` event.

use std::time::Duration;

use bytes::{Bytes, BytesMut};

use crate::engine::{
    Event, Events,
    keys::{mailboxes, signalling},
};
use crate::{
    core::Control,
    core::PathKind,
    crypto::{SessionKey, random_epoch},
    error::{Result, TransferError},
    frame::{FrameKind, Opened, Opener, Sealer},
    id::TransferId,
    manifest::Manifest,
    ticket::Ticket,
    transport::{self, AttemptReport, Connected, webrtc::IceConfig},
};

/// How long one connection attempt may take before it counts as failed.
pub(super) const CONNECT_BUDGET: Duration = Duration::from_secs(5);
/// A WebRTC attempt does more: gather candidates, signal through the channel, ICE checks, DTLS,
/// SCTP, then the hello.
const WEBRTC_BUDGET: Duration = Duration::from_secs(10);

/// Seals the receiver's control frames for one run: one epoch, increasing sequence numbers.
pub(super) struct ControlSealer {
    sealer: Sealer,
    sequence: u64,
}

impl ControlSealer {
    pub(super) fn new(ticket: &Ticket) -> Self {
        ControlSealer { sealer: Sealer::new(&ticket.session_key, ticket.transfer_id, random_epoch()), sequence: 0 }
    }

    pub(super) fn seal(&mut self, control: &Control) -> Bytes {
        self.sequence += 1;
        let json = serde_json::to_vec(control).expect("control serialises");
        self.sealer.seal_bytes(FrameKind::Control, self.sequence, &json).freeze()
    }
}

/// A connected path and what its manifest announced.
pub(super) struct PathConnected {
    pub connected: Connected,
    /// The whole-file hash, when the sender already knows it.
    pub sha256: Option<[u8; 32]>,
}

/// Does this frame hold the sender's manifest, sealed under the session key and agreeing with
/// the ticket? Opens the frame in place.
fn check_manifest(key: SessionKey, id: TransferId, size: u64, chunk_size: u32) -> impl Fn(&mut BytesMut) -> Result<()> {
    move |frame: &mut BytesMut| {
        let not_ours = || TransferError::IntegrityMismatch("the answer is not sealed with the ticket's key".into());
        let opened = Opener::new(key.clone(), id, 0).open(frame).map_err(|_| not_ours())?;
        if opened.kind != FrameKind::Manifest {
            return Err(not_ours());
        }
        let manifest: Manifest = serde_json::from_slice(Opened::payload(frame))
            .map_err(|e| TransferError::Protocol(format!("manifest: {e}")))?;
        if manifest.size != size || manifest.chunk_size != chunk_size {
            return Err(TransferError::Protocol("the manifest disagrees with the ticket".into()));
        }
        Ok(())
    }
}

/// Connect `kind` as the ticket describes it.
pub(super) async fn connect(
    kind: PathKind,
    ticket: &Ticket,
    ice: &IceConfig,
    hello: Bytes,
    events: &Events,
) -> Result<PathConnected> {
    let (key, id) = (ticket.session_key.clone(), ticket.transfer_id);
    let check = check_manifest(key.clone(), id, ticket.size, ticket.chunk_size);
    let (result, reports) = match kind {
        PathKind::Http => {
            let token = key.http_token(&id);
            let max_chunk = ticket.chunk_size as usize;
            transport::http::connect(&ticket.addrs, id, &token, max_chunk, hello, CONNECT_BUDGET, check).await
        }
        PathKind::Webrtc => {
            let hint = ticket.channel.as_deref().ok_or_else(|| TransferError::PathUnavailable("webrtc".into()))?;
            let (signalling, max_chunk) = (signalling(&key, &id), ticket.chunk_size as usize);
            let (result, report) =
                transport::webrtc::connect(hint, signalling, ice, hello, max_chunk, WEBRTC_BUDGET, check).await;
            (result, vec![report])
        }
        PathKind::Relay => {
            let hint = ticket.channel.as_deref().ok_or_else(|| TransferError::PathUnavailable("relay".into()))?;
            let (result, report) =
                transport::channel::connect(hint, mailboxes(&key, &id), hello, CONNECT_BUDGET, check).await;
            (result, vec![report])
        }
    };
    for report in reports {
        events.send(attempt(id, report)).await;
    }
    let connected = result?;
    let manifest: Manifest = serde_json::from_slice(Opened::payload(&connected.manifest))
        .map_err(|e| TransferError::Protocol(format!("manifest: {e}")))?;
    let sha256 = manifest
        .sha256
        .and_then(|hex| data_encoding::HEXLOWER.decode(hex.as_bytes()).ok())
        .and_then(|raw| raw.try_into().ok());
    Ok(PathConnected { connected, sha256 })
}

fn attempt(transfer_id: TransferId, report: AttemptReport) -> Event {
    Event::Attempt {
        transfer_id,
        path: report.kind.as_str(),
        addr: report.peer,
        ok: report.error.is_none(),
        elapsed_ms: report.elapsed.as_millis() as u64,
        error_code: report.error.as_ref().map(|e| e.code()),
        route: report.route,
    }
}
