//! The CLI's words: what a person or a script should do next after each [`Code`], naming
//! `agentferry` commands and flags.
//!
//! The engine writes these into events (`hint` in the JSON Lines) and the journal, which the CLI
//! shows, so they live in the library beside the table; the MCP server chooses its own
//! (`mcp::errors`). `ID` stands for the transfer id;
//! [`Event::error`](crate::engine::Event::error) fills in the real one when it knows it.

use super::Code;

/// The CLI's hint for `code`.
pub fn hint(code: Code) -> &'static str {
    use Code::*;
    match code {
        TicketMalformed | TicketTruncated | TicketTampered => {
            "copy the whole ticket again, exactly as the sender printed it"
        }
        TicketWrongKind => "pass the ticket printed by `agentferry send`",
        TicketUnsupportedVersion => "upgrade agentferry on this machine",
        TicketExpired => "ask the sender to run `agentferry send` again for a fresh ticket",
        PeerUnreachable => {
            "check that the sender is still running (or resume it with `agentferry resume ID`), then run `agentferry resume ID` here"
        }
        ChannelUnreachable => {
            "check that the relay (or NATS server) named in the message runs and is reachable from here (--relay, AGENTFERRY_RELAY), then run `agentferry resume ID`"
        }
        NotServing => {
            "the sender stopped serving this ticket (it may have completed): ask for a fresh ticket, or have the sender run `agentferry resume ID` and run it here too"
        }
        SenderCompleted => {
            "the sender finished this transfer already; if this machine does not have the file, ask for a fresh ticket"
        }
        Unauthorized => "ask the sender for a fresh ticket",
        Protocol => "make sure both sides run a compatible agentferry, then run `agentferry resume ID`",
        IntegrityMismatch => {
            "the data was altered on the way or the file changed; run `agentferry resume ID`, or ask for a fresh ticket"
        }
        TempFileSwapped => {
            "another program changed the temp file in the output folder; receive into a folder only you can write (-o DIR), or run `agentferry resume ID` to start the file afresh"
        }
        FileExists => "pass --overwrite, or choose another output folder with -o",
        SourceUnreadable => "check the path and that it names a readable regular file or folder",
        SourcePrivate => {
            "send something else; to share a file kept there, copy it out first (a folder that holds the home is sent without it)"
        }
        SourceChanged => "send the file again to start a new transfer",
        DiskFull => "free some space, then run `agentferry resume ID`; the partial file is kept",
        PermissionDenied => {
            "choose a folder you can write to with -o (or fix its permissions), then run `agentferry resume ID`"
        }
        Io => "fix the problem named in the message, then run `agentferry resume ID`",
        SizeLimit => "ask the sender for a fresh ticket; do not trust this peer",
        AddressInUse => "stop whatever holds the port, then run `agentferry resume ID`",
        TransferNotFound => "run `agentferry status` to list the transfers this node knows",
        AlreadyCompleted => "nothing to do; `agentferry status ID` shows where the file is",
        PeerUriInvalid => "copy the whole URI printed by `agentferry export` on the other machine",
        PeerNotFound => "run `agentferry peers list` to see trusted peers, or `agentferry peers add URI` to add one",
        PeerExists => {
            "remove the stored peer first (`agentferry peers remove NAME`), or add this one under another name"
        }
        PeerExpired => {
            "ask the peer for a fresh `agentferry export` and `agentferry peers add` it, or send without --to and hand over the ticket"
        }
        GrantNotFound => "run `agentferry grants list` to see the grants this node exported",
        TooManyGrants => "revoke a grant no longer needed (`agentferry grants revoke ID`), or wait for one to expire",
        OfferRefused => "send without --to and hand the ticket over instead, or ask the peer for a fresh grant",
        PathNotAllowed => "use a path inside the allowed roots (or the download folder for received files)",
        NoRoots => "add the folder as a root in the MCP client, or start the server with `agentferry mcp --root DIR`",
        PathUnavailable => "pass --prefer auto or --prefer http",
        InvalidArgument => "run the command with --help and fix the arguments",
        Busy => "wait for that process to finish (`agentferry status ID`), or stop it, then run `agentferry resume ID`",
        AmbiguousTransfer => "run `agentferry resume ID --role send` or `--role receive`",
        Home => "check AGENTFERRY_HOME and the permissions of the node home",
        ListingRefused => {
            "nothing was written; ask the sender to rename the offending entries or send a smaller folder"
        }
        ChannelAuth => {
            "check AGENTFERRY_NATS_USER/AGENTFERRY_NATS_PASSWORD, AGENTFERRY_NATS_TOKEN, AGENTFERRY_NATS_CREDS or AGENTFERRY_NATS_NKEY, and that the account may use agentferry.>"
        }
        ChannelTls => {
            "set AGENTFERRY_NATS_CA to the PEM file of the CA that signed the server's certificate, and AGENTFERRY_NATS_CERT and AGENTFERRY_NATS_KEY if the server asks for a client certificate"
        }
        PeerOffline => {
            "check that the peer runs `agentferry listen` (or its MCP server) and has not revoked the grant it gave you (then ask it for a fresh `agentferry export`); push again, or send without --to and hand over the ticket"
        }
        CodeMalformed => {
            "type the code exactly as the other side shows it: its number, then three words (as in 7-guitar-nebula-acorn)"
        }
        CodeWrong => {
            "the code is used up: ask the other side to run its command again (`agentferry send FILE --code` or `agentferry export --code`) and type the new code carefully; both must use the same relay"
        }
        CodeUsed => {
            "codes work once: ask the other side for a fresh code (`agentferry send FILE --code` or `agentferry export --code`)"
        }
        CodeExpired => {
            "codes live for 10 minutes while their side waits: run the command again for a fresh code and redeem it sooner"
        }
        CodeUnknown => {
            "check the number at the start of the code, and that both sides use the same relay (--relay, AGENTFERRY_RELAY)"
        }
        CodeRefused => {
            "wait a minute and try again; if it persists, check that the relay runs this version of agentferry"
        }
        CodeNeedsRelay => {
            "pass --relay ws://HOST:PORT or set AGENTFERRY_RELAY (or `relay` in <home>/config.json), the same relay on both sides; `agentferry relay` runs one"
        }
        LinkNeedsRelay => {
            "pass --relay ws://HOST:PORT or set AGENTFERRY_RELAY (a relay at the root of its host, which serves the page); `agentferry relay` runs one"
        }
        Cancelled => "run `agentferry resume ID` to continue",
        NotResumable => {
            "pipes are not resumable: run the whole pipeline again (`... | agentferry send -`, or `agentferry receive TICKET -o -`)"
        }
        FolderToStdout => "receive a folder into a directory instead: `agentferry receive TICKET -o DIR`",
        TooLargeForMessages => {
            "chat messages carry a few MiB at most: send it with `agentferry send FILE` (direct, WebRTC or a relay: --relay ws://HOST:PORT) and post the ticket instead"
        }
        MessageMalformed => {
            "paste the whole message, from `\u{1F517}FERRY:` to its end, exactly as it was posted; a message cut by the chat needs a smaller --max-message-chars on the sending side"
        }
        MessageTampered => {
            "the message was changed in the chat or belongs to another transfer; it was dropped and its chunk is asked for again: post the replies and go on"
        }
        NotLoopback => {
            "listen on 127.0.0.1 or [::1], or pass --allow-remote to accept clients from other machines (every request still needs the bearer token; put TLS in front of it)"
        }
    }
}
