//! An `agentferry` MCP server in the test process, for tests that drive it with rmcp's client:
//! one node per folder (`files/` its root, `downloads/` its download folder, `home/` its home),
//! served over an in-memory pipe.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use agentferry::{
    Node, NodeConfig,
    home::Home,
    mcp::{FerryServer, Roots},
};
use rmcp::ServiceExt;
use tokio::io::DuplexStream;

/// Start a server for the node `base/name`; returns the node's folder, the node and the client's
/// end of the pipe.
pub async fn start(base: &Path, name: &str, peer_timeout: Option<Duration>) -> (PathBuf, Node, DuplexStream) {
    start_with(base, name, peer_timeout, None).await
}

/// [`start`], with `relay` (a `ws://` URL) as the node's channel.
pub async fn start_with(
    base: &Path,
    name: &str,
    peer_timeout: Option<Duration>,
    relay: Option<&str>,
) -> (PathBuf, Node, DuplexStream) {
    let dir = base.join(name);
    std::fs::create_dir_all(dir.join("files")).unwrap();
    let defaults = NodeConfig::default();
    let config = NodeConfig {
        name: name.into(),
        bind: "127.0.0.1:0".parse().unwrap(),
        inbox_bind: "127.0.0.1:0".parse().unwrap(),
        peer_timeout: peer_timeout.unwrap_or(defaults.peer_timeout),
        channel: relay.map(|r| r.parse().unwrap()),
        ..defaults
    };
    let node = Node::new(Home::open(dir.join("home")).unwrap(), config);
    let roots = Roots::new(&[dir.join("files")], &dir.join("downloads")).unwrap();
    let server = FerryServer::start(node.clone(), roots).await;
    let (server_io, client_io) = tokio::io::duplex(1 << 16);
    tokio::spawn(async move { server.serve(server_io).await.unwrap().waiting().await });
    (dir, node, client_io)
}

/// A file of `size` patterned bytes in the node's root.
pub fn file(dir: &Path, name: &str, size: usize) -> PathBuf {
    let path = dir.join("files").join(name);
    let data: Vec<u8> = (0..size).map(|i| (i * 31 % 251) as u8).collect();
    std::fs::write(&path, data).unwrap();
    path
}
