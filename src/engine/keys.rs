//! What both sides of a transfer derive from its session key to meet on a message channel:
//! the chunk relay's two mailboxes and WebRTC's signalling.

use crate::{
    crypto::SessionKey,
    id::TransferId,
    transport::{channel::Mailboxes, webrtc::Signalling},
};

/// The transfer's two mailboxes on a message channel, derived from the session key.
pub(super) fn mailboxes(key: &SessionKey, id: &TransferId) -> Mailboxes {
    Mailboxes { to_sender: key.mailbox(id, b"sender"), to_receiver: key.mailbox(id, b"receiver") }
}

/// The transfer's WebRTC signalling: two more mailboxes and a sealing key, from the session key.
pub(super) fn signalling(key: &SessionKey, id: &TransferId) -> Signalling {
    Signalling {
        offers: key.mailbox(id, b"webrtc-offer"),
        answers: key.mailbox(id, b"webrtc-answer"),
        cipher: key.signal_cipher(id),
    }
}
