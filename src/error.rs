//! Errors a user can see.
//!
//! Every failure that reaches a person, a script or an agent is a [`TransferError`] variant with a
//! stable snake_case [`code`](TransferError::code), a one-line message (its `Display`) and a
//! [`hint`](TransferError::hint) saying what to do next. The codes, and the CLI exit codes derived
//! from them, are part of the public contract: add variants, never rename one. Messages must never
//! contain a secret (session key, token, grant secret); tickets are only ever shown by the front
//! that minted them.

pub mod cli_hint;
mod code;

use std::{io, sync::Arc};

pub use code::Code;

/// A failure of a transfer operation, with a stable code and a hint.
/// `Clone` so that one failure can be both recorded (in an attempt, the journal) and returned.
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransferError {
    /// The ticket is not valid base32 or its fields do not decode.
    #[error("the ticket is malformed: {0}")]
    TicketMalformed(&'static str),
    /// The ticket ends before all of its fields.
    #[error("the ticket is truncated (it ends before all of its fields)")]
    TicketTruncated,
    /// The ticket's checksum does not match: it was edited or damaged in copying.
    #[error("the ticket was altered or damaged: its checksum does not match")]
    TicketTampered,
    /// The string is not an agentferry transfer ticket.
    #[error("this is not an agentferry transfer ticket (expected the prefix `{expected}`)")]
    TicketWrongKind { expected: &'static str },
    /// The ticket was made by a newer agentferry.
    #[error("the ticket uses format version {0}, which this agentferry does not know")]
    TicketUnsupportedVersion(u8),
    /// The ticket's expiry has passed.
    #[error("the ticket expired {ago_secs} s ago")]
    TicketExpired { ago_secs: u64 },
    /// No address in the ticket answered, or the sender went away for too long.
    #[error("the sender could not be reached: {0}")]
    PeerUnreachable(String),
    /// The message channel (a relay, a NATS server) could not be reached or closed: neither
    /// side is at fault, the channel between them is.
    #[error("the channel could not be reached: {0}")]
    ChannelUnreachable(String),
    /// Nobody serves the transfer: the sender's addresses refuse connections and no sender
    /// answers on its channel.
    #[error("the sender is not serving this transfer: {0}")]
    NotServing(String),
    /// A sender that is still up finished this transfer (to this or another receiver).
    #[error("the sender already completed transfer {0}")]
    SenderCompleted(String),
    /// The sender refused our credentials (403).
    #[error("the sender refused this ticket (403): it is not serving this transfer any more, or the ticket is wrong")]
    Unauthorized,
    /// The peer answered with something that is not our protocol.
    #[error("the peer broke the protocol: {0}")]
    Protocol(String),
    /// The received file's SHA-256 differs from the sender's, or frames keep failing authentication.
    #[error("integrity check failed: {0}")]
    IntegrityMismatch(String),
    /// Something else took the temp file's name in the output folder while the transfer wrote
    /// it: what the name holds now is not what verified, so it is not placed.
    #[error("{0} was replaced by another file while it was received; it was not placed")]
    TempFileSwapped(String),
    /// The target file exists and overwriting was not asked for.
    #[error("{0} already exists")]
    FileExists(String),
    /// The file to send does not exist or is not a regular file.
    #[error("cannot read {path}: {reason}")]
    SourceUnreadable { path: String, reason: String },
    /// The path to send is this node's own home, or inside it: session keys, grants, secrets.
    #[error("{0} is inside agentferry's own home, which holds session keys and grants")]
    SourcePrivate(String),
    /// The file being sent changed since the transfer started.
    #[error("the file being sent changed since the transfer started ({0})")]
    SourceChanged(String),
    /// The disk is full.
    #[error("no space left on the device while writing {0}")]
    DiskFull(String),
    /// The operating system refused access to a path.
    #[error("permission denied: {0}")]
    PermissionDenied(String),
    /// Any other local I/O failure.
    #[error("I/O error on {path}: {source}")]
    Io { path: String, source: Arc<io::Error> },
    /// The sender received more bytes than announced, or more than the receiver allows.
    #[error("size limit exceeded: {0}")]
    SizeLimit(String),
    /// The listening port recorded for this transfer is taken.
    #[error("cannot listen on {0}: the address is in use")]
    AddressInUse(String),
    /// No journal entry for this transfer id.
    #[error("no transfer with id {0} in this node's journal")]
    TransferNotFound(String),
    /// The transfer already finished; there is nothing to resume.
    #[error("transfer {0} is already completed")]
    AlreadyCompleted(String),
    /// The peer URI (from `agentferry export`) does not decode.
    #[error("the peer URI is not valid: {0}")]
    PeerUriInvalid(String),
    /// No trusted peer of that name.
    #[error("no trusted peer named {0:?}")]
    PeerNotFound(String),
    /// A different peer is already trusted under that name, and replacing it was not asked for.
    #[error("a different peer named {0:?} is already trusted")]
    PeerExists(String),
    /// The grant for this peer has expired or was cut short locally.
    #[error("the grant for peer {0:?} has expired")]
    PeerExpired(String),
    /// No grant with that id was exported by this node.
    #[error("this node exported no grant with id {0}")]
    GrantNotFound(String),
    /// The peer's inbox refused or could not take the offer.
    #[error("the peer did not take the offer: {0}")]
    OfferRefused(String),
    /// A path outside what this server may read or write.
    #[error("{0}")]
    PathNotAllowed(String),
    /// The MCP client listed no usable roots, so no path may be read (its list was empty or
    /// named no existing local folder).
    #[error(
        "{0}: the MCP client listed no usable roots (an empty roots/list, or none an existing local folder), so this server may read no file"
    )]
    NoRoots(String),
    /// A transfer path that this build or this transfer cannot use.
    #[error("path {0:?} is not available")]
    PathUnavailable(String),
    /// A request's arguments do not fit together.
    #[error("invalid arguments: {0}")]
    InvalidArgument(String),
    /// Another live process is already driving this transfer.
    #[error("another process is already working on transfer {0}")]
    Busy(String),
    /// The node home has both a send and a receive entry for this id.
    #[error("this node both sends and receives transfer {0}")]
    AmbiguousTransfer(String),
    /// The node home or its journal cannot be used.
    #[error("the node home is unusable: {0}")]
    Home(String),
    /// A folder's listing cannot be written safely here (a path escapes the folder, names
    /// collide, a name is unsafe, or it declares more than a receiver accepts).
    #[error("the folder listing was refused: {0}")]
    ListingRefused(String),
    /// This node already has as many usable grants as it allows (invites are capped).
    #[error("this node already has {0} open invites, the most allowed")]
    TooManyGrants(usize),
    /// The message channel (a NATS server) refused this node's credentials.
    #[error("the channel refused the credentials: {0}")]
    ChannelAuth(String),
    /// The TLS handshake with the message channel (a NATS server) failed: its certificate is
    /// not trusted here, or it wants a client certificate this node did not offer.
    #[error("the channel's TLS handshake failed: {0}")]
    ChannelTls(String),
    /// A pushed offer expired before the peer took it: its inbox did not answer, and no
    /// channel kept the offer for it.
    #[error("the peer is offline: {0}")]
    PeerOffline(String),
    /// A short code that does not read: no number first, a word not in the list, too few or
    /// too many words. Nothing was sent to the relay.
    #[error("the code is malformed: {0}")]
    CodeMalformed(String),
    /// The words did not match the code's: this try used the code up, on both sides.
    #[error("the code is wrong: the other side holds a different code (this try used it up)")]
    CodeWrong,
    /// The code was redeemed already: a code works once.
    #[error("the code was used already: a code works once")]
    CodeUsed,
    /// The code expired unredeemed, or the side that made it stopped offering it.
    #[error("the code expired: {0}")]
    CodeExpired(String),
    /// The relay has no open code with that number: mistyped, or made on another relay.
    #[error("the relay has no open code numbered {0}")]
    CodeUnknown(u32),
    /// The relay would not serve the code now (rate limit, full table, or too old for codes).
    #[error("the relay refused the code: {0}")]
    CodeRefused(String),
    /// Codes meet on a relay server, and this node has none configured.
    #[error("codes need a relay server: {0}")]
    CodeNeedsRelay(String),
    /// Upload links are served by a relay server at the root of its host, and this node has none.
    #[error("an upload link needs a relay server: {0}")]
    LinkNeedsRelay(String),
    /// The operation was interrupted (Ctrl-C, cancellation).
    #[error("interrupted")]
    Cancelled,
    /// The transfer read standard input or wrote standard output: that pipe is gone, so it
    /// cannot continue.
    #[error("transfer {0} cannot be resumed: it read standard input or wrote standard output, which is gone")]
    NotResumable(String),
    /// A folder cannot be written to standard output (a pipe carries one file).
    #[error("{0} is a folder; standard output carries one file only")]
    FolderToStdout(String),
    /// A server address outside this machine, without the flag that allows it.
    #[error("refused to listen on {0}: it is not a loopback address")]
    NotLoopback(String),
    /// A file too large to carry as chat messages (see [`crate::chat::MAX_FILE_SIZE`]).
    #[error("{0}")]
    TooLargeForMessages(String),
    /// A chat message that starts like one of ours but does not decode: cut short, or edited.
    #[error("the chat message is malformed: {0}")]
    MessageMalformed(String),
    /// A chat message whose sealed frame fails authentication: edited in the chat, or sealed
    /// with another transfer's key. Dropped; its chunk is asked for again.
    #[error("the chat message failed authentication: {0}")]
    MessageTampered(String),
}

