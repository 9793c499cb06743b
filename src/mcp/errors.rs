//! Tool failures as every MCP client can read them, with hints in the caller's language.
//!
//! A failed call is an `isError` result whose only content is one text block holding
//! `{"code", "message", "hint"}` as JSON, and which carries no `structuredContent`: clients that
//! validate structured content against the tool's `outputSchema` (the TypeScript SDK, the
//! Inspector) would otherwise reject the error before the agent saw it. `code` is the stable
//! code of [`TransferError`]; `hint` names the tool and the arguments to call next (the engine's
//! own hints speak CLI), with the real `transfer_id` when one is known: [`hint_for`] matches
//! every [`Code`], so no code reaches an agent with a CLI instruction.

use rmcp::model::{CallToolResult, ContentBlock, IntoContents};
use schemars::JsonSchema;
use serde::Serialize;

use crate::error::{Code, TransferError};

/// A failed call: `code` is stable, `hint` says what to call next.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct ToolError {
    pub code: String,
    pub message: String,
    pub hint: String,
}

impl ToolError {
    /// `e` as seen by an agent; `id` is the transfer the call was about, when known.
    pub fn new(e: &TransferError, id: Option<&str>) -> Self {
        ToolError { code: e.code().into(), message: e.to_string(), hint: hint(e, id) }
    }

    /// Arguments that do not match the tool's input schema (`invalid_argument`).
    pub fn bad_arguments(tool: &str, problem: &str) -> Self {
        ToolError {
            code: "invalid_argument".into(),
            message: format!("invalid arguments for {tool}: {problem}"),
            hint: format!("call {tool} again with {}", usage(tool)),
        }
    }

    /// The call ends with an `input_required` result instead (see `input`); the client never
    /// sees this error.
    pub fn awaiting_input() -> Self {
        ToolError {
            code: "input_required".into(),
            message: "the call waits for the client's answers".into(),
            hint: "call again with the answers".into(),
        }
    }

    /// The `isError` result this error travels in.
    pub fn into_result(self) -> CallToolResult {
        CallToolResult::error(self.into_contents())
    }
}

impl From<TransferError> for ToolError {
    fn from(e: TransferError) -> Self {
        ToolError::new(&e, None)
    }
}

impl IntoContents for ToolError {
    fn into_contents(self) -> Vec<ContentBlock> {
        vec![ContentBlock::text(serde_json::to_string(&self).expect("plain strings serialise"))]
    }
}

/// What each tool takes, for `invalid_argument` hints.
fn usage(tool: &str) -> &'static str {
    match tool {
        "send_file" => {
            "{path: string, to?: peer name, code?: boolean, prefer?: \"auto\"|\"http\"|\"webrtc\"|\"relay\", expires_in_minutes?: 1..525600, via?: \"messages\", max_message_chars?: 400..65536}"
        }
        "receive_file" => {
            "one of {ticket: string}, {code: string} or {transfer_id: string}, plus optional output_dir: string, overwrite: boolean, prefer: \"auto\"|\"http\"|\"webrtc\"|\"relay\""
        }
        "check_session" => {
            "{transfer_id?: string, wait?: boolean (needs transfer_id), timeout_seconds?: 1..600}, or for a listing {limit?: 1..1000, state?: \"active\"|\"pending\"|\"interrupted\"|\"completed\"|\"failed\"}"
        }
        "add_peer" => {
            "{uri: \"grant…\" string or code: string, name?: string, ttl_hours?: number >= 0, replace?: boolean}"
        }
        "list_peers" => "no arguments",
        "resume_transfer" => "{transfer_id: string, role?: \"send\"|\"receive\"} (check_session lists the ids)",
        "create_invite" => "{name?: string, ttl_hours?: number > 0, code?: boolean}",
        "revoke_invite" => "{grant_id: string} (list_invites lists them)",
        "list_invites" => "no arguments",
        "receive_messages" => {
            "{messages: [string] (every chat message holding 🔗FERRY:, or [] to repeat), output_dir?: string, overwrite?: boolean}"
        }
        _ => "the arguments its input schema describes",
    }
}

