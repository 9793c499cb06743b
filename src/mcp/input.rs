//! What a tool call needs from the client while it runs: the client's roots, and the person's
//! yes or no to an invite.
//!
//! How to ask depends on the protocol the connection negotiated:
//!
//! - **Before 2026-07-28** (connections that began with `initialize`): a request from server to
//!   client (`roots/list`, `elicitation/create`) while the call waits.
//! - **2026-07-28 and later** (`server/discover`, no `initialize`; Claude Code speaks it): such
//!   requests are forbidden. The call answers `input_required` instead (SEP-2322), naming what
//!   it needs, and the client calls again with the answers and the `requestState` it was given.
//!   The client's capabilities come with each request, not once per connection.
//!
//! An answer counts only on the retry of the call that asked for it. `requestState` is a random
//! handle to what this server asked, for which tool and which arguments, and is used once
//! ([`Rounds`]): a client cannot answer a confirmation it was never shown, and the person's yes
//! to one invite does not confirm another.

// Roots are deprecated by SEP-2577 but are what today's hosts (Claude Code, Cursor) send.
#![allow(deprecated)]

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use rmcp::{
    Peer, RoleServer,
    model::{
        CallToolRequestParams, ClientCapabilities, ElicitRequest, ElicitRequestParams, ElicitResult, ElicitationAction,
        ElicitationSchema, InputRequest, InputRequests, InputRequiredResult, InputResponses, ListRootsRequest,
    },
    service::{ElicitationError, RequestContext},
};
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};

/// Questions asked and not yet answered, kept at most this long (a person may take a while)…
const PENDING_LIFE: Duration = Duration::from_secs(600);
/// …and at most this many at once; beyond, the oldest is forgotten (its retry is asked again).
const MAX_PENDING: usize = 64;

/// The key of the roots question in `inputRequests`.
pub(super) const ROOTS: &str = "roots";

/// The questions this server has asked over `input_required`, by `requestState`.
#[derive(Clone, Default)]
pub(super) struct Rounds {
    pending: Arc<Mutex<HashMap<String, Asked>>>,
}

struct Asked {
    call: [u8; 32],
    keys: Vec<String>,
    at: Instant,
}

/// Which tool with which arguments: an answer is bound to it.
fn call_digest(request: &CallToolRequestParams) -> [u8; 32] {
    let arguments = serde_json::to_vec(&request.arguments).expect("JSON values serialise");
    let mut hash = Sha256::new();
    hash.update(request.name.as_bytes());
    hash.update([0]);
    hash.update(arguments);
    hash.finalize().into()
}

impl Rounds {
    /// The inputs of `request`, when its connection asks by `input_required`: the answers it
    /// carries that this server asked for under its `requestState` (the handle is then spent).
    pub(super) fn inputs(
        &self,
        request: &CallToolRequestParams,
        ctx: &RequestContext<RoleServer>,
    ) -> Option<CallInputs> {
        if ctx.protocol_version().is_none_or(|v| v.has_initialize()) {
            return None;
        }
        let answers = self.answers(request);
        Some(CallInputs {
            capabilities: ctx.client_capabilities().unwrap_or_default(),
            retry: answers.is_some(),
            answers: Arc::new(answers.unwrap_or_default()),
            wanted: Default::default(),
        })
    }

    /// The answers `request` carries to questions asked under its `requestState`, which is
    /// then spent: `None` when this server did not ask, or asked another call.
    fn answers(&self, request: &CallToolRequestParams) -> Option<InputResponses> {
        let asked = request.request_state.as_ref().and_then(|state| self.take(state))?;
        if asked.call != call_digest(request) {
            return None;
        }
        let given = request.input_responses.iter().flatten();
        Some(given.filter(|(key, _)| asked.keys.contains(key)).map(|(k, v)| (k.clone(), v.clone())).collect())
    }

    fn take(&self, state: &str) -> Option<Asked> {
        let mut pending = self.pending.lock().expect("not poisoned");
        pending.retain(|_, asked| asked.at.elapsed() < PENDING_LIFE);
        pending.remove(state)
    }

