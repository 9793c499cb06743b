//! Trust management: `export` (mint a grant), `peers` (whom we push to), `grants` (who pushes here).

use std::time::Duration;

use agentferry::{
    Event, Node, TransferError,
    code::{Purpose, rendezvous::Offer},
    engine::advertised_addrs,
    peers::{GrantInfo, GrantUri, PeerInfo},
};
use clap::Subcommand;
use data_encoding::HEXLOWER;

use super::{
    args::{HomeArg, InboxArg, JsonArg, RelayArg},
    output::Reporter,
    parse_duration,
};

#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    /// The name the other side will know this node by. Default: this node's name (as
    /// AGENTFERRY_NAME or the host name give it).
    #[arg(long, env = "AGENTFERRY_NAME")]
    name: Option<String>,
    /// How long the grant is valid: e.g. 12h, 7d.
    #[arg(long, default_value = "7d", value_parser = parse_duration)]
    ttl: Duration,
    /// Print a short code to say or type (7-guitar-nebula-acorn) instead of the URI, and wait
    /// until the other machine redeems it with `agentferry peers add CODE` (same relay,
    /// --relay). It works once, for 10 minutes; unredeemed, the grant is revoked.
    #[arg(long)]
    code: bool,
    /// With --code: show two words derived from the code's key once it is redeemed (`peers add
    /// --verify` shows the same two unless someone in the middle guessed the code).
    #[arg(long, requires = "code")]
    verify: bool,
    #[command(flatten)]
    pub json: JsonArg,
    #[command(flatten)]
    pub home: HomeArg,
    #[command(flatten)]
    pub inbox: InboxArg,
    #[command(flatten)]
    pub relay: RelayArg,
}

#[derive(Debug, clap::Args)]
pub struct PeersArgs {
    #[command(flatten)]
    pub home: HomeArg,
    /// The relay a code is redeemed on (`peers add CODE`).
    #[command(flatten)]
    pub relay: RelayArg,
    #[command(subcommand)]
    pub command: PeersCommand,
}

#[derive(Debug, clap::Args)]
pub struct GrantsArgs {
    #[command(flatten)]
    pub home: HomeArg,
    #[command(subcommand)]
    pub command: GrantsCommand,
}

#[derive(Debug, Subcommand)]
pub enum PeersCommand {
    /// List the peers this node can push to.
    List {
        #[command(flatten)]
        json: JsonArg,
    },
    /// Trust a peer from the grant URI it exported, or from the code `export --code` showed.
    Add {
        /// The URI or the code, or `-` to read it from standard input (safer: any local user
        /// can read a process's arguments; standard input and AGENTFERRY_PEER_URI they cannot).
        /// A code is redeemed on the relay (--relay), once.
        #[arg(env = "AGENTFERRY_PEER_URI", hide_env_values = true, value_name = "URI|CODE")]
        uri: String,
        /// With a code: show the two words derived from its key (`export --code --verify`
        /// shows the same two unless someone in the middle guessed the code).
        #[arg(long)]
        verify: bool,
        /// Store it under this name instead of the one it exported.
        #[arg(long)]
        name: Option<String>,
        /// Trust it for at most this long (never longer than its grant).
        #[arg(long, value_parser = parse_duration)]
        ttl: Option<Duration>,
        #[command(flatten)]
        json: JsonArg,
    },
    /// Forget a peer.
    Remove {
        /// The peer's name (see `peers list`).
        name: String,
        #[command(flatten)]
        json: JsonArg,
    },
    /// Trust a peer for longer (its own node still refuses an expired grant).
    Extend {
        /// The peer's name (see `peers list`).
        name: String,
        /// The new trust period from now: e.g. 12h, 7d.
        #[arg(long, value_parser = parse_duration)]
        ttl: Duration,
        #[command(flatten)]
        json: JsonArg,
    },
}

