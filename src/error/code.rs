//! The table of error codes: each code's stable string and the CLI's exit code, one row each.
//!
//! [`Code`] names what went wrong without the details a [`TransferError`](super::TransferError)
//! carries, so that each front can choose its own words by an exhaustive `match`: the CLI's
//! hints ([`super::cli_hint`]) and the MCP server's (`mcp::errors`). A new code that a front
//! gives no hint does not compile. The strings and exit codes are a public contract (README,
//! `schemas/`, scripts): add rows, never change one.

/// One row per code, in table order: the variant, then `(stable code, exit code)`. The enum,
/// [`Code::ALL`] and the row lookup all come from this one list.
macro_rules! table {
    ($($variant:ident => ($code:literal, $exit:literal),)*) => {
        /// What went wrong, one variant per [`TransferError`](super::TransferError) variant.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum Code {
            $($variant,)*
        }

        impl Code {
            /// Every code, in table order.
            pub const ALL: &[Code] = &[$(Code::$variant,)*];

            const fn row(self) -> (&'static str, u8) {
                match self {
                    $(Code::$variant => ($code, $exit),)*
                }
            }
        }
    };
}

// Two rows share `already_completed`: the sender finished (another receiver took it) or this
// node did; a script reacts the same way, the hints differ.
table! {
    TicketMalformed => ("ticket_malformed", 3),
    TicketTruncated => ("ticket_truncated", 3),
    TicketTampered => ("ticket_tampered", 3),
    TicketWrongKind => ("ticket_wrong_kind", 3),
    TicketUnsupportedVersion => ("ticket_unsupported_version", 3),
    TicketExpired => ("ticket_expired", 3),
    PeerUnreachable => ("peer_unreachable", 4),
    ChannelUnreachable => ("channel_unreachable", 4),
    NotServing => ("not_serving", 4),
    SenderCompleted => ("already_completed", 8),
    Unauthorized => ("unauthorized", 4),
    Protocol => ("protocol_error", 4),
    IntegrityMismatch => ("integrity_mismatch", 5),
    TempFileSwapped => ("temp_file_swapped", 5),
    FileExists => ("file_exists", 6),
    SourceUnreadable => ("source_unreadable", 6),
    SourcePrivate => ("source_private", 6),
    SourceChanged => ("source_changed", 7),
    DiskFull => ("disk_full", 6),
    PermissionDenied => ("permission_denied", 6),
    Io => ("io_error", 6),
    SizeLimit => ("size_limit_exceeded", 5),
    AddressInUse => ("address_in_use", 4),
    TransferNotFound => ("transfer_not_found", 8),
    AlreadyCompleted => ("already_completed", 8),
    PeerUriInvalid => ("peer_uri_invalid", 3),
    PeerNotFound => ("peer_not_found", 8),
    PeerExists => ("peer_exists", 3),
    PeerExpired => ("peer_expired", 3),
    GrantNotFound => ("grant_not_found", 8),
    TooManyGrants => ("too_many_invites", 4),
    OfferRefused => ("offer_refused", 4),
    PathNotAllowed => ("path_not_allowed", 6),
    NoRoots => ("no_roots", 6),
    PathUnavailable => ("path_unavailable", 3),
    InvalidArgument => ("invalid_argument", 2),
    Busy => ("transfer_busy", 8),
    AmbiguousTransfer => ("ambiguous_transfer", 8),
    Home => ("home_unusable", 6),
    ListingRefused => ("listing_refused", 5),
    ChannelAuth => ("channel_auth_failed", 4),
    ChannelTls => ("channel_tls_failed", 4),
    PeerOffline => ("peer_offline", 4),
    CodeMalformed => ("code_malformed", 3),
    CodeWrong => ("code_wrong", 3),
    CodeUsed => ("code_used", 3),
    CodeExpired => ("code_expired", 3),
    CodeUnknown => ("code_unknown", 3),
    CodeRefused => ("code_refused", 4),
    CodeNeedsRelay => ("code_needs_relay", 3),
    LinkNeedsRelay => ("link_needs_relay", 3),
    Cancelled => ("cancelled", 130),
    NotResumable => ("not_resumable", 8),
    FolderToStdout => ("folder_to_stdout", 2),
    NotLoopback => ("address_not_loopback", 2),
    TooLargeForMessages => ("too_large_for_messages", 5),
    MessageMalformed => ("message_malformed", 3),
    MessageTampered => ("message_tampered", 5),
}

impl Code {
    /// The stable machine-readable code, such as `peer_unreachable`.
    pub const fn as_str(self) -> &'static str {
        self.row().0
    }

    /// The process exit code for this error; documented in docs/exit-codes.md.
    pub const fn exit_code(self) -> u8 {
        self.row().1
    }

    /// The code whose string is `code` (a code read back from the journal or an event); of the
    /// two `already_completed` rows, this node's.
    pub fn from_name(code: &str) -> Option<Code> {
        Code::ALL.iter().rev().copied().find(|c| c.as_str() == code)
    }
}

impl std::fmt::Display for Code {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_is_snake_case_and_found_by_its_name() {
        for &code in Code::ALL {
            let name = code.as_str();
            assert!(name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'), "{name}");
            assert_eq!(Code::from_name(name).map(Code::as_str), Some(name));
            assert_ne!(code.exit_code(), 0, "{name} is a failure");
            assert_ne!(code.exit_code(), 1, "{name}: 1 is left to the binary's own errors");
        }
        assert_eq!(Code::from_name("already_completed"), Some(Code::AlreadyCompleted));
        assert_eq!(Code::from_name("no_such_code"), None);
    }
}
