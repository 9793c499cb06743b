//! The messages path on the command line: `send FILE --via messages` prints the first messages,
//! `messages` reads pasted messages on standard input and prints the replies to post.
//!
//! Messages go to stdout, one per line (they hold no line breaks), so a person can copy them and
//! a script can post them; what happened goes to stderr. Both call the engine once.

use std::{io::Read, path::PathBuf, time::Duration};

use agentferry::{Node, ReceiveOptions, TransferError, engine::MessagesOptions};

use super::args::{HomeArg, NameArg};

/// How `send` carries the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Via {
    // Not a doc comment: a described value would turn `send --help` into the long layout.
    Messages,
}

#[derive(Debug, clap::Args)]
pub struct MessagesArgs {
    /// Folder for files that arrive (created if missing).
    #[arg(short, long, value_name = "DIR", default_value = ".")]
    pub output: PathBuf,
    /// Replace an existing file of the same name.
    #[arg(long)]
    pub overwrite: bool,
    #[command(flatten)]
    pub home: HomeArg,
    #[command(flatten)]
    pub name: NameArg,
}

fn print(messages: &[String]) {
    for m in messages {
        println!("{m}");
    }
}

/// `send FILE --via messages`: print the first messages.
pub fn send(
    node: &Node,
    path: PathBuf,
    expires_in: Duration,
    max_chars: Option<usize>,
    peer: Option<String>,
) -> Result<(), TransferError> {
    let opened = node.send_as_messages(MessagesOptions { path, expires_in, max_chars, peer })?;
    print(&opened.messages);
    eprintln!(
        "agentferry: transfer {} ({} messages in all): post these, then pipe the replies into `agentferry messages`",
        opened.transfer_id,
        opened.parts + 1
    );
    Ok(())
}

/// `messages`: take pasted messages (one per line; none: repeat) and print the replies.
pub fn take(node: &Node, args: MessagesArgs) -> Result<(), TransferError> {
    let mut text = String::new();
    std::io::stdin().read_to_string(&mut text).map_err(|e| TransferError::io("standard input", e))?;
    let lines: Vec<String> = text.lines().filter(|l| !l.trim().is_empty()).map(str::to_owned).collect();
    let options = ReceiveOptions { output_dir: args.output, overwrite: args.overwrite, peer: None, prefer: None };
    let taken = node.take_messages(&lines, &options)?;
    print(&taken.messages);
    for (index, e) in &taken.rejected {
        let at = index.map(|i| format!("line {}: ", i + 1)).unwrap_or_default();
        eprintln!("agentferry: {at}{} ({}): {}", e, e.code(), e.hint());
    }
    for t in &taken.transfers {
        let saved = t.saved_to.as_ref().map(|p| format!(", saved to {}", p.display())).unwrap_or_default();
        eprintln!(
            "agentferry: {} {} {}: {:?}, {}/{} chunks{saved}",
            t.role.as_str(),
            t.transfer_id,
            t.file_name,
            t.state,
            t.chunks_done,
            t.chunks_total
        );
        if let Some(e) = &t.error {
            eprintln!("agentferry: {} ({}): {}", e, e.code(), e.hint());
        }
    }
    match taken.transfers.iter().find_map(|t| t.error.clone()).or(taken.rejected.into_iter().next().map(|r| r.1)) {
        Some(e) if taken.messages.is_empty() => Err(e),
        _ => Ok(()),
    }
}
