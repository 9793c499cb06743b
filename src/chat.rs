//! Chat messages: the text form of what the messages path carries, for agents that post it in a
//! chat themselves (`send_file {via: "messages"}`, `receive_messages`).
//!
//! One message is a few words for a person, then [`PREFIX`] and the base64url (unpadded) of one
//! [`Envelope`]:
//!
//! ```text
//! agentferry 5/420 🔗FERRY:AQI…
//!
//! version  u8        1
//! kind     u8        1 = ticket, 2 = offer, 3 = frame for the receiver, 4 = frame for the sender
//! ticket:  the ticket string (`ferry…`), to the end
//! offer:   the sender's address [u8; 16], then an offer sealed under the receiver's grant
//!          (JSON of `crate::offer::Offer`), to the end
//! frames:  address [u8; 16] (the first bytes of the side's mailbox id), then one sealed frame
//!          (`crate::frame`): a chunk or the trailer to the receiver, a control to the sender
//! ```
//!
//! The words are not authenticated and are ignored on reading: a reader looks for the prefix
//! anywhere in the text (one pasted text may hold several messages) and takes the base64url after
//! it. What the envelope carries is sealed exactly as on every other path, so a chat that edits a
//! message gets it rejected, never written. The address names the transfer's side without naming
//! the transfer (it is derived from the session key like a relay mailbox), so a node can tell
//! its own messages from the other side's and from other transfers' in a shared chat.
//!
//! This is a format, below everything that moves bytes: no IO, no decisions.

use base64::Engine as _;

use crate::{error::TransferError, mailbox::MailboxKey};

/// What starts every message's encoded part.
pub const PREFIX: &str = "\u{1F517}FERRY:";
/// How words name the messages (the prefix without its colon, so words never look like one).
pub const MARK: &str = "\u{1F517}FERRY";
/// A message's default length in characters (Unicode scalar values): one fits a Telegram (4096),
/// Slack (4000) or Discord Nitro message with room for the words.
pub const DEFAULT_MAX_CHARS: usize = 3500;
/// The shortest messages a caller may ask for: below this, overhead would dominate.
pub const MIN_MAX_CHARS: usize = 400;
/// The longest messages a caller may ask for.
pub const MAX_MAX_CHARS: usize = 65_536;
/// The largest file carried as messages: 4 MiB is some 1 700 messages of 3 500 characters,
/// already more than a chat or an agent's context should carry. Larger files take another path.
pub const MAX_FILE_SIZE: u64 = 4 << 20;
/// Bytes of a mailbox id that address a message.
pub const ADDRESS_LEN: usize = 16;
/// Characters kept for the words before the prefix of a chunk message (`agentferry 1234/5678 `).
const WORDS_ROOM: usize = 32;

const VERSION: u8 = 1;
const KIND_TICKET: u8 = 1;
const KIND_OFFER: u8 = 2;
const KIND_TO_RECEIVER: u8 = 3;
const KIND_TO_SENDER: u8 = 4;
/// Version, kind and address.
const HEADER_LEN: usize = 2 + ADDRESS_LEN;

/// Which side of a transfer a message is for.
pub type Address = [u8; ADDRESS_LEN];

/// The address of the side that reads mailbox `key`.
pub fn address(key: &MailboxKey) -> Address {
    key.id().as_bytes()[..ADDRESS_LEN].try_into().expect("16 of 32 bytes")
}

/// What one message carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Envelope {
    /// The first message to a receiver that is not a paired peer: the ticket itself.
    Ticket(String),
    /// The first message to a paired peer: an offer sealed under its grant, and the sender's
    /// address, by which the sender knows its own offer when it sees it in the chat.
    Offer { sender: Address, offer: Vec<u8> },
    /// A sealed frame (chunk, trailer) for the receiver at `to`.
    ToReceiver { to: Address, frame: Vec<u8> },
    /// A sealed control frame for the sender at `to`.
    ToSender { to: Address, frame: Vec<u8> },
}

impl Envelope {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![VERSION];
        match self {
            Envelope::Ticket(ticket) => {
                out.push(KIND_TICKET);
                out.extend_from_slice(ticket.as_bytes());
            }
            Envelope::Offer { sender, offer } => {
                out.push(KIND_OFFER);
                out.extend_from_slice(sender);
                out.extend_from_slice(offer);
            }
            Envelope::ToReceiver { to, frame } | Envelope::ToSender { to, frame } => {
                out.push(if matches!(self, Envelope::ToReceiver { .. }) { KIND_TO_RECEIVER } else { KIND_TO_SENDER });
                out.extend_from_slice(to);
                out.extend_from_slice(frame);
            }
        }
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Envelope, TransferError> {
        let malformed = |why: &str| TransferError::MessageMalformed(why.into());
        let [version, kind, rest @ ..] = bytes else { return Err(malformed("it is cut short")) };
        if *version != VERSION {
            return Err(malformed("it was made by another version of agentferry"));
        }
        let framed = |rest: &[u8]| -> Result<(Address, Vec<u8>), TransferError> {
            let (to, frame) = rest.split_first_chunk::<ADDRESS_LEN>().ok_or_else(|| malformed("it is cut short"))?;
            Ok((*to, frame.to_vec()))
        };
        match *kind {
            KIND_TICKET => {
                Ok(Envelope::Ticket(String::from_utf8(rest.to_vec()).map_err(|_| malformed("not a ticket"))?))
            }
            KIND_OFFER => framed(rest).map(|(sender, offer)| Envelope::Offer { sender, offer }),
            KIND_TO_RECEIVER => framed(rest).map(|(to, frame)| Envelope::ToReceiver { to, frame }),
            KIND_TO_SENDER => framed(rest).map(|(to, frame)| Envelope::ToSender { to, frame }),
            _ => Err(malformed("unknown kind of message")),
        }
    }

