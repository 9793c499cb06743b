//! Offers that wait on NATS: a JetStream stream that keeps sealed offers for an inbox that is
//! offline, as `agentferry relay` keeps them in a mailbox's queue.
//!
//! Core NATS drops a message nobody subscribes. When the server runs JetStream, an offer (and
//! only an offer: the chunk relay's frames never come here) is published to
//! `agentferry.offers.<mailbox id>`, which the stream [`STREAM`] captures, and the inbox reads
//! that subject through an ordered consumer (every kept message, then new ones) besides its core
//! subscription. A kept offer is deleted once it is handed to the inbox.
//!
//! The stream is bounded everywhere: an offer is kept at most [`MAX_SKEW_SECS`](crate::offer::MAX_SKEW_SECS) (the inbox
//! refuses older ones anyway), at most [`PER_PEER`] per mailbox (a mailbox is one grant, so one
//! sending peer toward one inbox), [`MAX_OFFER`] bytes each and [`MAX_BYTES`] in all; when a
//! mailbox is full, new offers are refused (a flood cannot push out the ones already waiting)
//! and the sender is told. The stored bytes are the same sealed offers the relay would queue:
//! the ticket inside is encrypted under the grant, and the subject is a mailbox id.
//!
//! An operator may create the stream beforehand (replicated, on chosen storage) under the same
//! name and subjects; it is used as it is.

use std::time::Duration;

use async_nats::jetstream::{
    self,
    consumer::{DeliverPolicy, push::OrderedConfig},
    stream::{Config, DiscardPolicy, RetentionPolicy, StorageType},
};
use bytes::Bytes;
use futures_util::StreamExt;
use tokio::{sync::mpsc, task::JoinHandle};

use super::subject;
use crate::{error::TransferError, mailbox::MailboxId};

/// The stream's name.
pub const STREAM: &str = "AGENTFERRY_OFFERS";
/// Offers kept per mailbox at most.
pub const PER_PEER: i64 = 16;
/// The largest offer kept (an offer is a sealed ticket of a few hundred bytes).
pub const MAX_OFFER: i32 = 16 * 1024;
/// Bytes the stream keeps in all.
pub const MAX_BYTES: i64 = 64 * 1024 * 1024;
/// How long the server has to confirm it stored an offer.
const ACK_TIMEOUT: Duration = Duration::from_secs(5);

/// How long an offer is kept: as long as an inbox accepts one (`offer::MAX_SKEW_SECS`, pinned
/// by a test); the channel keeps bytes and does not read offers.
pub const KEEP_SECS: u64 = 600;

fn config() -> Config {
    Config {
        name: STREAM.into(),
        description: Some("agentferry: sealed offers waiting for an inbox that is offline".into()),
        subjects: vec![subject::all_offers()],
        retention: RetentionPolicy::Limits,
        storage: StorageType::File,
        max_age: Duration::from_secs(KEEP_SECS),
        max_messages_per_subject: PER_PEER,
        max_message_size: MAX_OFFER,
        max_bytes: MAX_BYTES,
        discard: DiscardPolicy::New,
        discard_new_per_subject: true,
        num_replicas: 1,
        ..Default::default()
    }
}

/// The stream of waiting offers on one connection.
#[derive(Debug)]
pub struct OfferStore {
    jetstream: jetstream::Context,
    stream: jetstream::stream::Stream,
}

impl OfferStore {
    /// The stream, created if missing; `None` when the server runs no JetStream (or this
    /// account may not use it), so that offers fall back to core NATS.
    pub async fn open(client: &async_nats::Client, label: &str) -> Option<OfferStore> {
        if !client.server_info().jetstream {
            tracing::debug!(nats = %label, "no JetStream: offers to an offline peer are re-posted");
            return None;
        }
        let jetstream = jetstream::new(client.clone());
        match jetstream.get_or_create_stream(config()).await {
            Ok(stream) => Some(OfferStore { jetstream, stream }),
            Err(e) => {
                tracing::warn!(nats = %label, "JetStream is on but the offer stream is unusable ({e}): offers to an offline peer are re-posted");
                None
            }
        }
    }

    /// Keep `payload` (a sealed offer) for `mailbox`; returns once the server stored it.
    pub async fn keep(&self, mailbox: &MailboxId, payload: Bytes) -> Result<(), TransferError> {
        if payload.len() > MAX_OFFER as usize {
            return Err(TransferError::SizeLimit(format!("an offer of {} bytes (at most {MAX_OFFER})", payload.len())));
        }
        let refused = |e: &dyn std::fmt::Display| {
            TransferError::OfferRefused(format!("the NATS server did not keep the offer for the offline peer: {e}"))
        };
        let ack = self.jetstream.publish(subject::offers(mailbox), payload).await.map_err(|e| refused(&e))?;
        match tokio::time::timeout(ACK_TIMEOUT, ack).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) if e.to_string().contains("maximum messages per subject") => {
                Err(refused(&format!("{PER_PEER} offers already wait for this peer (they expire after {KEEP_SECS} s)")))
            }
            Ok(Err(e)) => Err(refused(&e)),
            Err(_) => Err(refused(&"no answer")),
        }
    }

    /// Hand every offer kept for `mailbox`, then each new one, to `tx`, deleting each from the
    /// stream once handed over; ends when `tx` closes (or the task is aborted).
    pub async fn deliver(
        &self,
        client: &async_nats::Client,
        mailbox: &MailboxId,
        tx: mpsc::Sender<Bytes>,
    ) -> Option<JoinHandle<()>> {
        let consumer = OrderedConfig {
            deliver_subject: client.new_inbox(),
            filter_subject: subject::offers(mailbox),
            deliver_policy: DeliverPolicy::All,
            ..Default::default()
        };
        let opened: Result<_, async_nats::Error> =
            async { Ok(self.stream.create_consumer(consumer).await?.messages().await?) }.await;
        let mut messages = match opened {
            Ok(messages) => messages,
            Err(e) => {
                tracing::warn!("cannot read the offers kept for an inbox: {e}");
                return None;
            }
        };
        let stream = self.stream.clone();
        Some(tokio::spawn(async move {
            while let Some(message) = messages.next().await {
                let message = match message {
                    Ok(message) => message,
                    Err(e) => {
                        tracing::debug!("offer consumer: {e}");
                        continue;
                    }
                };
                let sequence = message.info().map(|i| i.stream_sequence).ok();
                if tx.send(message.message.payload.clone()).await.is_err() {
                    return;
                }
                if let Some(sequence) = sequence
                    && let Err(e) = stream.delete_message(sequence).await
                {
                    tracing::debug!("cannot delete a delivered offer: {e}");
                }
            }
        }))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn offers_are_kept_as_long_as_an_inbox_accepts_them() {
        assert_eq!(super::KEEP_SECS, crate::offer::MAX_SKEW_SECS);
    }
}
