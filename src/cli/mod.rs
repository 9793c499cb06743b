//! The command line: parse, run one engine operation, print its events, exit with a stable code.
//!
//! This front holds no transfer logic. Each subcommand maps to one call on [`agentferry::Node`];
//! output goes through [`output::Reporter`]; the exit code comes from the error's code
//! (documented in docs/exit-codes.md).

mod args;
mod demo;
mod messages;
mod output;
mod pipe;
mod serve;
mod trust;

use std::{path::PathBuf, process::ExitCode, time::Duration};

use clap::{Parser, Subcommand, ValueEnum};

use agentferry::{
    Event, Node, ReceiveOptions, SendOptions, Ticket, Transfer, TransferError, id::TransferId, journal::Role,
};
use args::{BindArg, HomeArg, JsonArg, NameArg, NodeArgs, PreferArg, RelayArg, WaitArg};
use output::Reporter;

/// Move files between machines: direct, encrypted, resumable.
#[derive(Debug, Parser)]
#[command(name = "agentferry", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve a file or a whole folder; prints a ticket first, then serves until the receiver has
    /// it or the ticket expires.
    Send(SendArgs),
    /// Fetch the file or folder a ticket names.
    Receive(ReceiveArgs),
    /// Show one transfer, or all that this node knows.
    Status(StatusArgs),
    /// Continue an interrupted transfer, sending or receiving, from its journal.
    Resume(ResumeArgs),
    /// Read chat messages pasted on standard input (one per line; none: repeat) and print the
    /// replies to post: the other end of `send --via messages`.
    Messages(messages::MessagesArgs),
    /// Run the MCP server on stdio (for Claude Code, Cursor and other MCP hosts), or over
    /// Streamable HTTP with --http (for agents without stdio).
    Mcp(serve::McpArgs),
    /// Take pushes from trusted peers until stopped (for always-on machines).
    Listen(serve::ListenArgs),
    /// Mint a grant that lets another node push files here; prints its URI.
    Export(trust::ExportArgs),
    /// Manage the peers this node pushes to.
    Peers(trust::PeersArgs),
    /// Manage the grants this node exported.
    Grants(trust::GrantsArgs),
    /// Write the JSON Schemas of the MCP tools and the JSON Lines events into DIR.
    Schemas(SchemasArgs),
    /// Run a relay server: mailboxes over WebSocket for nodes that cannot reach each other.
    Relay(serve::RelayArgs),
    /// Send a generated file between two nodes over loopback and report path, time, speed and hash.
    Demo(demo::DemoArgs),
}

#[derive(Debug, clap::Args)]
struct SchemasArgs {
    /// Folder to write into.
    #[arg(default_value = "schemas")]
    dir: PathBuf,
}

#[derive(Debug, clap::Args)]
struct SendArgs {
    /// The file or folder to send (a folder goes whole, in one transfer; links inside are skipped),
    /// or `-` for standard input (read to the end first, into a private temporary file; not
    /// resumable).
    #[arg(value_name = "FILE|DIR|-")]
    file: PathBuf,
    /// With `-`: the file name the receiver saves standard input under.
    #[arg(long, value_name = "NAME", default_value = "stdin")]
    file_name: String,
    /// Push to this trusted peer (see `peers list`) instead of printing a ticket.
    #[arg(long, value_name = "PEER", conflicts_with = "code")]
    to: Option<String>,
    /// Print a short code to say or type (7-guitar-nebula-acorn) instead of the ticket:
    /// `agentferry receive CODE` on the other machine, with the same relay (--relay). It works
    /// once, for 10 minutes.
    #[arg(long)]
    code: bool,
    /// With --code: show two words derived from the code's key once it is redeemed; the
    /// receiver's `--verify` shows the same two unless someone in the middle guessed the code.
    #[arg(long, requires = "code")]
    verify: bool,
    /// Also print a link that opens the file in a browser, for a person with nothing installed
    /// (see docs/browser.md): at the relay when one is configured, else at this machine's
    /// address. Secret, like the ticket. A folder arrives in the browser as one zip.
    #[arg(long, conflicts_with_all = ["to", "code"])]
    link: bool,
    /// With --link: the page asks for this password before it fetches anything, so the link
    /// alone opens nothing (the ticket is not affected), and the link is this machine's, never
    /// the relay's. Tell it by another route than the link.
    /// With --link and no --password, AGENTFERRY_LINK_PASSWORD is used (it keeps the password
    /// out of `ps`).
    #[arg(long, requires = "link")]
    password: Option<String>,
    /// How long the ticket stays valid: e.g. 90s, 30m, 24h, 7d.
    #[arg(long, default_value = "24h", value_parser = parse_duration)]
    expires_in: Duration,
    /// `messages`: print chat messages to post yourself instead of serving (one file, 4 MiB at
    /// most; without --to, anyone who reads the chat can read the file).
    #[arg(long, value_enum, conflicts_with = "code")]
    via: Option<messages::Via>,
    /// With --via messages: the longest message in characters.
    #[arg(long, value_name = "N", requires = "via", default_value_t = agentferry::chat::DEFAULT_MAX_CHARS)]
    max_message_chars: usize,
    #[command(flatten)]
    home: HomeArg,
    #[command(flatten)]
    bind: BindArg,
    #[command(flatten)]
    name: NameArg,
    #[command(flatten)]
    relay: RelayArg,
    #[command(flatten)]
    prefer: PreferArg,
    #[command(flatten)]
    json: JsonArg,
}

