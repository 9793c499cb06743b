//! Long-running fronts: `mcp` (the MCP server on stdio) and `listen` (an always-on inbox).

use std::{path::PathBuf, sync::Arc};

use agentferry::{
    Event, Node, TransferError,
    engine::{Inbox, Registry, advertised_addrs},
    mcp::{FerryServer, Roots, default_download_dir},
    transport::http::HttpServer,
};
use rmcp::ServiceExt;

use super::{args::AllNodeArgs, output::Reporter};

#[derive(Debug, clap::Args)]
pub struct McpArgs {
    /// A folder send_file may read from (repeatable). Default: the working directory.
    #[arg(long = "root", value_name = "DIR")]
    roots: Vec<PathBuf>,
    /// Where received files go. Default: the platform download folder + /agentferry.
    #[arg(long, value_name = "DIR", env = "AGENTFERRY_DOWNLOAD_DIR")]
    download_dir: Option<PathBuf>,
    #[command(flatten)]
    pub node: AllNodeArgs,
}

#[derive(Debug, clap::Args)]
pub struct ListenArgs {
    /// Where pushed files go. Default: the platform download folder + /agentferry.
    #[arg(long, value_name = "DIR", env = "AGENTFERRY_DOWNLOAD_DIR")]
    download_dir: Option<PathBuf>,
    #[command(flatten)]
    pub node: AllNodeArgs,
    /// Print JSON Lines events on stdout, one object a line (schemas/events.schema.json).
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct RelayArgs {
    /// Address to listen on.
    #[arg(long, default_value = "0.0.0.0:47020")]
    listen: std::net::SocketAddr,
    /// Print JSON Lines events on stdout, one object a line (schemas/events.schema.json).
    #[arg(long)]
    pub json: bool,
}

/// Run a relay until Ctrl-C, then close every connection gracefully.
pub async fn relay(args: RelayArgs, reporter: &mut Reporter) -> Result<(), TransferError> {
    let server = agentferry::relay::server::RelayServer::bind(args.listen, Default::default()).await?;
    reporter.event(&Event::Relay { addr: server.local_addr(), url: server.url() });
    tokio::signal::ctrl_c().await.map_err(|e| TransferError::io("signal", e))?;
    server.shutdown().await;
    Ok(())
}

pub async fn mcp(node: Node, args: McpArgs) -> Result<(), TransferError> {
    let roots = if args.roots.is_empty() {
        vec![std::env::current_dir().map_err(|e| TransferError::io(".", e))?]
    } else {
        args.roots
    };
    let download_dir = args.download_dir.unwrap_or_else(|| default_download_dir(node.home().root()));
    let server = FerryServer::start(node, Roots::new(&roots, &download_dir)?).await;
    let running = server
        .serve(rmcp::transport::stdio())
        .await
        .map_err(|e| TransferError::Protocol(format!("MCP initialisation failed: {e}")))?;
    running.waiting().await.map_err(|e| TransferError::Protocol(format!("MCP session ended: {e}")))?;
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
