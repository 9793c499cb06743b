//! The node's options, one small group each, so that every command shows only those that apply
//! to it; and how the groups a command was given make the node's configuration.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use agentferry::{
    NodeConfig, TransferError,
    channel::{ChannelHint, nats::NatsHint},
    core::Prefer,
    home::Home,
    transport::webrtc::{IceConfig, IceServer},
};

/// One option group: it sets its part of the node's configuration.
pub trait NodeOption {
    fn apply(&self, to: &mut NodeArgs);
}

/// The node options one command was given; the rest stay at their defaults.
#[derive(Debug, Default)]
pub struct NodeArgs {
    home: Option<PathBuf>,
    bind: Option<SocketAddr>,
    inbox_bind: Option<SocketAddr>,
    name: Option<String>,
    relay: Option<String>,
    prefer: Option<Prefer>,
    ice: Vec<String>,
    ice_policy: Option<IcePolicy>,
    peer_timeout: Option<u64>,
}

impl NodeArgs {
    pub fn of(groups: &[&dyn NodeOption]) -> Self {
        let mut args = NodeArgs::default();
        for group in groups {
            group.apply(&mut args);
        }
        args
    }

    /// Open the node home and make the configuration (the relay defaults to the home's
    /// `config.json`).
    pub fn resolve(self) -> Result<(Home, NodeConfig), TransferError> {
        let home = Home::resolve(self.home)?;
        let defaults = NodeConfig::default();
        if let Some(relay) = &self.relay {
            warn_of_password_in_argv(relay);
        }
        let relay = self.relay.or_else(|| home.config().relay);
        let channel: Option<ChannelHint> = relay.map(|r| r.parse()).transpose()?;
        if let Some(ChannelHint::Nats(hint)) = &channel {
            hint.configure(); // only these servers get this node's NATS credentials
        }
        let ice = ice_config(&self.ice, self.ice_policy.unwrap_or(IcePolicy::All), &home)?;
        let config = NodeConfig {
            name: self.name.unwrap_or(defaults.name),
            bind: self.bind.unwrap_or(defaults.bind),
            inbox_bind: self.inbox_bind.unwrap_or(defaults.inbox_bind),
            peer_timeout: self.peer_timeout.map_or(defaults.peer_timeout, Duration::from_secs),
            channel,
            prefer: self.prefer.unwrap_or(defaults.prefer),
            ice,
            ..defaults
        };
        Ok((home, config))
    }
}

/// A channel URL with a password given as an argument is visible to every local user (`ps`):
/// say so, and where it belongs instead.
fn warn_of_password_in_argv(relay: &str) {
    let from_env = std::env::var("AGENTFERRY_RELAY").is_ok_and(|v| v == relay);
    if let (false, Some(Ok(hint))) = (from_env, NatsHint::parse(relay))
        && hint.has_credentials()
    {
        eprintln!(
            "warning: --relay carries a password that other users of this machine can see; \
             set AGENTFERRY_NATS_USER/AGENTFERRY_NATS_PASSWORD or AGENTFERRY_NATS_TOKEN instead"
        );
    }
}

#[derive(Debug, clap::Args)]
pub struct HomeArg {
    /// Node home (journal, peers, grants, config.json). Default: the platform data folder.
    #[arg(long, global = true, env = "AGENTFERRY_HOME", value_name = "DIR")]
    home: Option<PathBuf>,
}

impl NodeOption for HomeArg {
    fn apply(&self, to: &mut NodeArgs) {
        to.home.clone_from(&self.home);
    }
}

#[derive(Debug, clap::Args)]
pub struct BindArg {
    /// Address to serve files on; port 0 picks a free one (a resumed send reuses its port).
    #[arg(long, env = "AGENTFERRY_BIND", value_name = "ADDR", default_value = "[::]:0")]
    bind: SocketAddr,
}

impl NodeOption for BindArg {
    fn apply(&self, to: &mut NodeArgs) {
        to.bind = Some(self.bind);
    }
}

#[derive(Debug, clap::Args)]
pub struct InboxArg {
    /// Address of the inbox for pushes from trusted peers; port 0: one chosen once per home
    /// (grants name it).
    #[arg(long, env = "AGENTFERRY_INBOX_BIND", value_name = "ADDR", default_value = "[::]:0")]
    inbox_bind: SocketAddr,
}

impl NodeOption for InboxArg {
    fn apply(&self, to: &mut NodeArgs) {
        to.inbox_bind = Some(self.inbox_bind);
    }
}

#[derive(Debug, clap::Args)]
pub struct NameArg {
    /// This node's name, as peers see it in pushes. Default: the host name.
    #[arg(long, env = "AGENTFERRY_NAME")]
    name: Option<String>,
}

impl NodeOption for NameArg {
    fn apply(&self, to: &mut NodeArgs) {
        to.name.clone_from(&self.name);
    }
}