#[derive(Debug, clap::Args)]
struct ReceiveArgs {
    /// The ticket or the short code (`send --code`, redeemed on the relay both sides use), or
    /// `-` to read it from standard input. Safer than an argument: any local user can read a
    /// process's arguments for as long as it runs; standard input and AGENTFERRY_TICKET they
    /// cannot.
    #[arg(
        env = "AGENTFERRY_TICKET",
        hide_env_values = true,
        value_name = "TICKET|CODE",
        required_unless_present = "link"
    )]
    ticket: Option<String>,
    /// Instead of a ticket: print a link for a person with only a browser to send a file here
    /// through the relay (AGENTFERRY_RELAY; see docs/browser.md), valid for an hour, used once.
    /// Secret: whoever holds it can send this node one file.
    #[arg(long, conflicts_with_all = ["ticket", "verify"])]
    link: bool,
    /// With a code: show the two words derived from its key (the sender's `--verify` shows the
    /// same two unless someone in the middle guessed the code).
    #[arg(long)]
    verify: bool,
    /// Folder to save into (created if missing), or `-` to write the file to standard output
    /// (events and progress go to stderr; a folder ticket is refused; not resumable).
    #[arg(short, long, value_name = "DIR|-", default_value = ".")]
    output: PathBuf,
    /// Replace an existing file or folder of the same name.
    #[arg(long)]
    overwrite: bool,
    #[command(flatten)]
    home: HomeArg,
    #[command(flatten)]
    relay: RelayArg,
    #[command(flatten)]
    prefer: PreferArg,
    #[command(flatten)]
    wait: WaitArg,
    #[command(flatten)]
    json: JsonArg,
}

#[derive(Debug, clap::Args)]
struct StatusArgs {
    /// A transfer id, or a unique prefix of at least 6 hex digits; omit it to list all.
    id: Option<String>,
    #[command(flatten)]
    home: HomeArg,
    #[command(flatten)]
    json: JsonArg,
}

#[derive(Debug, clap::Args)]
struct ResumeArgs {
    /// The transfer id, or a unique prefix of at least 6 hex digits (see `status`).
    id: String,
    /// Which side to resume when this node both sends and receives the transfer.
    #[arg(long, value_enum)]
    role: Option<RoleArg>,
    #[command(flatten)]
    home: HomeArg,
    #[command(flatten)]
    relay: RelayArg,
    #[command(flatten)]
    prefer: PreferArg,
    #[command(flatten)]
    wait: WaitArg,
    #[command(flatten)]
    json: JsonArg,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum RoleArg {
    Send,
    Receive,
}

pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let (number, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = number.parse().map_err(|_| format!("`{s}` is not a duration like 90s, 30m, 24h or 7d"))?;
    let secs = match unit {
        "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86_400,
        _ => return Err(format!("`{s}` needs a unit: s, m, h or d")),
    };
    Ok(Duration::from_secs(secs))
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logs();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    let json = match &cli.command {
        Command::Send(a) => a.json.on,
        Command::Receive(a) => a.json.on,
        Command::Status(a) => a.json.on,
        Command::Resume(a) => a.json.on,
        Command::Listen(a) => a.json.on,
        Command::Export(a) => a.json.on,
        Command::Peers(a) => a.command.json(),
        Command::Grants(a) => a.command.json(),
        Command::Relay(a) => a.json.on,
        Command::Mcp(_) | Command::Schemas(_) | Command::Demo(_) | Command::Messages(_) => false,
    };
    let stdout_is_data = matches!(&cli.command, Command::Receive(a) if a.output.as_os_str() == "-");
    let mut reporter = Reporter::new(json, stdout_is_data);
    match runtime.block_on(run(cli, &mut reporter)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure { error, reported, transfer_id }) => {
            if !reported {
                reporter.event(&Event::error(transfer_id, &error));
            }
            ExitCode::from(error.exit_code())
        }
    }
}