impl TransferError {
    /// What went wrong, for the table and for each front's hints.
    pub fn kind(&self) -> Code {
        use TransferError::*;
        match self {
            TicketMalformed(_) => Code::TicketMalformed,
            TicketTruncated => Code::TicketTruncated,
            TicketTampered => Code::TicketTampered,
            TicketWrongKind { .. } => Code::TicketWrongKind,
            TicketUnsupportedVersion(_) => Code::TicketUnsupportedVersion,
            TicketExpired { .. } => Code::TicketExpired,
            PeerUnreachable(_) => Code::PeerUnreachable,
            ChannelUnreachable(_) => Code::ChannelUnreachable,
            NotServing(_) => Code::NotServing,
            SenderCompleted(_) => Code::SenderCompleted,
            Unauthorized => Code::Unauthorized,
            Protocol(_) => Code::Protocol,
            IntegrityMismatch(_) => Code::IntegrityMismatch,
            TempFileSwapped(_) => Code::TempFileSwapped,
            FileExists(_) => Code::FileExists,
            SourceUnreadable { .. } => Code::SourceUnreadable,
            SourcePrivate(_) => Code::SourcePrivate,
            SourceChanged(_) => Code::SourceChanged,
            DiskFull(_) => Code::DiskFull,
            PermissionDenied(_) => Code::PermissionDenied,
            Io { .. } => Code::Io,
            SizeLimit(_) => Code::SizeLimit,
            AddressInUse(_) => Code::AddressInUse,
            TransferNotFound(_) => Code::TransferNotFound,
            AlreadyCompleted(_) => Code::AlreadyCompleted,
            PeerUriInvalid(_) => Code::PeerUriInvalid,
            PeerNotFound(_) => Code::PeerNotFound,
            PeerExists(_) => Code::PeerExists,
            PeerExpired(_) => Code::PeerExpired,
            GrantNotFound(_) => Code::GrantNotFound,
            TooManyGrants(_) => Code::TooManyGrants,
            OfferRefused(_) => Code::OfferRefused,
            PathNotAllowed(_) => Code::PathNotAllowed,
            NoRoots(_) => Code::NoRoots,
            PathUnavailable(_) => Code::PathUnavailable,
            InvalidArgument(_) => Code::InvalidArgument,
            Busy(_) => Code::Busy,
            AmbiguousTransfer(_) => Code::AmbiguousTransfer,
            Home(_) => Code::Home,
            ListingRefused(_) => Code::ListingRefused,
            ChannelAuth(_) => Code::ChannelAuth,
            ChannelTls(_) => Code::ChannelTls,
            PeerOffline(_) => Code::PeerOffline,
            CodeMalformed(_) => Code::CodeMalformed,
            CodeWrong => Code::CodeWrong,
            CodeUsed => Code::CodeUsed,
            CodeExpired(_) => Code::CodeExpired,
            CodeUnknown(_) => Code::CodeUnknown,
            CodeRefused(_) => Code::CodeRefused,
            CodeNeedsRelay(_) => Code::CodeNeedsRelay,
            LinkNeedsRelay(_) => Code::LinkNeedsRelay,
            Cancelled => Code::Cancelled,
            NotResumable(_) => Code::NotResumable,
            FolderToStdout(_) => Code::FolderToStdout,
            NotLoopback(_) => Code::NotLoopback,
            TooLargeForMessages(_) => Code::TooLargeForMessages,
            MessageMalformed(_) => Code::MessageMalformed,
            MessageTampered(_) => Code::MessageTampered,
        }
    }

    /// The stable machine-readable code.
    pub fn code(&self) -> &'static str {
        self.kind().as_str()
    }

    /// What the user should do next, in the CLI's words ([`cli_hint`]).
    pub fn hint(&self) -> &'static str {
        cli_hint::hint(self.kind())
    }

    /// The process exit code for this error; documented in docs/exit-codes.md.
    pub fn exit_code(&self) -> u8 {
        self.kind().exit_code()
    }

    /// Classify an I/O error on `path` into the variant a user can act on.
    pub fn io(path: impl AsRef<std::path::Path>, source: io::Error) -> Self {
        let path = path.as_ref().display().to_string();
        match source.kind() {
            io::ErrorKind::StorageFull => TransferError::DiskFull(path),
            io::ErrorKind::PermissionDenied => TransferError::PermissionDenied(path),
            _ if source.raw_os_error() == Some(28) => TransferError::DiskFull(path),
            _ => TransferError::Io { path, source: Arc::new(source) },
        }
    }
}

pub type Result<T, E = TransferError> = std::result::Result<T, E>;
