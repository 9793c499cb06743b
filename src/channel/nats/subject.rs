//! The NATS subjects agentferry uses: one per mailbox, one per inbox's waiting offers.
//!
//! Both the core channel ([`super::NatsChannel`]) and the offer store ([`super::offers`]) name
//! subjects here, so neither imports the other for a name. Account permissions that limit
//! agentferry's users to [`PREFIX`]`>` cover all of them.

use crate::mailbox::MailboxId;

/// Every subject agentferry uses starts with this.
pub const PREFIX: &str = "agentferry.";

/// The subject of the mailbox `mailbox`.
pub fn mailbox(mailbox: &MailboxId) -> String {
    format!("{PREFIX}{mailbox}")
}

/// The subject where offers to the inbox `mailbox` wait.
pub fn offers(mailbox: &MailboxId) -> String {
    format!("{PREFIX}offers.{mailbox}")
}

/// Every inbox's waiting offers (the offer stream's subjects).
pub fn all_offers() -> String {
    format!("{PREFIX}offers.*")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_are_the_prefix_and_the_hex_id() {
        let id = MailboxId::from_bytes([0xab; 32]);
        assert_eq!(mailbox(&id), format!("agentferry.{}", "ab".repeat(32)));
        assert_eq!(offers(&id), format!("agentferry.offers.{}", "ab".repeat(32)));
        assert_eq!(all_offers(), "agentferry.offers.*");
    }
}