    /// The message as posted: `words`, a space, then the encoded envelope.
    pub fn to_text(&self, words: &str) -> String {
        let encoded = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(self.encode());
        if words.is_empty() { format!("{PREFIX}{encoded}") } else { format!("{words} {PREFIX}{encoded}") }
    }
}

/// Every envelope in a pasted text, in order; the text around them is ignored. An empty result
/// means the text holds no message of ours (a person's chat line).
pub fn parse(text: &str) -> Vec<Result<Envelope, TransferError>> {
    text.split(PREFIX)
        .skip(1)
        .filter_map(|after| {
            let end = after.find(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_')).unwrap_or(after.len());
            // The prefix quoted in prose, with nothing after it.
            (end > 0).then_some(&after[..end])
        })
        .map(|encoded| {
            let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(encoded).map_err(|_| {
                TransferError::MessageMalformed("its text is not base64url: cut short or edited".into())
            })?;
            Envelope::decode(&bytes)
        })
        .collect()
}

/// The chunk size whose messages fit in `max_chars` characters, words included.
pub fn chunk_size_for(max_chars: usize) -> u32 {
    let encoded = max_chars.saturating_sub(WORDS_ROOM + PREFIX.chars().count());
    let bytes = encoded / 4 * 3;
    let overhead = HEADER_LEN + crate::frame::HEADER_LEN + crate::frame::TAG_LEN;
    bytes.saturating_sub(overhead).max(1) as u32
}

/// The length in characters that a caller's `max_message_chars` asks for, checked.
pub fn check_max_chars(max_chars: Option<usize>) -> Result<usize, TransferError> {
    let chars = max_chars.unwrap_or(DEFAULT_MAX_CHARS);
    if !(MIN_MAX_CHARS..=MAX_MAX_CHARS).contains(&chars) {
        return Err(TransferError::InvalidArgument(format!(
            "max_message_chars must be between {MIN_MAX_CHARS} and {MAX_MAX_CHARS}"
        )));
    }
    Ok(chars)
}

/// Refuse a file the messages path does not carry.
pub fn check_size(size: u64) -> Result<(), TransferError> {
    if size > MAX_FILE_SIZE {
        return Err(TransferError::TooLargeForMessages(format!(
            "the file has {size} bytes; chat messages carry at most {MAX_FILE_SIZE} bytes ({} MiB)",
            MAX_FILE_SIZE >> 20
        )));
    }
    Ok(())
}

/// A size as people read it: `1.0 MiB`, `512 B`.
pub fn human_size(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 20 => format!("{:.1} MiB", b as f64 / (1u64 << 20) as f64),
        b if b >= 1 << 10 => format!("{:.1} KiB", b as f64 / 1024.0),
        b => format!("{b} B"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelopes_round_trip_through_text_with_words_around_them() {
        let envelopes = [
            Envelope::Ticket("ferryabc".into()),
            Envelope::Offer { sender: [5; 16], offer: b"{}".to_vec() },
            Envelope::ToReceiver { to: [7; 16], frame: vec![1, 2, 3] },
            Envelope::ToSender { to: [9; 16], frame: vec![] },
        ];
        let text: String = envelopes.iter().map(|e| e.to_text("agentferry 1/2") + "\n> quoted\n").collect();
        let parsed: Vec<_> = parse(&format!("hi bob {text} bye")).into_iter().map(Result::unwrap).collect();
        assert_eq!(parsed, envelopes);
        assert!(parse("just chatting").is_empty());
        assert!(parse(&format!("paste what follows {PREFIX} here, or anything holding {MARK}")).is_empty());
    }

    #[test]
    fn damaged_messages_are_malformed_not_panics() {
        let text = Envelope::ToReceiver { to: [7; 16], frame: vec![1, 2, 3] }.to_text("");
        for cut in 0..text.len() {
            if !text.is_char_boundary(cut) {
                continue;
            }
            for result in parse(&text[..cut]) {
                if let Err(e) = result {
                    assert_eq!(e.code(), "message_malformed");
                }
            }
        }
        let wrong_version = format!("{PREFIX}{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode([2, 1]));
        assert_eq!(parse(&wrong_version)[0].as_ref().unwrap_err().code(), "message_malformed");
    }

    #[test]
    fn a_full_chunk_message_fits_its_length() {
        for max in [MIN_MAX_CHARS, DEFAULT_MAX_CHARS, 4000, MAX_MAX_CHARS] {
            let chunk = chunk_size_for(max) as usize;
            let frame = vec![0; crate::frame::HEADER_LEN + chunk + crate::frame::TAG_LEN];
            let text = Envelope::ToReceiver { to: [0; 16], frame }.to_text("agentferry 99999/99999");
            assert!(text.chars().count() <= max, "{max}: {}", text.chars().count());
            assert!(text.chars().count() > max - 40, "{max}: room is wasted");
        }
        assert_eq!(check_max_chars(Some(10)).unwrap_err().code(), "invalid_argument");
        assert_eq!(check_size(MAX_FILE_SIZE + 1).unwrap_err().code(), "too_large_for_messages");
    }
}
