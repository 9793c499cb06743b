//! The `agentferry` binary: parse, run, exit code. Everything else lives in the library.

mod cli;

fn main() -> std::process::ExitCode {
    // Before anything opens a file or a socket: the listeners size their caps from this limit,
    // and the default soft limit (often 1024) is far below what the hard limit allows.
    agentferry::accept::raise_fd_limit();
    cli::main()
}

/// Logs go to stderr, filtered by `AGENTFERRY_LOG` (default `warn`). Other crates are capped at
/// `info` whatever the filter says: rmcp logs whole requests and results at `debug`/`trace`
/// (tickets, grant URIs), hyper and tungstenite log headers and payloads there. Secrets must
/// never reach a log line, so only our own code, which logs no secret at any level, goes deeper.
fn init_logging() {
    use tracing_subscriber::{
        EnvFilter, Layer, filter::FilterExt, filter::Targets, layer::SubscriberExt, util::SubscriberInitExt,
    };
    let wanted = EnvFilter::try_from_env("AGENTFERRY_LOG").unwrap_or_else(|_| "warn".into());
    let cap = Targets::new().with_target("agentferry", tracing::Level::TRACE).with_default(tracing::Level::INFO);
    let layer = tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_filter(wanted.and(cap));
    tracing_subscriber::registry().with(layer).init();
}
