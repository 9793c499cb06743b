//! Errors a user can see.
//!
//! Every failure that reaches a person, a script or an agent is a [`TransferError`] variant with a
//! stable snake_case [`code`](TransferError::code), a one-line message (its `Display`) and a
//! [`hint`](TransferError::hint) saying what to do next. The codes, and the CLI exit codes derived
//! from them, are part of the public contract: add variants, never rename one. Messages must never
//! contain a secret (session key, token, grant secret); tickets are only ever shown by the front
//! that minted them.

use std::io;

/// A failure of a transfer operation, with a stable code and a hint.
#[derive(Debug, thiserror::Error)]
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
    Io { path: String, source: io::Error },
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
    /// The operation was interrupted (Ctrl-C, cancellation).
    #[error("interrupted")]
    Cancelled,
}

impl TransferError {
    /// The stable machine-readable code.
    pub fn code(&self) -> &'static str {
        use TransferError::*;
        match self {
            TicketMalformed(_) => "ticket_malformed",
            TicketTruncated => "ticket_truncated",
            TicketTampered => "ticket_tampered",
            TicketWrongKind { .. } => "ticket_wrong_kind",
            TicketUnsupportedVersion(_) => "ticket_unsupported_version",
            TicketExpired { .. } => "ticket_expired",
            PeerUnreachable(_) => "peer_unreachable",
            ChannelUnreachable(_) => "channel_unreachable",
            NotServing(_) => "not_serving",
            SenderCompleted(_) => "already_completed",
            Unauthorized => "unauthorized",
            Protocol(_) => "protocol_error",
            IntegrityMismatch(_) => "integrity_mismatch",
            FileExists(_) => "file_exists",
            SourceUnreadable { .. } => "source_unreadable",
            SourcePrivate(_) => "source_private",
            SourceChanged(_) => "source_changed",
            DiskFull(_) => "disk_full",
            PermissionDenied(_) => "permission_denied",
            Io { .. } => "io_error",
            SizeLimit(_) => "size_limit_exceeded",
            AddressInUse(_) => "address_in_use",
            TransferNotFound(_) => "transfer_not_found",
            AlreadyCompleted(_) => "already_completed",
            PeerUriInvalid(_) => "peer_uri_invalid",
            PeerNotFound(_) => "peer_not_found",
            PeerExists(_) => "peer_exists",
            PeerExpired(_) => "peer_expired",
            GrantNotFound(_) => "grant_not_found",
            TooManyGrants(_) => "too_many_invites",
            OfferRefused(_) => "offer_refused",
            PathNotAllowed(_) => "path_not_allowed",
            PathUnavailable(_) => "path_unavailable",
            InvalidArgument(_) => "invalid_argument",
            Busy(_) => "transfer_busy",
            AmbiguousTransfer(_) => "ambiguous_transfer",
            Home(_) => "home_unusable",
            ListingRefused(_) => "listing_refused",
            ChannelAuth(_) => "channel_auth_failed",
            ChannelTls(_) => "channel_tls_failed",
            PeerOffline(_) => "peer_offline",
            Cancelled => "cancelled",
        }
    }

    /// What the user should do next, in the CLI's words. `ID` stands for the transfer id;
    /// [`Event::error`](crate::engine::Event::error) fills in the real one when it knows it.
    pub fn hint(&self) -> &'static str {
        use TransferError::*;
        match self {
            TicketMalformed(_) | TicketTruncated | TicketTampered => {
                "copy the whole ticket again, exactly as the sender printed it"
            }
            TicketWrongKind { .. } => "pass the ticket printed by `agentferry send`",
            TicketUnsupportedVersion(_) => "upgrade agentferry on this machine",
            TicketExpired { .. } => "ask the sender to run `agentferry send` again for a fresh ticket",
            PeerUnreachable(_) => {
                "check that the sender is still running (or resume it with `agentferry resume ID`), then run `agentferry resume ID` here"
            }
            ChannelUnreachable(_) => {
                "check that the relay (or NATS server) named in the message runs and is reachable from here (--relay, AGENTFERRY_RELAY), then run `agentferry resume ID`"
            }
            NotServing(_) => {
                "the sender stopped serving this ticket (it may have completed): ask for a fresh ticket, or have the sender run `agentferry resume ID` and run it here too"
            }
            SenderCompleted(_) => {
                "the sender finished this transfer already; if this machine does not have the file, ask for a fresh ticket"
            }
            Unauthorized => "ask the sender for a fresh ticket",
            Protocol(_) => "make sure both sides run a compatible agentferry, then run `agentferry resume ID`",
            IntegrityMismatch(_) => {
                "the data was altered on the way or the file changed; run `agentferry resume ID`, or ask for a fresh ticket"
            }
            FileExists(_) => "pass --overwrite, or choose another output folder with -o",
            SourceUnreadable { .. } => "check the path and that it names a readable regular file or folder",
            SourcePrivate(_) => {
                "send something else; to share a file kept there, copy it out first (a folder that holds the home is sent without it)"
            }
            SourceChanged(_) => "send the file again to start a new transfer",
            DiskFull(_) => "free some space, then run `agentferry resume ID`; the partial file is kept",
            PermissionDenied(_) => {
                "choose a folder you can write to with -o (or fix its permissions), then run `agentferry resume ID`"
            }
            Io { .. } => "fix the problem named in the message, then run `agentferry resume ID`",
            SizeLimit(_) => "ask the sender for a fresh ticket; do not trust this peer",
            AddressInUse(_) => "stop whatever holds the port, then run `agentferry resume ID`",
            TransferNotFound(_) => "run `agentferry status` to list the transfers this node knows",
            AlreadyCompleted(_) => "nothing to do; `agentferry status ID` shows where the file is",
            PeerUriInvalid(_) => "copy the whole URI printed by `agentferry export` on the other machine",
            PeerNotFound(_) => {
                "run `agentferry peers list` to see trusted peers, or `agentferry peers add URI` to add one"
            }
            PeerExists(_) => {
                "remove the stored peer first (`agentferry peers remove NAME`), or add this one under another name"
            }
            PeerExpired(_) => {
                "ask the peer for a fresh `agentferry export` and `agentferry peers add` it, or send without --to and hand over the ticket"
            }
            GrantNotFound(_) => "run `agentferry grants list` to see the grants this node exported",
            TooManyGrants(_) => {
                "revoke a grant no longer needed (`agentferry grants revoke ID`), or wait for one to expire"
            }
            OfferRefused(_) => "send without --to and hand the ticket over instead, or ask the peer for a fresh grant",
            PathNotAllowed(_) => "use a path inside the allowed roots (or the download folder for received files)",
            PathUnavailable(_) => "pass --prefer auto or --prefer http",
            InvalidArgument(_) => "run the command with --help and fix the arguments",
            Busy(_) => {
                "wait for that process to finish (`agentferry status ID`), or stop it, then run `agentferry resume ID`"
            }
            AmbiguousTransfer(_) => "run `agentferry resume ID --role send` or `--role receive`",
            Home(_) => "check AGENTFERRY_HOME and the permissions of the node home",
            ListingRefused(_) => {
                "nothing was written; ask the sender to rename the offending entries or send a smaller folder"
            }
            ChannelAuth(_) => {
                "check AGENTFERRY_NATS_USER/AGENTFERRY_NATS_PASSWORD, AGENTFERRY_NATS_TOKEN, AGENTFERRY_NATS_CREDS or AGENTFERRY_NATS_NKEY, and that the account may use agentferry.>"
            }
            ChannelTls(_) => {
                "set AGENTFERRY_NATS_CA to the PEM file of the CA that signed the server's certificate, and AGENTFERRY_NATS_CERT and AGENTFERRY_NATS_KEY if the server asks for a client certificate"
            }
            PeerOffline(_) => {
                "check that the peer runs `agentferry listen` (or its MCP server) and has not revoked the grant it gave you (then ask it for a fresh `agentferry export`); push again, or send without --to and hand over the ticket"
            }
            Cancelled => "run `agentferry resume ID` to continue",
        }
    }

    /// The process exit code for this error; documented in docs/exit-codes.md.
    pub fn exit_code(&self) -> u8 {
        use TransferError::*;
        match self {
            TicketMalformed(_)
            | TicketTruncated
            | TicketTampered
            | TicketWrongKind { .. }
            | TicketUnsupportedVersion(_)
            | TicketExpired { .. } => 3,
            PeerUnreachable(_)
            | ChannelUnreachable(_)
            | NotServing(_)
            | Unauthorized
            | Protocol(_)
            | AddressInUse(_)
            | OfferRefused(_)
            | ChannelAuth(_)
            | ChannelTls(_)
            | PeerOffline(_) => 4,
            PeerUriInvalid(_) | PeerExpired(_) | PeerExists(_) | PathUnavailable(_) => 3,
            PathNotAllowed(_) => 6,
            IntegrityMismatch(_) | SizeLimit(_) | ListingRefused(_) => 5,
            FileExists(_)
            | SourceUnreadable { .. }
            | SourcePrivate(_)
            | DiskFull(_)
            | PermissionDenied(_)
            | Io { .. }
            | Home(_) => 6,
            SourceChanged(_) => 7,
            TransferNotFound(_) | AlreadyCompleted(_) | SenderCompleted(_) | Busy(_) | AmbiguousTransfer(_)
            | PeerNotFound(_) | GrantNotFound(_) => 8,
            TooManyGrants(_) => 4,
            InvalidArgument(_) => 2,
            Cancelled => 130,
        }
    }

    /// An equal error (same variant, code and message); `io::Error` is not `Clone`, so an I/O
    /// source is rebuilt from its kind and text.
    pub fn duplicate(&self) -> TransferError {
        use TransferError::*;
        match self {
            TicketMalformed(m) => TicketMalformed(m),
            TicketTruncated => TicketTruncated,
            TicketTampered => TicketTampered,
            TicketWrongKind { expected } => TicketWrongKind { expected },
            TicketUnsupportedVersion(v) => TicketUnsupportedVersion(*v),
            TicketExpired { ago_secs } => TicketExpired { ago_secs: *ago_secs },
            PeerUnreachable(m) => PeerUnreachable(m.clone()),
            ChannelUnreachable(m) => ChannelUnreachable(m.clone()),
            NotServing(m) => NotServing(m.clone()),
            SenderCompleted(m) => SenderCompleted(m.clone()),
            Unauthorized => Unauthorized,
            Protocol(m) => Protocol(m.clone()),
            IntegrityMismatch(m) => IntegrityMismatch(m.clone()),
            FileExists(m) => FileExists(m.clone()),
            SourceUnreadable { path, reason } => SourceUnreadable { path: path.clone(), reason: reason.clone() },
            SourcePrivate(m) => SourcePrivate(m.clone()),
            SourceChanged(m) => SourceChanged(m.clone()),
            DiskFull(m) => DiskFull(m.clone()),
            PermissionDenied(m) => PermissionDenied(m.clone()),
            Io { path, source } => Io { path: path.clone(), source: io::Error::new(source.kind(), source.to_string()) },
            SizeLimit(m) => SizeLimit(m.clone()),
            AddressInUse(m) => AddressInUse(m.clone()),
            TransferNotFound(m) => TransferNotFound(m.clone()),
            AlreadyCompleted(m) => AlreadyCompleted(m.clone()),
            PeerUriInvalid(m) => PeerUriInvalid(m.clone()),
            PeerNotFound(m) => PeerNotFound(m.clone()),
            PeerExists(m) => PeerExists(m.clone()),
            PeerExpired(m) => PeerExpired(m.clone()),
            GrantNotFound(m) => GrantNotFound(m.clone()),
            TooManyGrants(n) => TooManyGrants(*n),
            OfferRefused(m) => OfferRefused(m.clone()),
            PathNotAllowed(m) => PathNotAllowed(m.clone()),
            PathUnavailable(m) => PathUnavailable(m.clone()),
            InvalidArgument(m) => InvalidArgument(m.clone()),
            Busy(m) => Busy(m.clone()),
            AmbiguousTransfer(m) => AmbiguousTransfer(m.clone()),
            Home(m) => Home(m.clone()),
            ListingRefused(m) => ListingRefused(m.clone()),
            ChannelAuth(m) => ChannelAuth(m.clone()),
            ChannelTls(m) => ChannelTls(m.clone()),
            PeerOffline(m) => PeerOffline(m.clone()),
            Cancelled => Cancelled,
        }
    }

    /// Classify an I/O error on `path` into the variant a user can act on.
    pub fn io(path: impl AsRef<std::path::Path>, source: io::Error) -> Self {
        let path = path.as_ref().display().to_string();
        match source.kind() {
            io::ErrorKind::StorageFull => TransferError::DiskFull(path),
            io::ErrorKind::PermissionDenied => TransferError::PermissionDenied(path),
            _ if source.raw_os_error() == Some(28) => TransferError::DiskFull(path),
            _ => TransferError::Io { path, source },
        }
    }
}

pub type Result<T, E = TransferError> = std::result::Result<T, E>;
