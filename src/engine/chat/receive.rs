//! The receiver on the messages path: a transfer opens from its first message (a ticket, or an
//! offer sealed under one of this node's grants), its chunks go to the `.part` file as they come,
//! and each call ends with a sync, a checkpoint in the journal and one need posted back, or with
//! the verified file placed under its final name and the completion posted back.

use std::{collections::BTreeMap, fs::File, os::unix::fs::FileExt};

use sha2::{Digest, Sha256};

use super::{ChatTransfer, Outcome, Table, Taken, WINDOW, side_address};
use crate::{
    chat::{self, Envelope},
    core::{ChatReceive, Control, Verdict},
    crypto::{ct_eq, random_epoch},
    engine::{
        Node, ReceiveOptions,
        receive::{disk, new_record},
        send::outgoing::hex,
    },
    error::{Result, TransferError},
    frame::{FrameKind, Opened, Opener, Sealer},
    id::TransferId,
    journal::{OwnerLock, Record, Role, Side, State, unix_now},
    manifest::Manifest,
    offer::Offer,
    ticket::Ticket,
};

/// One transfer this node receives as messages.
pub(super) struct Incoming {
    record: Record,
    ticket: Ticket,
    manifest: Manifest,
    /// `None` once completed or failed.
    live: Option<Live>,
}

struct Live {
    _lock: OwnerLock,
    file: File,
    core: ChatReceive,
    opener: Opener,
    hash: Option<[u8; 32]>,
    /// Chunks were written since the last sync.
    dirty: bool,
}

fn manifest(ticket: &Ticket) -> Manifest {
    Manifest { name: ticket.name.clone(), size: ticket.size, chunk_size: ticket.chunk_size, sha256: None }
}

fn temp_path(record: &Record) -> &std::path::Path {
    let Side::Receive { temp_path, .. } = &record.side else { unreachable!("a receive record") };
    temp_path
}

/// The first message to an unpaired receiver: the ticket.
pub(super) fn open_ticket(
    node: &Node,
    table: &mut Table,
    text: &str,
    options: &ReceiveOptions,
) -> Result<(Outcome, Option<TransferId>)> {
    let ticket: Ticket = text.parse()?;
    open(node, table, ticket, None, options)
}

/// The first message to a paired peer: an offer sealed under one of this node's grants. The
/// same checks as the inbox: the grant exists, the offer is authentic and fresh, and the grant
/// still allows it (expiry, quota, the sender's name).
pub(super) fn open_offer(
    node: &Node,
    table: &mut Table,
    bytes: &[u8],
    options: &ReceiveOptions,
) -> Result<(Outcome, Option<TransferId>)> {
    let offer: Offer = serde_json::from_slice(bytes)
        .map_err(|_| TransferError::MessageMalformed("the offer does not decode".into()))?;
    let refused = |why: &str| TransferError::OfferRefused(why.into());
    let grant = node.trust().grant(&offer.grant_id)?.ok_or_else(|| refused("grant_unknown"))?;
    let now = unix_now();
    let ticket = offer.open(&grant.secret_bytes()?, now).map_err(|e| refused(&e.to_string()))?;
    if node.journal().load(&ticket.transfer_id, Role::Receive)?.is_none()
        && let Some(reason) = node.trust().claim(&grant.id, &offer.from, ticket.size, now)?
    {
        return Err(refused(reason));
    }
    open(node, table, ticket, Some(offer.from), options)
}

fn open(
    node: &Node,
    table: &mut Table,
    ticket: Ticket,
    peer: Option<String>,
    options: &ReceiveOptions,
) -> Result<(Outcome, Option<TransferId>)> {
    let id = ticket.transfer_id;
    if node.journal().load(&id, Role::Send)?.is_some() {
        return Ok((Outcome::Skipped, None)); // our own first message, seen in the chat
    }
    if table.receiving.contains_key(&id) || node.journal().load(&id, Role::Receive)?.is_some() {
        return Ok((Outcome::Skipped, Some(id))); // a repeat: answer with what is still needed
    }
    chat::check_size(ticket.size)?;
    if ticket.folder {
        return Err(TransferError::MessageMalformed("a folder does not travel as messages".into()));
    }
    let options = ReceiveOptions { peer, ..options.clone() };
    let mut record = Record { messages: true, ..new_record(node, ticket.clone(), &options)? };
    let lock = node.journal().try_lock(&id, Role::Receive)?.expect("a new transfer has no owner");
    disk::check_space(temp_path(&record), ticket.size)?;
    let (file, _) = disk::open_temp(temp_path(&record), false).map_err(|e| TransferError::io(temp_path(&record), e))?;
    node.journal().save(&mut record)?;
    table.know(&ticket, Role::Receive);
    let manifest = manifest(&ticket);
    let live = Live {
        _lock: lock,
        file,
        core: ChatReceive::new(manifest.chunk_count(), 0),
        opener: Opener::new(ticket.session_key.clone(), id, ticket.chunk_size as usize),
        hash: None,
        dirty: false,
    };
    table.receiving.insert(id, Incoming { record, ticket, manifest, live: Some(live) });
    Ok((Outcome::Accepted, Some(id)))
}