/// What is logged when `AGENTFERRY_LOG` is unset.
const QUIET_BY_DEFAULT: &str = "warn,rtc=error,rtc_ice=error,rtc_dtls=error,rtc_sctp=error,rtc_srtp=error,webrtc=error";

/// Logs go to stderr, filtered by `AGENTFERRY_LOG` (default `warn`), coloured only when stderr is
/// a terminal and `NO_COLOR` is unset or empty (<https://no-color.org>).
fn init_logs() {
    use std::io::IsTerminal;
    use tracing_subscriber::{
        EnvFilter, Layer,
        filter::{FilterExt, Targets},
        layer::SubscriberExt,
        util::SubscriberInitExt,
    };
    let colour = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    // The WebRTC stack warns about routine events (an ICE check before its credentials are
    // set, a probe to an unreachable candidate); its failures reach the user as our own events.
    let wanted = EnvFilter::try_from_env("AGENTFERRY_LOG").unwrap_or_else(|_| QUIET_BY_DEFAULT.into());
    // Other crates log whole requests and results at debug and below (rmcp: tool arguments and
    // results, which carry tickets and grant URIs): never below info, whatever was asked.
    let cap = Targets::new().with_target("agentferry", tracing::Level::TRACE).with_default(tracing::Level::INFO);
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(colour)
        .with_filter(wanted.and(cap))
        .with_filter(tracing_subscriber::filter::filter_fn(|meta| !is_rpc_error_answer(meta)));
    tracing_subscriber::registry().with(fmt).init();
    // Records through `log` (the WebRTC stack) come from other crates, which `cap` holds at info:
    // say so to `log` itself, so its per-packet trace and debug calls return at the level check
    // instead of each being built and offered to the filters (5% of a WebRTC receiver's CPU).
    log::set_max_level(log::LevelFilter::Info);
}

/// rmcp logs every JSON-RPC error it answers with at WARN ("response error": fields `id`,
/// `error`). Hosts routinely probe methods this server does not offer (`resources/list`,
/// `prompts/list`), so these are not warnings.
fn is_rpc_error_answer(meta: &tracing::Metadata<'_>) -> bool {
    meta.target() == "rmcp::service"
        && *meta.level() == tracing::Level::WARN
        && meta.fields().field("id").is_some()
        && meta.fields().field("error").is_some()
}

/// A failed command, whether its error event was already printed, and the transfer it was
/// about (so the hint names the real id).
pub struct Failure {
    error: TransferError,
    reported: bool,
    transfer_id: Option<TransferId>,
}

impl From<TransferError> for Failure {
    fn from(error: TransferError) -> Self {
        Failure { error, reported: false, transfer_id: None }
    }
}