/// The next step for an agent after an error of `code`, naming tools and arguments, with the
/// real transfer id when known. Exhaustive: a new [`Code`] without an agent's hint does not
/// compile.
pub(crate) fn hint_for(code: Code, id: Option<&str>) -> String {
    let resume = match id {
        Some(id) => format!("call resume_transfer with transfer_id \"{id}\""),
        None => "call resume_transfer with the transfer's transfer_id (check_session lists them)".into(),
    };
    use Code::*;
    match code {
        TicketMalformed | TicketTruncated | TicketTampered => {
            "call receive_file again with the whole ticket, exactly as send_file returned it on the other machine".into()
        }
        TicketWrongKind => "call receive_file with the ticket that send_file returned on the other machine (it starts with `ferry`); grant URIs go to add_peer".into(),
        TicketUnsupportedVersion => "upgrade agentferry on this machine, then call receive_file again".into(),
        TicketExpired => "ask the sender to call send_file again and pass the fresh ticket to receive_file".into(),
        PeerUnreachable => {
            format!("check that the sender is still running (its MCP server, or resume_transfer on its side), then {resume}")
        }
        ChannelUnreachable => format!(
            "check that the relay (or NATS server) named in the message runs and is reachable from here (the server's --relay or AGENTFERRY_RELAY), then {resume}"
        ),
        NotServing => format!(
            "the sender no longer serves this ticket (it completed, or its server stopped: a ticket lives as long as the sending server); ask the sending agent to call resume_transfer on its side and then {resume}, or ask it for a fresh ticket from send_file and call receive_file with it"
        ),
        Unauthorized => "ask the sender for a fresh ticket (send_file) and call receive_file with it".into(),
        Protocol => format!("make sure both sides run a compatible agentferry, then {resume}"),
        IntegrityMismatch => format!("{resume}, or ask the sender for a fresh ticket"),
        TempFileSwapped => format!("another program changed the temp file in the output folder: pass receive_file an output_dir only this user can write, or {resume} to start the file afresh"),
        FileExists => "call receive_file again with overwrite: true to replace it, or with another output_dir".into(),
        SourceUnreadable => "call send_file with a path that names a readable regular file or folder inside the allowed roots".into(),
        SourcePrivate => "call send_file with a path outside agentferry's own home (it holds session keys); copy a file out of it first to share it".into(),
        SourceChanged => "call send_file again to start a new transfer of the current file".into(),
        DiskFull => format!("free some space, then {resume}; the partial file is kept"),
        PermissionDenied => {
            format!("pass receive_file an output_dir the server may write to (or fix the permissions), then {resume}")
        }
        Io => format!("fix the problem named in the message, then {resume}"),
        SizeLimit => "ask the sender for a fresh ticket; do not trust this peer".into(),
        AddressInUse => format!("stop whatever holds the port, then {resume}"),
        TransferNotFound => "call check_session without transfer_id to list the transfers this node knows".into(),
        AlreadyCompleted | SenderCompleted => match id {
            Some(id) => format!("nothing to do; check_session with transfer_id \"{id}\" shows where the file is"),
            None => "nothing to do; check_session shows where the file is".into(),
        },
        PeerUriInvalid => "call add_peer with the whole URI that `agentferry export` printed on the other machine (it starts with `grant`)".into(),
        PeerNotFound => "call list_peers to see the trusted peers, or add_peer to add one".into(),
        PeerExists => "call add_peer again with replace: true to replace the stored peer, or with another name".into(),
        PeerExpired => "ask the peer for a fresh `agentferry export` and call add_peer with it (replace: true), or call send_file without `to` and hand over the ticket".into(),
        OfferRefused => "call send_file without `to` and hand the ticket over instead, or ask the peer for a fresh grant".into(),
        PathNotAllowed => "pass a path inside the allowed roots (send_file), or an output_dir inside the download folder or a root (receive_file)".into(),
        NoRoots => "ask the person to add the folder as a root in this MCP client, or to add --root DIR to this server's arguments in the client's MCP configuration (it overrides the client's roots); receive_file without output_dir still saves into the download folder".into(),
        PathUnavailable => "call again with prefer: \"auto\" or prefer: \"http\"".into(),
        InvalidArgument => "read the tool's description and input schema, and call it again with fixed arguments".into(),
        Busy => match id {
            Some(id) => format!("another process drives it: call check_session with transfer_id \"{id}\" and wait: true, or stop that process and then {resume}"),
            None => format!("another process drives it: wait for it with check_session, or stop that process and then {resume}"),
        },
        AmbiguousTransfer => match id {
            Some(id) => format!(
                "this node both sends and receives it: call resume_transfer with transfer_id \"{id}\" and role: \"send\" (or role: \"receive\")"
            ),
            None => "this node both sends and receives it: call resume_transfer again with role: \"send\" (or role: \"receive\")".into(),
        },
        TooManyGrants => "call list_invites and revoke_invite one that is no longer needed, or wait for one to expire".into(),
        GrantNotFound => "call list_invites to see this node's invites and their grant_id".into(),
        Home => "check AGENTFERRY_HOME in the server's configuration and the permissions of the node home".into(),
        ListingRefused => "nothing was written; ask the sender to rename the offending entries or send a smaller folder, then call receive_file with the fresh ticket".into(),
        ChannelAuth => "fix the channel credentials in the server's configuration (AGENTFERRY_NATS_USER and AGENTFERRY_NATS_PASSWORD, AGENTFERRY_NATS_TOKEN, AGENTFERRY_NATS_CREDS or AGENTFERRY_NATS_NKEY; the account must be allowed agentferry.>), restart the server, then call the tool again".into(),
        ChannelTls => "set AGENTFERRY_NATS_CA (and AGENTFERRY_NATS_CERT and AGENTFERRY_NATS_KEY if the server wants a client certificate) in the server's configuration, restart it, then call the tool again".into(),
        PeerOffline => "the peer never took the offer: check that its agentferry MCP server (or `agentferry listen`) runs and that it has not revoked the invite (else ask it for a fresh create_invite and call add_peer with replace: true); then call send_file with `to` again, or without `to` and hand over the ticket".into(),
        CodeMalformed => "call again with the code exactly as the other side gave it: its number, then three words (as in 7-guitar-nebula-acorn)".into(),
        CodeWrong => "the code is used up: ask the other side for a fresh code (send_file or create_invite with code: true there) and pass it exactly; both servers must use the same relay".into(),
        CodeUsed => "codes work once: ask the other side for a fresh code (send_file or create_invite with code: true there)".into(),
        CodeExpired => "codes live for 10 minutes: ask the other side for a fresh code and redeem it sooner".into(),
        CodeUnknown => "check the number at the start of the code, and that both servers use the same relay (the server's --relay or AGENTFERRY_RELAY)".into(),
        CodeRefused => "wait a minute and call again; if it persists, the relay may be older than this agentferry: pass the ticket instead".into(),
        LinkNeedsRelay => "the page of an upload link is served by a relay server: start this MCP server with --relay ws://HOST:PORT or AGENTFERRY_RELAY (a relay at the root of its host, reachable by the person's browser)".into(),
        CodeNeedsRelay => "codes meet on a relay server: start this MCP server with --relay ws://HOST:PORT or AGENTFERRY_RELAY (the same relay on both sides), or pass tickets and invite uris instead".into(),
        Cancelled => format!("{resume} to continue from the last chunk on disk"),
        NotResumable => "this transfer was piped through the command line and cannot continue; start a new one with send_file (from a file inside the allowed roots) or receive_file".into(),
        FolderToStdout => "call receive_file: it saves folders into the download folder or an output_dir".into(),
        TooLargeForMessages => "chat messages carry a few MiB at most: call send_file without `via` (direct, WebRTC or the relay) and post its ticket in the chat instead".into(),
        MessageMalformed => "pass the whole message to receive_messages, from `\u{1F517}FERRY:` to its end, exactly as posted; if the chat cuts long messages, call send_file again with a smaller max_message_chars".into(),
        MessageTampered => "the message was changed in the chat or belongs to another transfer; it was dropped and its chunk is asked for again: post the messages receive_messages returned and go on".into(),
        NotLoopback => "the server's configuration must listen on a loopback address, or allow remote clients explicitly; restart it so".into(),
    }
}