/// The transfer `id`, taken over from the journal if this process does not drive it yet.
fn entry<'t>(node: &Node, table: &'t mut Table, id: TransferId) -> Result<&'t mut Incoming> {
    if let std::collections::hash_map::Entry::Vacant(slot) = table.receiving.entry(id) {
        let record =
            node.journal().load(&id, Role::Receive)?.ok_or_else(|| TransferError::TransferNotFound(id.to_string()))?;
        let ticket: Ticket = record.ticket.parse()?;
        let manifest = manifest(&ticket);
        let live = match record.state {
            State::Completed | State::Failed => None,
            _ => {
                let lock = node.journal().claim(&record)?;
                let Side::Receive { durable_chunks, temp_path, .. } = &record.side else { unreachable!() };
                let (file, kept) = disk::open_temp(temp_path, true).map_err(|e| TransferError::io(temp_path, e))?;
                let durable = if kept { *durable_chunks } else { 0 };
                Some(Live {
                    _lock: lock,
                    file,
                    core: ChatReceive::new(manifest.chunk_count(), durable),
                    opener: Opener::new(ticket.session_key.clone(), id, ticket.chunk_size as usize),
                    hash: None,
                    dirty: false,
                })
            }
        };
        let mut incoming = Incoming { record, ticket, manifest, live };
        if incoming.live.is_some() && incoming.record.state != State::Active {
            incoming.record.state = State::Active;
            incoming.record.error = None;
            node.journal().save(&mut incoming.record)?;
        }
        slot.insert(incoming);
    }
    Ok(table.receiving.get_mut(&id).expect("inserted above"))
}

/// A sealed frame for this side of transfer `id`: open it, write a new chunk, keep the trailer.
pub(super) fn frame(node: &Node, table: &mut Table, id: TransferId, mut frame: Vec<u8>) -> Result<Outcome> {
    let incoming = entry(node, table, id)?;
    let Some(live) = &mut incoming.live else { return Ok(Outcome::Skipped) };
    let opened = live.opener.open(&mut frame).map_err(|e| TransferError::MessageTampered(e.to_string()))?;
    let payload = Opened::payload(&frame);
    let m = &incoming.manifest;
    match opened.kind {
        FrameKind::Chunk => {
            let index = opened.index;
            if index >= m.chunk_count() || payload.len() != m.chunk_len(index) {
                return Err(TransferError::Protocol(format!("chunk {index} has the wrong length or index")));
            }
            match live.core.handle_chunk(index).expect("checked above") {
                Verdict::Write => {
                    let path = temp_path(&incoming.record);
                    live.file.write_all_at(payload, m.offset(index)).map_err(|e| TransferError::io(path, e))?;
                    live.dirty = true;
                    Ok(Outcome::Accepted)
                }
                Verdict::Duplicate => Ok(Outcome::Skipped),
            }
        }
        FrameKind::Trailer => {
            let hash: [u8; 32] =
                payload.try_into().map_err(|_| TransferError::Protocol("the trailer is not a SHA-256".into()))?;
            if live.hash.is_some_and(|h| h != hash) {
                return Err(TransferError::IntegrityMismatch("the sender announced two different hashes".into()));
            }
            let new = live.hash.replace(hash).is_none();
            live.core.handle_trailer();
            Ok(if new { Outcome::Accepted } else { Outcome::Skipped })
        }
        FrameKind::Manifest | FrameKind::Control => Ok(Outcome::Skipped),
    }
}

