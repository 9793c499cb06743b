//! Long-running fronts: `mcp` (the MCP server on stdio, or over HTTP with `--http`) and `listen`
//! (an always-on inbox).

use std::{path::PathBuf, sync::Arc};

use agentferry::{
    Event, Node, TransferError,
    engine::{Inbox, Registry, advertised_addrs},
    mcp::{
        FerryServer, InvitePolicy, Roots, default_download_dir,
        http::{HttpOptions, Token, TokenSource},
    },
    transport::http::HttpServer,
};
use rmcp::ServiceExt;

use super::{
    args::{AllNodeArgs, JsonArg},
    output::Reporter,
};

#[derive(Debug, clap::Args)]
pub struct McpArgs {
    /// A folder send_file may read from (repeatable). Default: the roots the MCP client
    /// declares, else the working directory. With --http, at least one is required.
    #[arg(long = "root", value_name = "DIR")]
    roots: Vec<PathBuf>,
    /// Serve MCP over Streamable HTTP on ADDR (e.g. 127.0.0.1:8765; port 0 picks one) instead of
    /// stdio; the endpoint is http://ADDR/mcp and every request needs the bearer token (in
    /// <home>/mcp-token, or AGENTFERRY_MCP_TOKEN).
    #[arg(long, value_name = "ADDR")]
    http: Option<std::net::SocketAddr>,
    /// With --http: accept an address other machines reach (e.g. 0.0.0.0:8765). The token still
    /// guards every request, but it travels in clear unless TLS is put in front.
    #[arg(long, requires = "http")]
    allow_remote: bool,
    /// Where received files go. Default: the platform download folder + /agentferry.
    #[arg(long, value_name = "DIR", env = "AGENTFERRY_DOWNLOAD_DIR")]
    download_dir: Option<PathBuf>,
    /// Bytes auto-accepted under one invite made by create_invite (e.g. 500M, 2G); later pushes
    /// under it wait as pending offers.
    #[arg(long, value_name = "SIZE", default_value = "1G", value_parser = parse_size)]
    invite_quota: u64,
    /// Usable grants (invites and exports) this node may have at once; create_invite refuses more.
    #[arg(long, value_name = "N", default_value_t = 5)]
    max_invites: usize,
    /// The longest life create_invite may give an invite (default 1 hour unless the agent asks).
    #[arg(long, value_name = "DURATION", default_value = "24h", value_parser = super::parse_duration)]
    invite_max_ttl: std::time::Duration,
    #[command(flatten)]
    pub node: AllNodeArgs,
}

/// `500M`, `2G`, `1048576`: bytes, with an optional binary suffix K, M, G or T.
fn parse_size(s: &str) -> Result<u64, String> {
    let (number, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = number.parse().map_err(|_| format!("`{s}` is not a size like 500M or 2G"))?;
    let shift = match unit.trim_end_matches(['B', 'i']) {
        "" => 0,
        "K" | "k" => 10,
        "M" | "m" => 20,
        "G" | "g" => 30,
        "T" | "t" => 40,
        _ => return Err(format!("`{s}`: the unit must be K, M, G or T")),
    };
    n.checked_mul(1 << shift).ok_or_else(|| format!("`{s}` is too large"))
}

#[derive(Debug, clap::Args)]
pub struct ListenArgs {
    /// Where pushed files go. Default: the platform download folder + /agentferry.
    #[arg(long, value_name = "DIR", env = "AGENTFERRY_DOWNLOAD_DIR")]
    download_dir: Option<PathBuf>,
    #[command(flatten)]
    pub node: AllNodeArgs,
    #[command(flatten)]
    pub json: JsonArg,
}

#[derive(Debug, clap::Args)]
pub struct RelayArgs {
    /// Address to listen on.
    #[arg(long, default_value = "0.0.0.0:47020")]
    listen: std::net::SocketAddr,
    /// Drop a client that sends nothing, not even the pong to the relay's pings, for this many
    /// seconds.
    #[arg(long, value_name = "SECS", env = "AGENTFERRY_RELAY_IDLE_TIMEOUT", default_value_t = 60,
          value_parser = clap::value_parser!(u64).range(3..))]
    idle_timeout: u64,
    /// How long a short code's nameplate waits for its claim (and rests before its number is
    /// handed out again).
    #[arg(long, value_name = "SECS", env = "AGENTFERRY_RELAY_CODE_TTL", default_value_t = 600,
          value_parser = clap::value_parser!(u64).range(1..))]
    code_ttl: u64,
    /// Nameplates of short codes open at once (each source may hold a quarter).
    #[arg(long, value_name = "N", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(4..))]
    max_codes: u64,
    /// Code claims (and, apart, code allocations) each source may make per minute, after a
    /// burst of up to 10.
    #[arg(long, value_name = "N", default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..))]
    code_claims_per_minute: u32,
    #[command(flatten)]
    pub json: JsonArg,
}

