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

use rmcp::{RoleServer, service::RequestContext};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{
    ToolError,
    input::{self, Answer},
};
use crate::{
    code::{Purpose, rendezvous::Offer},
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
    /// Also return a short code (like `7-guitar-nebula-acorn`) that stands for the uri: the
    /// other side passes it to add_peer(code) or `agentferry peers add CODE`. It works once, for
    /// 10 minutes, through this server's relay (the same on both sides); unredeemed, the invite
    /// is revoked. list_invites shows what became of it.
    #[serde(default)]
    pub code: Option<bool>,
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
    /// With `code: true`: the short code that stands for the uri (one use).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// When the code expires unredeemed (unix seconds).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code_expires_at: Option<u64>,
    /// What to do next.
    pub next: String,
}

/// What became of an invite's code.
#[derive(Clone, Debug, Serialize, JsonSchema)]
pub struct InviteCode {
    pub grant_id: String,
    /// `waiting` (not redeemed yet), `redeemed`, or `failed` (then the invite was revoked).
    pub state: &'static str,
    /// Why it failed: `code_wrong` (someone typed other words: the code is used up),
    /// `code_expired`, …
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_code: Option<&'static str>,
}

/// The codes of this server's invites, by grant id.
pub type InviteCodes = std::sync::Arc<std::sync::Mutex<Vec<InviteCode>>>;

#[derive(Debug, Deserialize, JsonSchema)]
pub struct RevokeInviteArgs {
    /// The invite to revoke (see list_invites).
    pub grant_id: String,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct InviteList {
    /// Every grant this node minted (by create_invite or `agentferry export`), without secrets.
    pub invites: Vec<GrantInfo>,
    /// The codes create_invite(code: true) made since this server started, and their state.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub codes: Vec<InviteCode>,
}

/// What the person is asked to confirm.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct Confirm {
    /// Allow the agent to create this invite.
    pub allow: bool,
}
rmcp::elicit_safe!(Confirm);

/// Mint an invite on `node` under `policy`, after the person's confirmation when the client
/// can ask (see [`input`]).
pub async fn create(
    node: &Node,
    policy: &InvitePolicy,
    ctx: &RequestContext<RoleServer>,
    args: CreateInviteArgs,
    codes: &InviteCodes,
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
    let question = format!(
        "An agent asks to create an invite named {name:?}, valid for {hours} h: whoever gets it can send up to {} to this machine without asking. Allow?",
        human_bytes(policy.quota_bytes)
    );
    match input::elicit::<Confirm>(ctx, "confirm", question).await {
        Answer::Given(Confirm { allow: true }) | Answer::NoOneToAsk => {}
        Answer::Given(Confirm { allow: false }) | Answer::Refused => {
            return Err(ToolError {
                code: "invite_declined".into(),
                message: "the person declined to create the invite".into(),
                hint:
                    "do not retry on your own; ask the person, or use send_file without `to` and hand over the ticket"
                        .into(),
            });
        }
        // The client said it can ask but did not: no invite without the answer.
        Answer::Failed(e) => {
            return Err(ToolError {
                code: "invite_not_confirmed".into(),
                message: format!("the person could not be asked to confirm the invite: {e}"),
                hint:
                    "call create_invite again; if it keeps failing, ask the person to run `agentferry export` instead"
                        .into(),
            });
        }
        Answer::Asked => return Err(ToolError::awaiting_input()),
    }
    let inbox = advertised_addrs(node.inbox_bind()?);
    // The code first: without a relay for it, no invite is minted.
    let offer = match args.code {
        Some(true) => Some(node.offer_code(Purpose::Pair).await?),
        _ => None,
    };
    let limits = GrantLimits { quota_bytes: Some(policy.quota_bytes), max_open: Some(policy.max_open) };
    let uri = node.trust().mint(&name, ttl_secs, inbox, node.channel_inbox()?, limits)?;
    let grant_id = data_encoding::HEXLOWER.encode(&uri.grant_id);
    tracing::info!(grant = %grant_id, "invite created");
    let (code, code_expires_at) = match offer {
        Some(offer) => {
            let shown = (Some(offer.code().to_string()), Some(offer.expires_at()));
            hand_over_in_background(node.clone(), offer, uri.to_string(), grant_id.clone(), codes.clone());
            shown
        }
        None => (None, None),
    };
    let next = match &code {
        Some(code) => format!(
            "give the code {code} to the other side (a person can say it): its agent calls add_peer(code) (or its person runs `agentferry peers add {code}`) within 10 minutes, with the same relay; then it calls send_file(path, to=name) and the file arrives here with no ticket (check_session lists it). list_invites shows whether the code was redeemed"
        ),
        None => "give `uri` to the agent that should send files here, by any means; it calls add_peer(uri) and then send_file(path, to=name), and the file arrives here with no ticket (check_session lists it)".into(),
    };
    Ok(CreateInviteResult {
        next,
        uri: uri.to_string(),
        grant_id,
        name,
        expires_at: uri.expires_at,
        quota_bytes: policy.quota_bytes,
        code,
        code_expires_at,
    })
}

/// Wait for the code's redemption in the background and hand the URI over; a code that fails
/// (wrong words, expired) revokes the invite, since no one has it.
fn hand_over_in_background(node: Node, offer: Offer, uri: String, grant_id: String, codes: InviteCodes) {
    let set = move |codes: &InviteCodes, state, error_code| {
        let mut codes = codes.lock().expect("not poisoned");
        codes.retain(|c| c.grant_id != grant_id);
        codes.push(InviteCode { grant_id: grant_id.clone(), state, error_code });
        grant_id.clone()
    };
    let grant = set(&codes, "waiting", None);
    tokio::spawn(async move {
        match offer.hand_over(uri.as_bytes()).await {
            Ok(_) => {
                tracing::info!(grant = %grant, "invite code redeemed");
                set(&codes, "redeemed", None);
            }
            Err(e) => {
                tracing::info!(grant = %grant, code = e.code(), "invite code failed; revoking the invite");
                if let Err(revoke) = node.trust().revoke(&grant) {
                    tracing::warn!(grant = %grant, "cannot revoke: {revoke}");
                }
                set(&codes, "failed", Some(e.code()));
            }
        }
    });
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
