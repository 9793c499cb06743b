//! The messages path as tools: `send_file {via: "messages"}` and `receive_messages`.
//!
//! Both call the engine once ([`Node::send_as_messages`], [`Node::take_messages`]) on a blocking
//! thread and turn what it did into results an agent can act on: the messages to post, and
//! every refused message with its code and a hint in this server's words.

use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{FerryServer, ToolError, types::SendFileArgs, types::SendFileResult};
use crate::{
    engine::{ChatTransfer, MessagesOptions, Node, ReceiveOptions},
    journal::{Role, State},
};

/// How send_file carries the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Via {
    /// As chat messages that you post yourself (see receive_messages).
    Messages,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct ReceiveMessagesArgs {
    /// Every chat message you saw that holds `🔗FERRY:`, exactly as posted, in any order;
    /// repeats, your own messages and other text are harmless. Pass an empty list to have this
    /// server repeat what it has to say for every unfinished transfer (when the chat went quiet,
    /// or after a restart).
    pub messages: Vec<String>,
    /// Folder for files that arrive; default: the server's download folder. Must be inside the
    /// download folder or an allowed root.
    #[serde(default)]
    pub output_dir: Option<String>,
    /// Replace an existing file of the same name (default false).
    #[serde(default)]
    pub overwrite: Option<bool>,
}

/// One transfer a call touched.
#[derive(Debug, Serialize, JsonSchema)]
pub struct MessagesTransfer {
    pub transfer_id: String,
    /// `receive`: this side gets the file; `send`: this side sends it.
    pub role: Role,
    pub state: State,
    pub file_name: String,
    pub chunks_done: u64,
    pub chunks_total: u64,
    /// Where the received file is, once completed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub saved_to: Option<String>,
    /// Lowercase hex SHA-256 of the whole file, once verified (receiver) or known (sender).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// Why it failed, with what to do.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<ToolError>,
}

/// A message that was refused.
#[derive(Debug, Serialize, JsonSchema)]
pub struct RejectedMessage {
    /// Its position in `messages` (absent: a transfer this server could not take up).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub index: Option<usize>,
    #[serde(flatten)]
    pub error: ToolError,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct ReceiveMessagesResult {
    /// Post each of these in the chat (any order); empty when there is nothing to say.
    pub messages: Vec<String>,
    /// Messages that brought something new.
    pub accepted: usize,
    /// Messages that needed nothing: repeats, your own, other transfers', plain text.
    pub skipped: usize,
    /// Messages refused (tampered, malformed, too large): nothing of them was written.
    pub rejected: Vec<RejectedMessage>,
    pub transfers: Vec<MessagesTransfer>,
    /// What to do next.
    pub next: String,
}

fn transfer(t: ChatTransfer) -> MessagesTransfer {
    let id = t.transfer_id.to_string();
    MessagesTransfer {
        error: t.error.map(|e| ToolError::new(&e, Some(&id))),
        transfer_id: id,
        role: t.role,
        state: t.state,
        file_name: t.file_name,
        chunks_done: t.chunks_done,
        chunks_total: t.chunks_total,
        saved_to: t.saved_to.map(|p| p.display().to_string()),
        sha256: t.sha256,
    }
}

/// Run a blocking engine call off the async threads.
async fn blocking<T: Send + 'static>(
    node: Node,
    f: impl FnOnce(&Node) -> Result<T, crate::TransferError> + Send + 'static,
) -> Result<T, ToolError> {
    tokio::task::spawn_blocking(move || f(&node))
        .await
        .map_err(|_| crate::TransferError::Cancelled)?
        .map_err(Into::into)
}

/// `send_file` with `via: "messages"`.
pub(super) async fn send(server: &FerryServer, args: SendFileArgs) -> Result<SendFileResult, ToolError> {
    if args.code == Some(true) || args.prefer.is_some() || args.password.is_some() {
        return Err(ToolError::bad_arguments("send_file", "via: \"messages\" takes no code, prefer or password"));
    }
    let path = server.roots().readable_file(&args.path)?;
    let minutes = args.expires_in_minutes.unwrap_or(1440).max(1);
    let options = MessagesOptions {
        path,
        expires_in: Duration::from_secs(minutes as u64 * 60),
        max_chars: args.max_message_chars.map(|c| c as usize),
        peer: args.to.clone(),
    };
    let opened = blocking(server.node().await, move |node| node.send_as_messages(options)).await?;
    let privacy = match &args.to {
        Some(peer) => format!("the first message is sealed for {peer}: only that peer can read the file"),
        None => "the first message carries the ticket: anyone who can read the chat can read the file (pass `to` \
with a paired peer to keep it private)"
            .into(),
    };
    Ok(SendFileResult {
        transfer_id: opened.transfer_id.to_string(),
        ticket: None,
        link: None,
        code: None,
        code_expires_at: None,
        state: State::Active,
        file_name: opened.file_name,
        bytes_total: opened.bytes_total,
        peer: args.to,
        peer_answer: None,
        messages: Some(opened.messages),
        next: format!(
            "post each of `messages` in the chat (one chat message each); the receiving agent passes them to \
receive_messages and posts what it returns; pass those replies to receive_messages here and post what it \
returns, until the transfer is completed ({} messages in all). If the chat goes quiet, call receive_messages \
with no messages to repeat. {privacy}",
            opened.parts + 1
        ),
    })
}

/// The `receive_messages` tool.
pub(super) async fn receive(
    server: &FerryServer,
    args: ReceiveMessagesArgs,
) -> Result<ReceiveMessagesResult, ToolError> {
    let output_dir = server.roots().writable_dir(args.output_dir.as_deref())?;
    let options = ReceiveOptions { output_dir, overwrite: args.overwrite.unwrap_or(false), peer: None, prefer: None };
    let texts = args.messages;
    let taken = blocking(server.node().await, move |node| node.take_messages(&texts, &options)).await?;
    let rejected: Vec<RejectedMessage> = taken
        .rejected
        .into_iter()
        .map(|(index, e)| RejectedMessage { index, error: ToolError::new(&e, None) })
        .collect();
    let transfers: Vec<MessagesTransfer> = taken.transfers.into_iter().map(transfer).collect();
    let next = if taken.messages.is_empty() {
        if transfers.iter().all(|t| t.state == State::Completed) && !transfers.is_empty() {
            "done: nothing more to post".to_owned()
        } else {
            "nothing to post now; pass the next messages you see, or none to have this server repeat itself".to_owned()
        }
    } else {
        "post each of `messages` in the chat, then pass the replies you see to receive_messages".to_owned()
    };
    Ok(ReceiveMessagesResult {
        messages: taken.messages,
        accepted: taken.accepted,
        skipped: taken.skipped,
        rejected,
        transfers,
        next,
    })
}