    /// The `input_required` result that asks what `inputs` wants, remembered for the retry.
    pub(super) fn ask(&self, request: &CallToolRequestParams, inputs: &CallInputs) -> Option<InputRequiredResult> {
        let wanted = std::mem::take(&mut *inputs.wanted.lock().expect("not poisoned"));
        if wanted.is_empty() {
            return None;
        }
        let state = data_encoding::HEXLOWER.encode(&rand::random::<[u8; 16]>());
        let asked = Asked { call: call_digest(request), keys: wanted.keys().cloned().collect(), at: Instant::now() };
        let mut pending = self.pending.lock().expect("not poisoned");
        if pending.len() >= MAX_PENDING
            && let Some(oldest) = pending.iter().min_by_key(|(_, a)| a.at).map(|(k, _)| k.clone())
        {
            pending.remove(&oldest);
        }
        pending.insert(state.clone(), asked);
        Some(InputRequiredResult::new(Some(wanted), Some(state)))
    }
}

/// One call's side of an `input_required` round: what the client answered, and what the call
/// still wants to ask. Travels to the tools in the request context's extensions.
#[derive(Clone, Debug)]
pub(super) struct CallInputs {
    capabilities: ClientCapabilities,
    /// This call answers questions asked of it before.
    retry: bool,
    answers: Arc<InputResponses>,
    wanted: Arc<Mutex<InputRequests>>,
}

impl CallInputs {
    pub(super) fn capabilities(&self) -> &ClientCapabilities {
        &self.capabilities
    }

    /// Whether this call is the retry of one that asked something.
    pub(super) fn is_retry(&self) -> bool {
        self.retry
    }

    /// The client's answer to the question `key`, if it came with this call.
    pub(super) fn answer<T: DeserializeOwned>(&self, key: &str) -> Option<Result<T, String>> {
        let value = self.answers.get(key)?;
        Some(
            serde_json::from_value(value.clone())
                .map_err(|e| format!("the client's answer to {key} is malformed: {e}")),
        )
    }

    /// Ask `key` in the `input_required` result this call ends with.
    pub(super) fn want(&self, key: &str, request: InputRequest) {
        self.wanted.lock().expect("not poisoned").insert(key.to_owned(), request);
    }

    /// Ask for the client's roots.
    pub(super) fn want_roots(&self) {
        self.want(ROOTS, InputRequest::ListRoots(ListRootsRequest::default()));
    }
}

/// Whether a client with `capabilities` can show the person a form.
pub(super) fn asks_forms(capabilities: &ClientCapabilities) -> bool {
    capabilities.elicitation.as_ref().is_some_and(|e| e.form.is_some() || e.url.is_none())
}

/// What came of asking the person a question.
pub(super) enum Answer<T> {
    Given(T),
    /// Declined, cancelled, or accepted without content.
    Refused,
    /// The client can ask but did not (an error, a malformed answer).
    Failed(String),
    /// Nobody can be asked on this connection.
    NoOneToAsk,
    /// The question goes back to the client in this call's `input_required` result.
    Asked,
}

/// Ask the person `question` with a form for `T`, the way this call's connection allows.
/// `key` names the question in an `input_required` round.
pub(super) async fn elicit<T: rmcp::service::ElicitationSafe + DeserializeOwned>(
    ctx: &RequestContext<RoleServer>,
    key: &str,
    question: String,
) -> Answer<T> {
    match ctx.extensions.get::<CallInputs>() {
        Some(inputs) => elicit_by_round(inputs, key, question),
        None => elicit_by_request(&ctx.peer, question).await,
    }
}

fn elicit_by_round<T: rmcp::service::ElicitationSafe + DeserializeOwned>(
    inputs: &CallInputs,
    key: &str,
    question: String,
) -> Answer<T> {
    if !asks_forms(inputs.capabilities()) {
        return Answer::NoOneToAsk;
    }
    match inputs.answer::<ElicitResult>(key) {
        Some(Ok(ElicitResult { action: ElicitationAction::Accept, content: Some(content), .. })) => {
            match serde_json::from_value(content) {
                Ok(given) => Answer::Given(given),
                Err(e) => Answer::Failed(format!("the person's answer does not fit the form: {e}")),
            }
        }
        Some(Ok(_)) => Answer::Refused,
        Some(Err(e)) => Answer::Failed(e),
        None => match ElicitationSchema::from_type::<T>() {
            Ok(schema) => {
                let params = ElicitRequestParams::FormElicitationParams {
                    meta: None,
                    message: question,
                    requested_schema: schema,
                };
                inputs.want(key, InputRequest::Elicitation(ElicitRequest::new(params)));
                Answer::Asked
            }
            Err(e) => Answer::Failed(format!("no form for the question: {e}")),
        },
    }
}