/// Run a relay until Ctrl-C, then close every connection gracefully.
pub async fn relay(args: RelayArgs, reporter: &mut Reporter) -> Result<(), TransferError> {
    let nameplates = agentferry::relay::nameplates::NameplateLimits {
        ttl: std::time::Duration::from_secs(args.code_ttl),
        max_open: args.max_codes as usize,
        per_minute: args.code_claims_per_minute,
        burst: args.code_claims_per_minute.min(10),
    };
    let config = agentferry::relay::server::RelayConfig {
        idle_timeout: std::time::Duration::from_secs(args.idle_timeout),
        nameplates,
        ..Default::default()
    };
    let server = agentferry::relay::server::RelayServer::bind(args.listen, config).await?;
    reporter.event(&Event::Relay { addr: server.local_addr(), url: server.url() });
    tokio::signal::ctrl_c().await.map_err(|e| TransferError::io("signal", e))?;
    server.shutdown().await;
    Ok(())
}

pub async fn mcp(node: Node, args: McpArgs) -> Result<(), TransferError> {
    let download_dir = args.download_dir.unwrap_or_else(|| default_download_dir(node.home().root()));
    if let Some(addr) = args.http {
        agentferry::mcp::http::check_addr(addr, args.allow_remote)?; // before a token is made
        if args.roots.is_empty() {
            return Err(TransferError::InvalidArgument(
                "--http needs at least one --root: HTTP clients declare no roots, and a server on a port should not \
                 default to the folder it happened to start in"
                    .into(),
            ));
        }
    }
    let roots = if args.roots.is_empty() {
        let cwd = std::env::current_dir().map_err(|e| TransferError::io(".", e))?;
        Roots::unless_client_declares(&[cwd], &download_dir)?
    } else {
        Roots::new(&args.roots, &download_dir)?
    };
    let default = InvitePolicy::default();
    let invites = InvitePolicy {
        quota_bytes: args.invite_quota,
        max_open: args.max_invites,
        max_ttl_hours: args.invite_max_ttl.as_secs_f64() / 3600.0,
        default_ttl_hours: default.default_ttl_hours.min(args.invite_max_ttl.as_secs_f64() / 3600.0),
    };
    if let Some(addr) = args.http {
        let (token, source) = Token::for_home(node.home())?;
        if let TokenSource::Created(path) = &source {
            eprintln!(
                "agentferry: the bearer token for MCP over HTTP (shown once; kept in {}): {}",
                path.display(),
                token.reveal()
            );
        }
        let server = FerryServer::start_with(node, roots, invites).await;
        return agentferry::mcp::http::serve(server, HttpOptions { addr, allow_remote: args.allow_remote, token })
            .await;
    }
    let server = FerryServer::start_with(node, roots, invites).await;
    let (transport, writer) = agentferry::mcp::stdio::transport(tokio::io::stdin(), tokio::io::stdout());
    let running = match server.serve(transport).await {
        Ok(running) => running,
        // The client left before starting a session: a probe (`server/discover`, then EOF) or
        // a host that changed its mind. Its answers still reach stdout; nothing went wrong.
        Err(rmcp::service::ServerInitializeError::ConnectionClosed(_)) => {
            let _ = writer.await;
            return Ok(());
        }
        Err(e) => return Err(TransferError::Protocol(format!("MCP initialisation failed: {e}"))),
    };
    running.waiting().await.map_err(|e| TransferError::Protocol(format!("MCP session ended: {e}")))?;
    let _ = writer.await; // the last answers reach stdout
    Ok(())
}

pub async fn listen(node: Node, args: ListenArgs, reporter: &mut Reporter) -> Result<(), TransferError> {
    let download_dir = args.download_dir.unwrap_or_else(|| default_download_dir(node.home().root()));
    std::fs::create_dir_all(&download_dir).map_err(|e| TransferError::io(&download_dir, e))?;
    let server = Arc::new(HttpServer::bind(node.inbox_bind()?).await?);
    let node = node.with_shared_server(Arc::clone(&server));
    let inbox = Inbox::new(node.clone(), download_dir.clone(), Registry::new());
    server.set_inbox(inbox.handler());
    server.start();
    inbox.listen_on_channel(&node).await;
    reporter.event(&Event::Inbox { addrs: advertised_addrs(server.local_addr()), download_dir });
    tokio::signal::ctrl_c().await.map_err(|e| TransferError::io("signal", e))?;
    Ok(())
}
