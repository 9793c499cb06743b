//! The messages path's IO shell: chat messages in, chat messages out, the file and the journal
//! in between.
//!
//! Here the agents are the transport. `send_file {via: "messages"}` ([`Node::send_as_messages`])
//! returns the first messages to post; every later step is one call of `receive_messages`
//! ([`Node::take_messages`]) on either side, which takes what the agent saw in the chat and
//! answers at once with what to post back. Nothing runs between calls, so there is no driver
//! loop and no timer: the decisions are [`crate::core::ChatReceive`]'s (what to ask for) and
//! [`crate::core::transmits`] (what to post), the text form is [`crate::chat`], the frames and
//! keys are the ones every path uses, and the receiver writes its `.part` file and journal
//! record as every receive does (`durable_chunks` advances only after a sync), so `kill -9` of
//! either side loses at most the chunks since the last call.
//!
//! A process owns the transfers it touches (the journal's lock) until it exits; a restarted
//! process takes them over on the first message that names them, or when asked to repeat
//! itself (an empty call). The sender keeps nothing per chunk: the receiver's needs say it all.
//!
//! | file | job |
//! |---|---|
//! | `mod.rs` | one call: parse, route each message to its transfer, collect the answers |
//! | `send.rs` | the sender: open a transfer, answer needs with sealed chunks, take the completion |
//! | `receive.rs` | the receiver: open a transfer from its first message, write chunks, ask, verify, place |

mod receive;
mod send;

use std::{
    collections::{BTreeMap, BTreeSet, HashMap, HashSet},
    path::PathBuf,
    time::Duration,
};

pub(crate) use send::Sending;

use self::receive::Incoming;
use super::{Node, ReceiveOptions};
use crate::{
    chat::{self, Address, Envelope},
    core::Need,
    error::{Result, TransferError},
    id::TransferId,
    journal::{Role, State},
};

/// Chunks a receiver asks for in one answer, and the most a sender posts in one batch: several
/// messages in flight, few enough that a chat is not flooded.
pub(crate) const WINDOW: usize = 16;

/// What to send as messages.
#[derive(Clone, Debug)]
pub struct MessagesOptions {
    pub path: PathBuf,
    pub expires_in: Duration,
    /// Longest message in characters ([`chat::DEFAULT_MAX_CHARS`] when `None`).
    pub max_chars: Option<usize>,
    /// A paired peer to seal the first message for; without one the first message carries the
    /// ticket, readable by everyone in the chat.
    pub peer: Option<String>,
}

/// A transfer opened as messages.
#[derive(Clone, Debug)]
pub struct Opened {
    pub transfer_id: TransferId,
    pub file_name: String,
    pub bytes_total: u64,
    /// Messages the whole file takes (chunks and the trailer), besides the first.
    pub parts: u64,
    /// Post these, in any order.
    pub messages: Vec<String>,
}

/// Where one transfer stands after a call.
#[derive(Clone, Debug)]
pub struct ChatTransfer {
    pub transfer_id: TransferId,
    pub role: Role,
    pub state: State,
    pub file_name: String,
    pub chunks_done: u64,
    pub chunks_total: u64,
    pub saved_to: Option<PathBuf>,
    pub sha256: Option<String>,
    pub error: Option<TransferError>,
}

/// What one call did.
#[derive(Clone, Debug, Default)]
pub struct Taken {
    /// Post these in the chat, in any order.
    pub messages: Vec<String>,
    /// Messages that brought something new.
    pub accepted: usize,
    /// Messages that needed nothing: duplicates, this node's own messages, other transfers',
    /// people's words.
    pub skipped: usize,
    /// Messages refused, by position in the input, with why (no position: a transfer this
    /// node could not take up, such as one another process drives).
    pub rejected: Vec<(Option<usize>, TransferError)>,
    pub transfers: Vec<ChatTransfer>,
}

/// Whether a message brought something new.
enum Outcome {
    Accepted,
    Skipped,
}

/// The transfers on the messages path that this process drives, and which side of which
/// transfer each address names.
#[derive(Default)]
pub(crate) struct Table {
    receiving: HashMap<TransferId, Incoming>,
    sending: HashMap<TransferId, Sending>,
    index: HashMap<Address, (TransferId, Role)>,
    /// The other sides' addresses of this node's transfers: its own messages, seen again in
    /// the chat, are skipped without a look at the journal.
    theirs: HashSet<Address>,
}

impl std::fmt::Debug for Table {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Table").field("receiving", &self.receiving.len()).field("sending", &self.sending.len()).finish()
    }
}

