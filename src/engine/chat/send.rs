//! The sender on the messages path: open a transfer (its first messages), answer each need with
//! the chunks it lists, sealed under a fresh epoch, and take the receiver's completion.
//!
//! Nothing per chunk is kept: after a restart the journal record (ticket, file, modification
//! time, whole-file hash) is all it takes, and until the receiver's next need arrives an empty
//! call posts the opening again.

use std::{collections::BTreeMap, fs::File, os::unix::fs::FileExt};

use sha2::{Digest, Sha256};

use super::{ChatTransfer, MessagesOptions, Opened, Outcome, Table, Taken, WINDOW, side_address};
use crate::{
    chat::{self, Envelope},
    core::{Control, Need, Transmit, freshest, opening, transmits},
    crypto::{SessionKey, ct_eq, random_epoch},
    engine::{
        Node,
        send::outgoing::{Source, hex, mtime_ns},
    },
    error::{Result, TransferError},
    frame::{FLAG_LAST, FrameKind, Opened as OpenedFrame, Opener, Sealer},
    id::TransferId,
    journal::{OwnerLock, Record, Role, Side, State, unix_now},
    manifest::Manifest,
    names::safe_file_name,
    offer::Offer,
    ticket::Ticket,
    tree::source::change_stamp,
};

/// One transfer this node sends as messages.
pub(crate) struct Sending {
    record: Record,
    ticket: Ticket,
    manifest: Manifest,
    /// `None` once completed or failed.
    live: Option<Live>,
}

struct Live {
    _lock: OwnerLock,
    file: File,
    opener: Opener,
    /// The last need answered, posted again when asked to repeat; `None` before the first.
    last: Option<Need>,
    /// A need came from the receiver since this process took the transfer: it has the first
    /// message. Until then a repeat posts the first message again (it may have been lost).
    heard: bool,
}

fn manifest(ticket: &Ticket) -> Manifest {
    Manifest { name: ticket.name.clone(), size: ticket.size, chunk_size: ticket.chunk_size, sha256: None }
}

/// Open a transfer of one file as messages: the first message (ticket or sealed offer) and the
/// first window of chunks.
pub(super) fn start(node: &Node, table: &mut Table, options: MessagesOptions) -> Result<Opened> {
    let max_chars = chat::check_max_chars(options.max_chars)?;
    let unreadable =
        |reason: String| TransferError::SourceUnreadable { path: options.path.display().to_string(), reason };
    let path = std::fs::canonicalize(&options.path).map_err(|e| unreadable(e.to_string()))?;
    let Source::File(file) = Source::open(&path, node.home().root())? else {
        return Err(TransferError::InvalidArgument(
            "a folder does not travel as messages: send one file (an archive of the folder)".into(),
        ));
    };
    let meta = file.metadata().map_err(|e| TransferError::io(&path, e))?;
    chat::check_size(meta.len())?;
    if let Some(peer) = &options.peer {
        node.trust().usable_peer(peer)?; // before anything is written
    }
    let bytes = std::fs::read(&path).map_err(|e| unreadable(e.to_string()))?;
    if bytes.len() as u64 != meta.len() {
        return Err(TransferError::SourceChanged(path.display().to_string()));
    }
    use std::os::unix::fs::PermissionsExt;
    let ticket = Ticket {
        transfer_id: TransferId::random(),
        session_key: SessionKey::generate(),
        expires_at: unix_now() + options.expires_in.as_secs(),
        size: meta.len(),
        chunk_size: chat::chunk_size_for(max_chars),
        name: path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "file".into()),
        addrs: Vec::new(),
        channel: None,
        folder: false,
        mode: Some(meta.permissions().mode() & 0o777),
    };
    let side = Side::Send {
        path: path.clone(),
        mtime_ns: mtime_ns(&meta),
        change: Some(change_stamp(&meta)),
        bind: std::net::SocketAddr::from(([127, 0, 0, 1], 0)), // serves nothing: messages only
        bytes_sent: 0,
    };
    let mut record = Record {
        messages: true,
        sha256: Some(hex(&Sha256::digest(&bytes))),
        peer: options.peer.clone(),
        ..Record::new(&ticket, ticket.name.clone(), side)
    };
    let id = ticket.transfer_id;
    let lock = node.journal().try_lock(&id, Role::Send)?.expect("a fresh id has no owner");
    node.journal().save(&mut record)?;
    table.know(&ticket, Role::Send);
    let manifest = manifest(&ticket);
    let opener = Opener::new(ticket.session_key.clone(), id, 0);
    let mut sending =
        Sending { record, ticket, manifest, live: Some(Live { _lock: lock, file, opener, last: None, heard: false }) };
    let mut taken = Taken::default();
    post(node, &mut sending, None, &mut taken)?;
    let opened = Opened {
        transfer_id: id,
        file_name: sending.record.name.clone(),
        bytes_total: sending.manifest.size,
        parts: sending.manifest.chunk_count() + 1,
        messages: taken.messages,
    };
    table.sending.insert(id, sending);
    Ok(opened)
}