impl Command {
    /// The node options this command takes (none: it runs no node).
    fn node_args(&self) -> Option<NodeArgs> {
        Some(match self {
            Command::Send(a) => NodeArgs::of(&[&a.home, &a.bind, &a.name, &a.relay, &a.prefer]),
            Command::Receive(a) => NodeArgs::of(&[&a.home, &a.relay, &a.prefer, &a.wait]),
            Command::Status(a) => NodeArgs::of(&[&a.home]),
            Command::Resume(a) => NodeArgs::of(&[&a.home, &a.relay, &a.prefer, &a.wait]),
            Command::Mcp(a) => NodeArgs::of(&a.node.groups()),
            Command::Listen(a) => NodeArgs::of(&a.node.groups()),
            Command::Export(a) => NodeArgs::of(&[&a.home, &a.inbox, &a.relay]),
            Command::Peers(a) => NodeArgs::of(&[&a.home, &a.relay]),
            Command::Grants(a) => NodeArgs::of(&[&a.home]),
            Command::Messages(a) => NodeArgs::of(&[&a.home, &a.name]),
            Command::Schemas(_) | Command::Relay(_) | Command::Demo(_) => return None,
        })
    }
}

async fn run(cli: Cli, reporter: &mut Reporter) -> Result<(), Failure> {
    let Some(node_args) = cli.command.node_args() else {
        return match cli.command {
            Command::Demo(args) => Ok(demo::run(args).await?),
            Command::Schemas(args) => Ok(write_schemas(&args.dir)?),
            Command::Relay(args) => Ok(serve::relay(args, reporter).await?),
            _ => unreachable!("every other command runs a node"),
        };
    };
    let (home, config) = node_args.resolve()?;
    let mut first = None;
    // The spool of `send -`: kept until the transfer ends, then removed.
    let mut spool = None;
    let node = Node::new(home, config);
    let transfer = match cli.command {
        Command::Mcp(args) => return Ok(serve::mcp(node, args).await?),
        Command::Listen(args) => return Ok(serve::listen(node, args, reporter).await?),
        Command::Export(args) => return Ok(trust::export(&node, args, reporter).await?),
        Command::Peers(args) => return Ok(trust::peers(&node, args.command, reporter).await?),
        Command::Grants(args) => return Ok(trust::grants(&node, args.command, reporter)?),
        Command::Messages(args) => return Ok(messages::take(&node, args)?),
        Command::Send(args) if args.via.is_some() => {
            let max_chars = Some(args.max_message_chars);
            return Ok(messages::send(&node, args.file, args.expires_in, max_chars, args.to)?);
        }
        Command::Send(args) => {
            let path = if args.file.as_os_str() == "-" {
                let (spooled, path) = pipe::spool_stdin(args.file_name).await?;
                spool = Some(spooled);
                path
            } else {
                args.file
            };
            let options = SendOptions { path, expires_in: args.expires_in, prefer: node.config().prefer };
            match args.to {
                None if args.code => {
                    reporter.sending_by_code();
                    node.send_by_code(options, args.verify).await?.0
                }
                None => {
                    if args.link {
                        if options.prefer == agentferry::Prefer::Webrtc {
                            // The page speaks HTTP and WebSocket; a WebRTC-only send serves neither.
                            return Err(TransferError::InvalidArgument(
                                "--link needs the direct or relay path, which --prefer webrtc turns off".into(),
                            )
                            .into());
                        }
                        let from_env = || std::env::var("AGENTFERRY_LINK_PASSWORD").ok().filter(|p| !p.is_empty());
                        reporter.with_link(args.password.clone().or_else(from_env));
                    }
                    node.send(options).await?
                }
                Some(peer) => {
                    let (transfer, answer) = node.push(options, &peer).await?;
                    let (transfer_id, state, reason) = (transfer.transfer_id, answer.state, answer.reason);
                    first = Some(Event::Offered { transfer_id, peer, state, reason });
                    transfer
                }
            }
        }
        Command::Receive(args) if args.link => {
            if args.output.as_os_str() == "-" {
                return Err(TransferError::InvalidArgument(
                    "--link saves into a folder, not to standard output".into(),
                )
                .into());
            }
            let upload = node.upload_link(agentferry::UPLOAD_LINK_LIFETIME).await?;
            reporter.event(&Event::Link { transfer_id: upload.transfer_id(), link: upload.link() });
            let options =
                ReceiveOptions { output_dir: args.output, overwrite: args.overwrite, peer: None, prefer: None };
            upload.receive(&node, options).await?
        }
        Command::Receive(args) => {
            let given = secret_arg(args.ticket.as_deref().unwrap_or_default())?;
            let by_code = agentferry::code::looks_like_code(&given);
            if args.output.as_os_str() == "-" {
                let ticket: Ticket = if by_code {
                    node.redeem_code(&given, agentferry::code::Purpose::Transfer).await?.0.parse()?
                } else {
                    given.parse()?
                };
                return pipe::receive_to_stdout(&node, ticket, reporter).await;
            }
            let options =
                ReceiveOptions { output_dir: args.output, overwrite: args.overwrite, peer: None, prefer: None };
            if by_code {
                let (transfer, redeemed) = node.receive_by_code(&given, options).await?;
                let verifier = args.verify.then_some(redeemed.verifier);
                let transfer_id = Some(transfer.transfer_id);
                first = Some(Event::CodeRedeemed { transfer_id, purpose: "transfer", verifier });
                transfer
            } else {
                node.receive(given.parse::<Ticket>()?, options).await?
            }
        }
        Command::Resume(args) => {
            let role = args.role.map(|r| match r {
                RoleArg::Send => Role::Send,
                RoleArg::Receive => Role::Receive,
            });
            let id = node.resolve_id(&args.id)?;
            node.resume(id, role).await.map_err(|error| Failure { error, reported: false, transfer_id: Some(id) })?
        }
        Command::Status(args) => {
            let id = args.id.as_deref().map(|id| node.resolve_id(id)).transpose()?;
            let statuses = node.status(id)?;
            if !args.json.on {
                output::status_header(statuses.is_empty());
            }
            for status in statuses {
                reporter.event(&Event::Status { status });
            }
            return Ok(());
        }
        Command::Demo(_) | Command::Schemas(_) | Command::Relay(_) => unreachable!("handled above"),
    };
    let result = follow(transfer, first, reporter).await;
    drop(spool);
    result
}