/// The hint for `e` in the words of these tools.
fn hint(e: &TransferError, id: Option<&str>) -> String {
    hint_for(e.kind(), id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hints_name_tools_arguments_and_the_real_id() {
        let id = "00112233445566778899aabbccddeeff";
        let e = ToolError::new(&TransferError::FileExists("x".into()), Some(id));
        assert!(e.hint.contains("receive_file") && e.hint.contains("overwrite: true"), "{}", e.hint);
        let e = ToolError::new(&TransferError::PeerUnreachable("gone".into()), Some(id));
        assert!(e.hint.contains(&format!("resume_transfer with transfer_id \"{id}\"")), "{}", e.hint);
        assert!(!e.hint.contains("agentferry resume"), "{}", e.hint);
        let e = ToolError::new(&TransferError::PeerExists("bob".into()), None);
        assert!(e.hint.contains("replace: true"), "{}", e.hint);
        let e = ToolError::new(&TransferError::NotServing("gone".into()), Some(id));
        assert!(e.hint.contains("receive_file") && e.hint.contains(&format!("transfer_id \"{id}\"")), "{}", e.hint);
        let e = ToolError::bad_arguments("send_file", "missing field `path`");
        assert_eq!(e.code, "invalid_argument");
        assert!(e.hint.contains("send_file") && e.hint.contains("path"));
    }

    #[test]
    fn hints_about_the_other_side_name_who_and_which_tool() {
        let id = "00112233445566778899aabbccddeeff";
        let cases = [
            (TransferError::PeerUnreachable("gone".into()), "sender", "resume_transfer"),
            (TransferError::NotServing("refused".into()), "sender", "resume_transfer"),
            (TransferError::ChannelUnreachable("relay ws://x: no answer".into()), "relay", "resume_transfer"),
            (TransferError::PeerOffline("bob".into()), "peer", "send_file"),
        ];
        for (error, who, tool) in cases {
            let e = ToolError::new(&error, Some(id));
            assert!(e.hint.contains(who) && e.hint.contains(tool), "{}: {}", e.code, e.hint);
        }
    }

    #[test]
    fn no_code_tells_an_agent_to_run_a_command_it_cannot() {
        // `agentferry export` and `agentferry listen` name what the other side runs; an agent's
        // own next step is always a tool of this server.
        for &code in Code::ALL {
            let hint = hint_for(code, Some("00ff"));
            let own = hint.replace("`agentferry export`", "").replace("`agentferry listen`", "");
            assert!(!own.contains("`agentferry "), "{code}: {hint}");
        }
        // The codes that used to fall back to the CLI's words.
        use Code::*;
        for code in [NotServing, ListingRefused, ChannelAuth, ChannelTls, PeerOffline] {
            assert_ne!(hint_for(code, None), crate::error::cli_hint::hint(code), "{code}");
        }
        assert!(hint_for(Code::PeerOffline, None).contains("send_file"));
        assert!(hint_for(Code::ChannelAuth, None).contains("AGENTFERRY_NATS_"));
    }

    #[test]
    fn errors_travel_as_json_text_without_structured_content() {
        let result = ToolError::new(&TransferError::Cancelled, None).into_result();
        assert_eq!(result.is_error, Some(true));
        assert!(result.structured_content.is_none());
        let text = &result.content[0].as_text().unwrap().text;
        let v: serde_json::Value = serde_json::from_str(text).unwrap();
        assert_eq!(v["code"], "cancelled");
        assert!(v["hint"].as_str().unwrap().contains("resume_transfer"));
    }
}