#[derive(Debug, clap::Args)]
pub struct RelayArg {
    /// A relay (ws://HOST:PORT), NATS servers (nats://HOST:PORT[,…], tls://…) or shared folder
    /// (folder:/PATH) to serve and fetch through when direct connections fail. Default: `relay` in <home>/config.json, if set.
    #[arg(long, env = "AGENTFERRY_RELAY", value_name = "CHANNEL")]
    relay: Option<String>,
}

impl NodeOption for RelayArg {
    fn apply(&self, to: &mut NodeArgs) {
        to.relay.clone_from(&self.relay);
    }
}

/// Path choice: the preferred path and the STUN/TURN servers WebRTC uses.
#[derive(Debug, clap::Args)]
pub struct PreferArg {
    /// Which path to use: auto (direct, then WebRTC, then relay), http, webrtc, or relay.
    #[arg(long, env = "AGENTFERRY_PREFER", value_parser = prefer_names(), default_value = Prefer::Auto.as_str())]
    prefer: Prefer,
    /// A STUN or TURN server for WebRTC: stun:HOST:PORT or turn:USER:PASS@HOST:PORT; repeat it,
    /// or give a comma-separated list in AGENTFERRY_ICE. Default: `ice` in <home>/config.json,
    /// and the relay's own STUN responder. Put TURN passwords in the variable or the config
    /// file: other local users can read a command line.
    #[arg(long, env = "AGENTFERRY_ICE", hide_env_values = true, value_delimiter = ',', value_name = "URL")]
    ice: Vec<String>,
    /// Which WebRTC candidates to use: all, or relay (through TURN only; neither side learns the
    /// other's address).
    #[arg(long, env = "AGENTFERRY_ICE_POLICY", value_enum, default_value_t = IcePolicy::All)]
    ice_policy: IcePolicy,
}

/// `--prefer` takes the names [`Prefer`] has everywhere (the core does not know clap).
fn prefer_names() -> impl clap::builder::TypedValueParser<Value = Prefer> {
    use clap::builder::TypedValueParser as _;
    clap::builder::PossibleValuesParser::new(Prefer::ALL.map(Prefer::as_str))
        .map(|name| Prefer::from_name(&name).expect("clap takes only the possible values"))
}

impl NodeOption for PreferArg {
    fn apply(&self, to: &mut NodeArgs) {
        to.prefer = Some(self.prefer);
        to.ice.clone_from(&self.ice);
        to.ice_policy = Some(self.ice_policy);
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum IcePolicy {
    All,
    Relay,
}

/// STUN/TURN servers from `--ice`/`AGENTFERRY_ICE`, else from the home's config; warns when a
/// TURN password sits on the command line.
fn ice_config(given: &[String], policy: IcePolicy, home: &Home) -> Result<IceConfig, TransferError> {
    let on_command_line = std::env::args().any(|a| a == "--ice" || a.starts_with("--ice="));
    let urls = if given.is_empty() { home.config().ice.map(|l| l.urls()).unwrap_or_default() } else { given.to_vec() };
    let servers = urls.iter().map(|u| u.parse::<IceServer>()).collect::<Result<Vec<_>, _>>()?;
    if on_command_line && servers.iter().any(IceServer::is_turn) {
        eprintln!(
            "warning: a TURN password on the command line is visible to other local users (/proc); \
             set AGENTFERRY_ICE or `ice` in <home>/config.json instead"
        );
    }
    Ok(IceConfig { servers, relay_only: policy == IcePolicy::Relay, refuse_turn: false })
}

/// `--json`, on every command that reports: the same events as JSON Lines instead of a bar and
/// sentences.
#[derive(Debug, Clone, Copy, clap::Args)]
pub struct JsonArg {
    /// Print JSON Lines events on stdout, one object a line (schemas/events.schema.json).
    #[arg(long = "json")]
    pub on: bool,
}

#[derive(Debug, clap::Args)]
pub struct WaitArg {
    /// Seconds to wait for a silent sender before giving up (the transfer stays resumable).
    #[arg(long, env = "AGENTFERRY_PEER_TIMEOUT", value_name = "SECS", default_value_t = 30)]
    peer_timeout: u64,
}

impl NodeOption for WaitArg {
    fn apply(&self, to: &mut NodeArgs) {
        to.peer_timeout = Some(self.peer_timeout);
    }
}

/// Every node option: for the long-running fronts (`mcp`, `listen`), which send, receive and
/// take pushes.
#[derive(Debug, clap::Args)]
pub struct AllNodeArgs {
    #[command(flatten)]
    home: HomeArg,
    #[command(flatten)]
    bind: BindArg,
    #[command(flatten)]
    inbox: InboxArg,
    #[command(flatten)]
    name: NameArg,
    #[command(flatten)]
    relay: RelayArg,
    #[command(flatten)]
    prefer: PreferArg,
    #[command(flatten)]
    wait: WaitArg,
}

impl AllNodeArgs {
    pub fn groups(&self) -> [&dyn NodeOption; 7] {
        [&self.home, &self.bind, &self.inbox, &self.name, &self.relay, &self.prefer, &self.wait]
    }
}