impl PeersCommand {
    pub fn json(&self) -> bool {
        match self {
            PeersCommand::List { json } | PeersCommand::Remove { json, .. } => json.on,
            PeersCommand::Add { json, .. } | PeersCommand::Extend { json, .. } => json.on,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum GrantsCommand {
    /// List the grants this node exported.
    List {
        #[command(flatten)]
        json: JsonArg,
    },
    /// Revoke a grant: pushes under it are no longer auto-accepted.
    Revoke {
        /// The grant id (see `grants list`).
        id: String,
        #[command(flatten)]
        json: JsonArg,
    },
}

impl GrantsCommand {
    pub fn json(&self) -> bool {
        match self {
            GrantsCommand::List { json } | GrantsCommand::Revoke { json, .. } => json.on,
        }
    }
}

pub async fn export(node: &Node, args: ExportArgs, reporter: &mut Reporter) -> Result<(), TransferError> {
    let name = args.name.unwrap_or_else(|| node.config().name.clone());
    let inbox = advertised_addrs(node.inbox_bind()?);
    // The code first: without a relay for it, no grant is minted.
    let offer = match args.code {
        true => Some(node.offer_code(Purpose::Pair).await?),
        false => None,
    };
    let uri = node.trust().export(&name, args.ttl.as_secs(), inbox, node.channel_inbox()?)?;
    if let Some(offer) = offer {
        return export_by_code(node, offer, &uri, args.verify, reporter).await;
    }
    reporter.event(&Event::Exported {
        uri: uri.to_string(),
        grant_id: HEXLOWER.encode(&uri.grant_id),
        name,
        expires_at: uri.expires_at,
    });
    Ok(())
}

/// Show the code, wait for its redemption and hand the URI over; an unredeemed grant (a wrong
/// code, an expired one, Ctrl-C) is revoked, since no one has it.
async fn export_by_code(
    node: &Node,
    offer: Offer,
    uri: &GrantUri,
    verify: bool,
    reporter: &mut Reporter,
) -> Result<(), TransferError> {
    let grant_id = HEXLOWER.encode(&uri.grant_id);
    reporter.event(&Event::Code {
        transfer_id: None,
        code: offer.code().to_string(),
        purpose: Purpose::Pair.as_str(),
        relay: offer.relay().to_owned(),
        expires_at: offer.expires_at(),
    });
    let text = uri.to_string();
    let outcome = tokio::select! {
        outcome = offer.hand_over(text.as_bytes()) => outcome,
        _ = tokio::signal::ctrl_c() => Err(TransferError::Cancelled),
    };
    match outcome {
        Ok(redeemed) => {
            let verifier = verify.then_some(redeemed.verifier);
            reporter.event(&Event::CodeRedeemed { transfer_id: None, purpose: Purpose::Pair.as_str(), verifier });
            if let Some(grant) = node.trust().grant(&grant_id)? {
                reporter.event(&Event::Grant { grant: GrantInfo::from(&grant) });
            }
            Ok(())
        }
        Err(e) => {
            if let Err(revoke) = node.trust().revoke(&grant_id) {
                tracing::warn!("cannot revoke the unredeemed grant {grant_id}: {revoke}");
            }
            Err(e)
        }
    }
}

pub async fn peers(node: &Node, command: PeersCommand, reporter: &mut Reporter) -> Result<(), TransferError> {
    let trust = node.trust();
    let shown = match command {
        PeersCommand::List { .. } => trust.peers()?,
        PeersCommand::Add { uri, name, ttl, verify, .. } => {
            let mut given = super::secret_arg(&uri)?;
            if agentferry::code::looks_like_code(&given) {
                let (uri, redeemed) = node.redeem_code(&given, Purpose::Pair).await?;
                let verifier = verify.then_some(redeemed.verifier);
                reporter.event(&Event::CodeRedeemed { transfer_id: None, purpose: Purpose::Pair.as_str(), verifier });
                given = uri;
            }
            vec![trust.add_peer(&given, name.as_deref(), ttl.map(|t| t.as_secs()))?]
        }
        PeersCommand::Remove { name, .. } => vec![trust.remove_peer(&name)?],
        PeersCommand::Extend { name, ttl, .. } => vec![trust.extend_peer(&name, ttl.as_secs())?],
    };
    for peer in &shown {
        reporter.event(&Event::Peer { peer: PeerInfo::from(peer) });
    }
    Ok(())
}

pub fn grants(node: &Node, command: GrantsCommand, reporter: &mut Reporter) -> Result<(), TransferError> {
    let trust = node.trust();
    let shown = match command {
        GrantsCommand::List { .. } => trust.grants()?,
        GrantsCommand::Revoke { id, .. } => vec![trust.revoke(&id)?],
    };
    for grant in &shown {
        reporter.event(&Event::Grant { grant: GrantInfo::from(grant) });
    }
    Ok(())
}
