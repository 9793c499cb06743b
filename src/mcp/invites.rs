//! Invites: grants minted over MCP, so that two agents can pair without a person at a shell.
//!
//! `create_invite` does what `agentferry export` does, within limits a prompt-injected model
//! cannot lift: a short default life ([`InvitePolicy::default_ttl_hours`], at most
//! [`InvitePolicy::max_ttl_hours`]), at most [`InvitePolicy::max_open`] usable grants on the node
//! at once, and a byte quota per grant beyond which pushes are held for a person instead of
//! auto-accepted. The person who starts the server sets these (`agentferry mcp --invite-quota`,
//! `--max-invites`). When the client supports elicitation, the person confirms each invite
//! before it exists (no answer, no invite); a plain client gets the invite without asking.
//!
//! The invite's URI is the one secret here: it appears in `create_invite`'s result and nowhere
//! else (logs, `list_invites`, resources and errors show only the grant id).

use rmcp::{Peer, RoleServer, service::ElicitationError};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::ToolError;
use crate::{
    engine::{Node, advertised_addrs},
    error::TransferError,
    journal::unix_now,
    peers::{GrantInfo, GrantLimits},
};

/// What an agent may mint. Set by the person who runs the server.
#[derive(Clone, Debug)]
pub struct InvitePolicy {
    pub default_ttl_hours: f64,
    pub max_ttl_hours: f64,
    /// Usable grants (invites and `agentferry export` alike) this node may have at once.
    pub max_open: usize,
    /// Bytes auto-accepted under one invite; later pushes are held as pending.
    pub quota_bytes: u64,
}

impl Default for InvitePolicy {
    fn default() -> Self {
        InvitePolicy { default_ttl_hours: 1.0, max_ttl_hours: 24.0, max_open: 5, quota_bytes: 1 << 30 }
    }
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct CreateInviteArgs {
    /// The name the other agent will know this node by (default: this node's name).
    #[serde(default)]
    pub name: Option<String>,
    /// How long the invite stays valid, in hours (default 1; the server caps it, 24 unless its
    /// operator chose otherwise).
    #[serde(default)]
    #[schemars(range(min = 0.01))]
    pub ttl_hours: Option<f64>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct CreateInviteResult {
    /// Secret: whoever holds it can push files here (it calls add_peer with it). Give it only
    /// to the agent that should send to you.
    pub uri: String,
    /// The invite's id, for revoke_invite and list_invites.
    pub grant_id: String,
    /// The name this node has in the invite.
    pub name: String,
    /// Unix seconds.
    pub expires_at: u64,
    /// Bytes auto-accepted under this invite; beyond, pushes wait as pending offers.
    pub quota_bytes: u64,
    /// What to do next.
    pub next: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct RevokeInviteArgs {
    /// The invite to revoke (see list_invites).
    pub grant_id: String,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct InviteList {
    /// Every grant this node minted (by create_invite or `agentferry export`), without secrets.
    pub invites: Vec<GrantInfo>,
}

/// What the person is asked to confirm.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct Confirm {
    /// Allow the agent to create this invite.
    pub allow: bool,
}
rmcp::elicit_safe!(Confirm);

/// Mint an invite on `node` under `policy`, after the person's confirmation when `peer` can ask.
pub async fn create(
    node: &Node,
    policy: &InvitePolicy,
    peer: &Peer<RoleServer>,
    args: CreateInviteArgs,
) -> Result<CreateInviteResult, ToolError> {
    let name = args.name.as_deref().map(str::trim).filter(|n| !n.is_empty()).unwrap_or(&node.config().name);
    let name = name.to_owned();
    let hours = args.ttl_hours.unwrap_or(policy.default_ttl_hours);
    if !(hours > 0.0 && hours <= policy.max_ttl_hours) {
        return Err(ToolError::bad_arguments(
            "create_invite",
            &format!("ttl_hours must be above 0 and at most {}", policy.max_ttl_hours),
        ));
    }
    let ttl_secs = (hours * 3600.0).ceil() as u64;
    // Checked before asking the person too, so that nobody confirms an invite that cannot be.
    let open = node.trust().grants()?.iter().filter(|g| g.invalid_reason(unix_now()).is_none()).count();
    if open >= policy.max_open {
        return Err(TransferError::TooManyGrants(policy.max_open).into());
    }
    if !peer.supported_elicitation_modes().is_empty() {
        let question = format!(
            "An agent asks to create an invite named {name:?}, valid for {hours} h: whoever gets it can send up to {} to this machine without asking. Allow?",
            human_bytes(policy.quota_bytes)
        );
        match peer.elicit::<Confirm>(question).await {
            Ok(Some(Confirm { allow: true })) => {}
            Ok(_) | Err(ElicitationError::UserDeclined | ElicitationError::UserCancelled) => {
                return Err(ToolError {
                    code: "invite_declined".into(),
                    message: "the person declined to create the invite".into(),
                    hint: "do not retry on your own; ask the person, or use send_file without `to` and hand over the ticket".into(),
                });
            }
            // The client said it can ask but did not: no invite without the answer.
            Err(e) => {
                return Err(ToolError {
                    code: "invite_not_confirmed".into(),
                    message: format!("the person could not be asked to confirm the invite: {e}"),
                    hint: "call create_invite again; if it keeps failing, ask the person to run `agentferry export` instead".into(),
                });
            }
        }
    }
    let inbox = advertised_addrs(node.inbox_bind()?);
    let limits = GrantLimits { quota_bytes: Some(policy.quota_bytes), max_open: Some(policy.max_open) };
    let uri = node.trust().mint(&name, ttl_secs, inbox, node.channel_inbox()?, limits)?;
    let grant_id = data_encoding::HEXLOWER.encode(&uri.grant_id);
    tracing::info!(grant = %grant_id, "invite created");
    Ok(CreateInviteResult {
        next: "give `uri` to the agent that should send files here, by any means; it calls add_peer(uri) and then send_file(path, to=name), and the file arrives here with no ticket (check_session lists it)".into(),
        uri: uri.to_string(),
        grant_id,
        name,
        expires_at: uri.expires_at,
        quota_bytes: policy.quota_bytes,
    })
}

/// `n` bytes for a person: `1.0 GiB`.
fn human_bytes(n: u64) -> String {
    let units = ["bytes", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < units.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 { format!("{n} bytes") } else { format!("{value:.1} {}", units[unit]) }
}