async fn elicit_by_request<T: rmcp::service::ElicitationSafe + DeserializeOwned>(
    peer: &Peer<RoleServer>,
    question: String,
) -> Answer<T> {
    if peer.supported_elicitation_modes().is_empty() {
        return Answer::NoOneToAsk;
    }
    match peer.elicit::<T>(question).await {
        Ok(Some(given)) => Answer::Given(given),
        Ok(None) | Err(ElicitationError::UserDeclined | ElicitationError::UserCancelled) => Answer::Refused,
        Err(e) => Answer::Failed(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn call(name: &'static str, arguments: serde_json::Value) -> CallToolRequestParams {
        CallToolRequestParams::new(name).with_arguments(arguments.as_object().unwrap().clone())
    }

    /// Asks `key` for `request` and gives back the retry a client would send with `answer`.
    fn asked_then_answered(rounds: &Rounds, request: &CallToolRequestParams, key: &str) -> CallToolRequestParams {
        let inputs = CallInputs {
            capabilities: Default::default(),
            retry: false,
            answers: Default::default(),
            wanted: Default::default(),
        };
        inputs.want_roots();
        inputs.want(key, InputRequest::ListRoots(ListRootsRequest::default()));
        let result = rounds.ask(request, &inputs).expect("something was wanted");
        let answers =
            [(key.to_owned(), json!({"action": "accept"})), ("planted".into(), json!(1))].into_iter().collect();
        request.clone().with_request_state(result.request_state.unwrap()).with_input_responses(answers)
    }

    #[test]
    fn an_answer_counts_on_the_retry_of_the_call_that_asked() {
        let rounds = Rounds::default();
        let first = call("create_invite", json!({"name": "laptop"}));
        let retry = asked_then_answered(&rounds, &first, "confirm");
        let answers = rounds.answers(&retry).unwrap();
        assert!(answers.contains_key("confirm"));
        assert!(!answers.contains_key("planted"), "only what was asked is taken");
    }

    #[test]
    fn a_request_state_is_spent_by_its_first_retry() {
        let rounds = Rounds::default();
        let retry = asked_then_answered(&rounds, &call("create_invite", json!({})), "confirm");
        assert!(rounds.answers(&retry).is_some());
        assert!(rounds.answers(&retry).is_none(), "a replayed answer confirms nothing");
    }

    #[test]
    fn an_answer_for_one_call_does_not_confirm_another() {
        let rounds = Rounds::default();
        let retry = asked_then_answered(&rounds, &call("create_invite", json!({"name": "a"})), "confirm");
        let mut other = retry;
        other.arguments = call("x", json!({"name": "b"})).arguments;
        assert!(rounds.answers(&other).is_none());
    }

    #[test]
    fn answers_without_a_question_are_ignored() {
        let rounds = Rounds::default();
        let answers = [("confirm".to_owned(), json!({"action": "accept"}))].into_iter().collect();
        let forged = call("create_invite", json!({})).with_request_state("00").with_input_responses(answers);
        assert!(rounds.answers(&forged).is_none());
    }

    #[test]
    fn the_pending_table_is_bounded() {
        let rounds = Rounds::default();
        let request = call("send_file", json!({}));
        for _ in 0..MAX_PENDING * 2 {
            let inputs = CallInputs {
                capabilities: Default::default(),
                retry: false,
                answers: Default::default(),
                wanted: Default::default(),
            };
            inputs.want_roots();
            rounds.ask(&request, &inputs);
        }
        assert_eq!(rounds.pending.lock().unwrap().len(), MAX_PENDING);
    }
}