/// End of a call for transfer `id`: make what arrived durable and checkpoint it, then post the
/// next need, or verify, place and post the completion.
pub(super) fn answer(node: &Node, table: &mut Table, id: TransferId, taken: &mut Taken) {
    let mut error = None;
    let incoming = match entry(node, table, id) {
        Ok(incoming) => incoming,
        Err(e) => {
            taken.rejected.push((None, e));
            return;
        }
    };
    if let Err(e) = step(node, incoming, taken) {
        incoming.record.fail(&e);
        incoming.live = None;
        if let Err(e) = node.journal().save(&mut incoming.record) {
            tracing::warn!("{e}");
        }
        error = Some(e);
    }
    let (record, m) = (&incoming.record, &incoming.manifest);
    let Side::Receive { durable_chunks, saved_to, .. } = &record.side else { unreachable!() };
    let chunks_done = incoming.live.as_ref().map_or(*durable_chunks, |l| l.core.have());
    taken.transfers.push(ChatTransfer {
        transfer_id: id,
        role: Role::Receive,
        state: record.state,
        file_name: record.name.clone(),
        chunks_done,
        chunks_total: m.chunk_count(),
        saved_to: saved_to.clone(),
        sha256: record.sha256.clone(),
        error,
    });
}

fn step(node: &Node, incoming: &mut Incoming, taken: &mut Taken) -> Result<()> {
    let post = |incoming: &Incoming, control: &Control, words: String| {
        let (ticket, to) = (&incoming.ticket, side_address(&incoming.ticket, Role::Send));
        let json = serde_json::to_vec(control).expect("controls serialise");
        let frame = Sealer::new(&ticket.session_key, ticket.transfer_id, random_epoch())
            .seal_bytes(FrameKind::Control, 0, &json)
            .to_vec();
        Envelope::ToSender { to, frame }.to_text(&words)
    };
    let total = incoming.manifest.chunk_count();
    if let Some(live) = &mut incoming.live {
        let path = temp_path(&incoming.record).to_owned();
        if std::mem::take(&mut live.dirty) {
            live.file.sync_data().map_err(|e| TransferError::io(&path, e))?;
        }
        let prefix = live.core.durable_prefix();
        let Side::Receive { durable_chunks, .. } = &mut incoming.record.side else { unreachable!() };
        if prefix > *durable_chunks {
            *durable_chunks = prefix;
            node.journal().save(&mut incoming.record)?;
        }
        if !live.core.is_complete() {
            let need = live.core.need(WINDOW).expect("not complete");
            let control = Control::Need { chunks: need.chunks, trailer: need.trailer, have: need.have };
            taken.messages.push(post(incoming, &control, format!("agentferry reply {}/{total}", need.have)));
            return Ok(());
        }
        finish(node, incoming)?;
    }
    if let (State::Completed, Some(sha256)) = (incoming.record.state, incoming.record.sha256.clone()) {
        let words = format!("agentferry done {total}/{total}");
        taken.messages.push(post(incoming, &Control::Complete { sha256 }, words));
    }
    Ok(())
}

/// Every chunk and the trailer are durable: check the whole file's SHA-256, then place it.
fn finish(node: &Node, incoming: &mut Incoming) -> Result<()> {
    let live = incoming.live.take().expect("live");
    let path = temp_path(&incoming.record).to_owned();
    let io = |e| TransferError::io(&path, e);
    live.file.set_len(incoming.manifest.size).map_err(io)?;
    live.file.sync_all().map_err(io)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0; 1 << 16];
    let mut offset = 0;
    while offset < incoming.manifest.size {
        let n = live.file.read_at(&mut buf, offset).map_err(io)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        offset += n as u64;
    }
    let whole: [u8; 32] = hasher.finalize().into();
    let expected = live.hash.expect("complete means the trailer arrived");
    if !ct_eq(&whole, &expected) {
        let _ = std::fs::remove_file(&path);
        return Err(TransferError::IntegrityMismatch(format!(
            "the received file's SHA-256 is {}, the sender's is {}",
            hex(&whole),
            hex(&expected)
        )));
    }
    let Side::Receive { output_dir, file_name, overwrite, saved_to, .. } = &mut incoming.record.side else {
        unreachable!()
    };
    let target = output_dir.join(&*file_name);
    let written = disk::FileId::of_file(&live.file).map_err(io)?;
    disk::place(&path, written, &target, *overwrite)?;
    *saved_to = Some(target);
    incoming.record.complete(&hex(&whole), None, None, &BTreeMap::new());
    incoming.record.last_path = Some("messages".into());
    node.journal().save(&mut incoming.record)?;
    Ok(())
}