fn write_schemas(dir: &std::path::Path) -> Result<(), TransferError> {
    std::fs::create_dir_all(dir).map_err(|e| TransferError::io(dir, e))?;
    for (name, content) in agentferry::schemas::generate() {
        let path = dir.join(&name);
        std::fs::write(&path, content).map_err(|e| TransferError::io(&path, e))?;
    }
    Ok(())
}

/// A secret given on the command line, or `-`: read it from standard input (the first line).
pub fn secret_arg(value: &str) -> Result<String, TransferError> {
    if value != "-" {
        return Ok(value.to_owned());
    }
    use std::io::Read;
    let mut text = String::new();
    std::io::stdin()
        .take(64 * 1024)
        .read_to_string(&mut text)
        .map_err(|e| TransferError::InvalidArgument(format!("cannot read standard input: {e}")))?;
    let line = text.lines().map(str::trim).find(|l| !l.is_empty()).unwrap_or_default();
    if line.is_empty() {
        return Err(TransferError::InvalidArgument("`-` was given but standard input is empty".into()));
    }
    Ok(line.to_owned())
}

/// Print `first` (if any), then a transfer's events until it ends; Ctrl-C stops it (the journal
/// keeps it resumable). Ctrl-C is caught from before `first` is printed, so that someone who
/// reads it and interrupts at once stops the transfer instead of killing the process.
pub async fn follow(mut transfer: Transfer, first: Option<Event>, reporter: &mut Reporter) -> Result<(), Failure> {
    use futures_util::FutureExt;
    let cancelled = |transfer: &Transfer| {
        transfer.cancel();
        Err(Failure { error: TransferError::Cancelled, reported: false, transfer_id: Some(transfer.transfer_id) })
    };
    let mut interrupted = std::pin::pin!(tokio::signal::ctrl_c());
    // The handler is installed on the first poll, before anything is printed.
    if (&mut interrupted).now_or_never().is_some() {
        return cancelled(&transfer);
    }
    if let Some(first) = &first {
        reporter.event(first);
    }
    let mut reported = false;
    loop {
        tokio::select! {
            event = transfer.events.recv() => match event {
                Some(event) => {
                    reported |= matches!(event, Event::Error { .. });
                    reporter.event(&event);
                }
                None => break,
            },
            _ = &mut interrupted => return cancelled(&transfer),
        }
    }
    let transfer_id = Some(transfer.transfer_id);
    match transfer.outcome().await {
        Ok(_) => Ok(()),
        Err(error) => Err(Failure { error, reported, transfer_id }),
    }
}