impl Table {
    /// The transfer side that `to` names, from the journal on a miss (once per call).
    fn lookup(&mut self, node: &Node, to: &Address, rescanned: &mut bool) -> Result<Option<(TransferId, Role)>> {
        if let Some(found) = self.index.get(to) {
            return Ok(Some(*found));
        }
        if self.theirs.contains(to) || std::mem::replace(rescanned, true) {
            return Ok(None);
        }
        for record in node.journal().list()? {
            let Ok(ticket) = record.ticket.parse::<crate::ticket::Ticket>() else { continue };
            if record.messages {
                self.know(&ticket, record.role());
            }
        }
        Ok(self.index.get(to).copied())
    }

    /// This node plays `role` in `ticket`'s transfer.
    fn know(&mut self, ticket: &crate::ticket::Ticket, role: Role) {
        let other = match role {
            Role::Send => Role::Receive,
            Role::Receive => Role::Send,
        };
        self.index.insert(side_address(ticket, role), (ticket.transfer_id, role));
        self.theirs.insert(side_address(ticket, other));
    }
}

/// The address of the side of `ticket`'s transfer that plays `role`.
fn side_address(ticket: &crate::ticket::Ticket, role: Role) -> Address {
    let mailboxes = super::keys::mailboxes(&ticket.session_key, &ticket.transfer_id);
    chat::address(match role {
        Role::Send => &mailboxes.to_sender,
        Role::Receive => &mailboxes.to_receiver,
    })
}

/// [`Node::send_as_messages`].
pub(super) fn start(node: &Node, options: MessagesOptions) -> Result<Opened> {
    let mut table = node.chat.lock().expect("not poisoned");
    send::start(node, &mut table, options)
}

/// [`Node::take_messages`]: route every message of `texts` to its transfer, then answer for
/// every transfer they touched. No messages at all asks this node to repeat itself: the answer
/// for every unfinished transfer it has on the messages path.
pub(super) fn take(node: &Node, texts: &[String], options: &ReceiveOptions) -> Result<Taken> {
    let mut table = node.chat.lock().expect("not poisoned");
    let mut taken = Taken::default();
    let mut envelopes = Vec::new();
    for (i, text) in texts.iter().enumerate() {
        let parsed = chat::parse(text);
        if parsed.is_empty() {
            taken.skipped += 1;
        }
        for result in parsed {
            match result {
                Ok(envelope) => envelopes.push((i, envelope)),
                Err(e) => taken.rejected.push((Some(i), e)),
            }
        }
    }
    // First messages first: a paste may hold a transfer's chunks before the message opening it.
    envelopes.sort_by_key(|(_, e)| !matches!(e, Envelope::Ticket(_) | Envelope::Offer { .. }));

    let mut receiving = BTreeSet::new();
    let mut sending: BTreeMap<TransferId, Vec<Need>> = BTreeMap::new();
    let mut rescanned = false;
    for (i, envelope) in envelopes {
        let result = match envelope {
            Envelope::Ticket(text) => receive::open_ticket(node, &mut table, &text, options),
            Envelope::Offer { sender, offer } => match table.lookup(node, &sender, &mut rescanned)? {
                Some((_, Role::Send)) => Ok((Outcome::Skipped, None)), // our own, seen in the chat
                _ => receive::open_offer(node, &mut table, &offer, options),
            },
            Envelope::ToReceiver { to, frame } => match table.lookup(node, &to, &mut rescanned)? {
                Some((id, Role::Receive)) => receive::frame(node, &mut table, id, frame).map(|o| (o, Some(id))),
                _ => Ok((Outcome::Skipped, None)),
            },
            Envelope::ToSender { to, frame } => match table.lookup(node, &to, &mut rescanned)? {
                Some((id, Role::Send)) => send::control(node, &mut table, id, frame).map(|(o, need)| {
                    sending.entry(id).or_default().extend(need);
                    (o, None)
                }),
                _ => Ok((Outcome::Skipped, None)),
            },
        };
        match result {
            Ok((outcome, touched)) => {
                receiving.extend(touched);
                match outcome {
                    Outcome::Accepted => taken.accepted += 1,
                    Outcome::Skipped => taken.skipped += 1,
                }
            }
            Err(e) => taken.rejected.push((Some(i), e)),
        }
    }
    if texts.is_empty() {
        for record in node.journal().list()? {
            if record.messages && matches!(record.state, State::Active | State::Interrupted) {
                match record.role() {
                    Role::Receive => drop(receiving.insert(record.transfer_id)),
                    Role::Send => drop(sending.entry(record.transfer_id).or_default()),
                }
            }
        }
    }
    for id in receiving {
        receive::answer(node, &mut table, id, &mut taken);
    }
    for (id, needs) in sending {
        send::answer(node, &mut table, id, needs, &mut taken);
    }
    Ok(taken)
}
