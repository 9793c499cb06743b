//! MCP tasks (the `io.modelcontextprotocol/tasks` extension): call now, fetch later.
//!
//! For a request whose `_meta` declares the extension (the client asks for a task for this
//! call), `receive_file`, `resume_transfer` and push-mode `send_file(to=…)` start the transfer as
//! usual and answer with a task instead of the first status. `tasks/get` then shows the transfer's progress in the task's `statusMessage`; when
//! the transfer ends the task is `completed` with the tool's own final result (the status with
//! `saved_to` and `sha256`, or for a push the send result), or with an `isError` result carrying
//! `{code, message, hint}` if the transfer failed. `tasks/cancel` stops the transfer; it stays
//! in the journal as `interrupted`, and `resume_transfer` continues it.
//!
//! Ticket-mode `send_file` and `receive_file(via: "link")` are never tasks: the other side needs
//! the ticket or the link to start at all.
//! Other requests, including those of clients that declare the extension only at initialisation,
//! get today's answers and follow with `check_session`.

use rmcp::{
    model::{CallToolRequestParams, CallToolResponse, CallToolResult, CreateTaskResult},
    task_manager::{TaskContext, TaskExit, TaskOptions},
};
use tokio::sync::watch;

use super::{FerryServer, Started, ToolError, for_agent, types::*};
use crate::{
    error::TransferError,
    journal::{State, TransferStatus},
};

/// How long a task is kept: as long as a ticket lives by default. rmcp fails a task still
/// running at its TTL, so this must outlast any transfer worth waiting for.
const TASK_TTL_MS: u64 = 24 * 3600 * 1000;
/// The polling interval suggested to clients.
const POLL_INTERVAL_MS: u64 = 500;

/// How the final status of a transfer becomes the task's result.
type Finish = Box<dyn FnOnce(TransferStatus) -> CallToolResult + Send>;

/// Start `request` as a task if it is one of the transfers that run long; `None` for every
/// other call. A transfer that cannot start answers at once with its error, as without tasks.
pub(super) async fn call(server: &FerryServer, request: &CallToolRequestParams) -> Option<CallToolResponse> {
    let arguments = serde_json::Value::Object(request.arguments.clone().unwrap_or_default());
    let started: Result<(Started, Finish), ToolError> = match request.name.as_ref() {
        "receive_file" => {
            let args: ReceiveFileArgs = serde_json::from_value(arguments).ok()?;
            if args.via.is_some() {
                return None; // the link must reach the agent now, before anything runs
            }
            server.start_receive(args).await.map(|s| (s, Box::new(transfer_result) as Finish))
        }
        "resume_transfer" => {
            let args: ResumeArgs = serde_json::from_value(arguments).ok()?;
            server.start_resume(args).await.map(|s| (s, Box::new(transfer_result) as Finish))
        }
        "send_file" => {
            let args: SendFileArgs = serde_json::from_value(arguments).ok()?;
            args.to.as_ref()?;
            if args.via.is_some() {
                return None; // answers at once with messages; nothing runs in the background
            }
            server.start_send(args).await.map(|(first, s)| (s, Box::new(move |end| push_result(first, end)) as Finish))
        }
        _ => return None,
    };
    let (started, finish) = match started {
        Ok(started) => started,
        Err(e) => return Some(e.into_result().into()),
    };
    let options = TaskOptions::new()
        .with_ttl_ms(TASK_TTL_MS)
        .with_poll_interval_ms(POLL_INTERVAL_MS)
        .with_status_message(describe(&started.status.borrow()));
    let task = server.tasks.spawn(options, move |ctx| Box::pin(follow(ctx, started, finish)));
    Some(CallToolResponse::Task(CreateTaskResult::new(task)))
}

/// Mirror the transfer's status into the task until it ends, or stop the transfer when the
/// client cancels the task.
async fn follow(ctx: TaskContext, started: Started, finish: Finish) -> Result<CallToolResult, TaskExit> {
    let Started { mut status, abort } = started;
    loop {
        let now = status.borrow_and_update().clone();
        ctx.set_status_message(describe(&now));
        if now.state.is_terminal() {
            return Ok(finish(now));
        }
        tokio::select! {
            changed = status.changed() => if changed.is_err() {
                // The registry stopped following: its last word is final.
                return Ok(finish(last(&status)));
            },
            _ = ctx.cancelled() => {
                abort.cancel();
                return Err(TaskExit::Cancelled);
            }
        }
    }
}

fn last(status: &watch::Receiver<TransferStatus>) -> TransferStatus {
    status.borrow().clone()
}

/// `state: bytes_done of bytes_total bytes (percent), rate`, for status messages and progress.
pub(super) fn describe(s: &TransferStatus) -> String {
    let state = serde_json::to_value(s.state).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default();
    let percent = s.bytes_done.saturating_mul(100).checked_div(s.bytes_total).unwrap_or(100);
    format!("{state}: {} of {} bytes ({percent}%), {} B/s", s.bytes_done, s.bytes_total, s.rate)
}

/// The error of a transfer that ended without completing.
fn failure(status: &TransferStatus) -> CallToolResult {
    match &status.error {
        Some(e) => ToolError { code: e.code.clone(), message: e.message.clone(), hint: e.hint.clone() }.into_result(),
        None => ToolError::new(&TransferError::Cancelled, Some(&status.transfer_id)).into_result(),
    }
}

/// `receive_file` / `resume_transfer`: the final status, as the tool's output schema says.
fn transfer_result(end: TransferStatus) -> CallToolResult {
    let end = for_agent(end);
    if end.state != State::Completed {
        return failure(&end);
    }
    CallToolResult::structured(serde_json::to_value(&end).expect("statuses serialise"))
}

/// Push-mode `send_file`: the first answer with the final state.
fn push_result(first: SendFileResult, end: TransferStatus) -> CallToolResult {
    let end = for_agent(end);
    if end.state != State::Completed {
        return failure(&end);
    }
    let peer = first.peer.clone().unwrap_or_else(|| "the peer".into());
    let result = SendFileResult {
        state: end.state,
        next: format!("done: {peer} has the file and verified its sha256 {}", end.sha256.as_deref().unwrap_or("")),
        ..first
    };
    CallToolResult::structured(serde_json::to_value(&result).expect("results serialise"))
}