/// The transfer `id`, taken over from the journal if this process does not drive it yet.
fn entry<'t>(node: &Node, table: &'t mut Table, id: TransferId) -> Result<&'t mut Sending> {
    if let std::collections::hash_map::Entry::Vacant(slot) = table.sending.entry(id) {
        let record =
            node.journal().load(&id, Role::Send)?.ok_or_else(|| TransferError::TransferNotFound(id.to_string()))?;
        let ticket: Ticket = record.ticket.parse()?;
        let live = match record.state {
            State::Completed | State::Failed => None,
            _ => {
                let lock = node.journal().claim(&record)?;
                let Side::Send { path, .. } = &record.side else { unreachable!("a send record") };
                let file = File::open(path).map_err(|e| TransferError::SourceChanged(e.to_string()))?;
                let opener = Opener::new(ticket.session_key.clone(), id, 0);
                Some(Live { _lock: lock, file, opener, last: None, heard: false })
            }
        };
        let mut sending = Sending { manifest: manifest(&ticket), record, ticket, live };
        if sending.live.is_some() && sending.record.state != State::Active {
            sending.record.state = State::Active;
            sending.record.error = None;
            node.journal().save(&mut sending.record)?;
        }
        slot.insert(sending);
    }
    Ok(table.sending.get_mut(&id).expect("inserted above"))
}

/// A sealed control for this side of transfer `id`: a need to answer at the end of the call, or
/// the receiver's completion.
pub(super) fn control(
    node: &Node,
    table: &mut Table,
    id: TransferId,
    mut frame: Vec<u8>,
) -> Result<(Outcome, Option<Need>)> {
    let sending = entry(node, table, id)?;
    let Some(live) = &mut sending.live else { return Ok((Outcome::Skipped, None)) };
    let opened = live.opener.open(&mut frame).map_err(|e| TransferError::MessageTampered(e.to_string()))?;
    if opened.kind != FrameKind::Control {
        return Ok((Outcome::Skipped, None));
    }
    let control: Control = serde_json::from_slice(OpenedFrame::payload(&frame))
        .map_err(|_| TransferError::Protocol("a control frame that is not a control".into()))?;
    match control {
        Control::Need { chunks, trailer, have } => Ok((Outcome::Accepted, Some(Need { chunks, trailer, have }))),
        Control::Complete { sha256 } => {
            let ours = sending.record.sha256.clone().unwrap_or_default();
            if !ct_eq(sha256.as_bytes(), ours.as_bytes()) {
                return Err(TransferError::IntegrityMismatch(format!(
                    "the receiver reports SHA-256 {sha256}, the file's is {ours}"
                )));
            }
            sending.record.complete(&ours, None, None, &BTreeMap::new());
            sending.record.last_path = Some("messages".into());
            if let Side::Send { bytes_sent, .. } = &mut sending.record.side {
                *bytes_sent = sending.manifest.size;
            }
            node.journal().save(&mut sending.record)?;
            sending.live = None;
            Ok((Outcome::Accepted, None))
        }
        _ => Err(TransferError::Protocol("a control of another path".into())),
    }
}

/// End of a call for transfer `id`: answer the freshest need that came, or repeat the last.
pub(super) fn answer(node: &Node, table: &mut Table, id: TransferId, needs: Vec<Need>, taken: &mut Taken) {
    let sending = match entry(node, table, id) {
        Ok(sending) => sending,
        Err(e) => {
            taken.rejected.push((None, e));
            return;
        }
    };
    let mut error = None;
    if sending.live.is_some()
        && let Err(e) = post(node, sending, freshest(needs), taken)
    {
        sending.record.fail(&e);
        sending.live = None;
        if let Err(e) = node.journal().save(&mut sending.record) {
            tracing::warn!("{e}");
        }
        error = Some(e);
    }
    let Side::Send { bytes_sent, .. } = &sending.record.side else { unreachable!() };
    let chunk = sending.manifest.chunk_size as u64;
    taken.transfers.push(ChatTransfer {
        transfer_id: id,
        role: Role::Send,
        state: sending.record.state,
        file_name: sending.record.name.clone(),
        chunks_done: bytes_sent.div_ceil(chunk),
        chunks_total: sending.manifest.chunk_count(),
        saved_to: None,
        sha256: sending.record.sha256.clone(),
        error,
    });
}

/// Post the frames `need` lists (`None`: the last need again, or the opening with its first
/// message when none came yet).
fn post(node: &Node, sending: &mut Sending, need: Option<Need>, taken: &mut Taken) -> Result<()> {
    let live = sending.live.as_mut().expect("live");
    let (m, ticket) = (&sending.manifest, &sending.ticket);
    // Past its expiry the transfer is over, as a server stops serving an expired ticket.
    ticket.check_expiry(unix_now())?;
    let total = m.chunk_count();
    if need.is_some() {
        live.heard = true;
    } else if !live.heard {
        taken.messages.push(first_message(node, &sending.record, ticket)?);
    }
    let need = need.or_else(|| live.last.clone()).unwrap_or_else(|| opening(total, WINDOW));
    let Side::Send { path, mtime_ns: recorded, change, bytes_sent, .. } = &mut sending.record.side else {
        unreachable!()
    };
    let meta = live.file.metadata().map_err(|e| TransferError::SourceChanged(e.to_string()))?;
    if mtime_ns(&meta) != *recorded || meta.len() != m.size || change.is_some_and(|c| c != change_stamp(&meta)) {
        return Err(TransferError::SourceChanged(path.display().to_string()));
    }
    let to = side_address(ticket, Role::Receive);
    let mut sealer = Sealer::new(&ticket.session_key, ticket.transfer_id, random_epoch());
    for transmit in transmits(&need, total, WINDOW) {
        let (frame, words) = match transmit {
            Transmit::Chunk { index, last } => {
                let mut buf = Sealer::buffer(m.chunk_len(index));
                let start = buf.len();
                buf.resize(start + m.chunk_len(index), 0);
                live.file
                    .read_exact_at(&mut buf[start..], m.offset(index))
                    .map_err(|e| TransferError::io(&*path, e))?;
                sealer.seal(FrameKind::Chunk, if last { FLAG_LAST } else { 0 }, index, &mut buf);
                (buf, format!("agentferry {}/{total}", index + 1))
            }
            Transmit::Trailer => {
                let hash = data_encoding::HEXLOWER
                    .decode(sending.record.sha256.as_deref().unwrap_or_default().as_bytes())
                    .map_err(|_| TransferError::Home("the journal's hash is damaged".into()))?;
                (sealer.seal_bytes(FrameKind::Trailer, total, &hash), format!("agentferry end {total}/{total}"))
            }
        };
        taken.messages.push(Envelope::ToReceiver { to, frame: frame.to_vec() }.to_text(&words));
    }
    let sent = m.bytes_in(need.have);
    if sent > *bytes_sent {
        *bytes_sent = sent;
        node.journal().save(&mut sending.record)?;
    }
    live.last = Some(need);
    Ok(())
}

/// The message that opens the transfer: the ticket in clear, or sealed for the paired peer.
fn first_message(node: &Node, record: &Record, ticket: &Ticket) -> Result<String> {
    let size = chat::human_size(ticket.size);
    let parts = manifest(ticket).chunk_count() + 1;
    match &record.peer {
        None => {
            let name = safe_file_name(&ticket.name);
            let words = format!(
                "agentferry file {name:?}, {size} in {parts} more messages: paste every message holding \
{} into receive_messages (or `agentferry messages`). Anyone who can read this chat can read the file.",
                chat::MARK
            );
            Ok(Envelope::Ticket(ticket.to_string()).to_text(&words))
        }
        Some(peer) => {
            let peer = node.trust().usable_peer(peer)?;
            let offer = Offer::seal(&peer.grant_id, &peer.secret_bytes()?, &node.config().name, ticket);
            let words = format!(
                "agentferry file, {size} in {parts} more messages, sealed for a paired peer: paste every \
message holding {} into receive_messages there.",
                chat::MARK
            );
            let (sender, offer) =
                (side_address(ticket, Role::Send), serde_json::to_vec(&offer).expect("offers serialise"));
            Ok(Envelope::Offer { sender, offer }.to_text(&words))
        }
    }
}
