//! Short codes a person can say: `7-guitar-nebula-acorn` stands for a ticket or a grant URI.
//!
//! A ticket is some 230 characters: fine for an agent, hopeless over the phone. A code is a
//! *nameplate* (a small number the relay allocates to the offering side's connection) and three
//! words from the EFF's short list ([`words`]). Both sides run SPAKE2 ([`pake`]) with the words
//! as the password, through the relay ([`rendezvous`]); the key they agree on seals the real
//! ticket (or grant URI), so everything after is exactly a ticket transfer (or a grant added by
//! URI). The relay sees the nameplate only, never the words, and cannot learn them from what it
//! carries: SPAKE2 leaks nothing to an eavesdropper, and an active attacker gets one guess.
//!
//! Guessing is hopeless and visible:
//!
//! - **one try per code**: the relay burns the nameplate at the first claim, so a wrong guess
//!   ends the code for everyone, and both sides see `code_wrong`: the claimer proves its key
//!   first, and the offering side, finding it wrong, sends nothing sealed and stops;
//! - **entropy**: three words of 1296 are 31.0 bits, so one guess wins with odds of 1 in
//!   2 176 782 336 (magic-wormhole's default two PGP words give 1 in 65 536);
//! - **codes expire**: the relay forgets a nameplate after its TTL (10 minutes by default) or
//!   when the offering side's connection closes, and does not hand the number out again for
//!   another TTL, so a replayed code is refused (`code_used`, `code_expired`) instead of
//!   landing on someone else's;
//! - **the relay rate-limits claims per source** (an IPv4 address or an IPv6 /64) and bounds the
//!   nameplate table, so guesses cannot be made at scale.
//!
//! The PAKE identity binds the relay's URL, the nameplate and the purpose (`transfer` or
//! `pair`), so a code cannot be redeemed on another relay or for the other purpose. Both sides
//! can show a short verifier derived from the key (`--verify`): equal strings prove that no one
//! in the middle guessed the code.

pub mod pake;
pub mod rendezvous;
pub mod words;

use std::{fmt, str::FromStr};

use rand::Rng;

use crate::error::TransferError;

/// How many words a code has.
pub const WORDS: usize = 3;

/// What a code stands for; bound into the PAKE, so a code works only for its own purpose.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Purpose {
    /// A transfer: the sealed payload is a ticket.
    Transfer,
    /// Pairing: the sealed payload is a grant URI.
    Pair,
}

impl Purpose {
    pub fn as_str(self) -> &'static str {
        match self {
            Purpose::Transfer => "transfer",
            Purpose::Pair => "pair",
        }
    }
}

/// A code: the nameplate and the words. `Display` gives `7-guitar-nebula-acorn`; `FromStr` takes
/// that with any case and with spaces or hyphens between the parts.
#[derive(Clone, PartialEq, Eq)]
pub struct ShortCode {
    pub nameplate: u32,
    /// Indexes into [`words::all`].
    words: [u16; WORDS],
}

impl ShortCode {
    /// A code for `nameplate` with fresh random words.
    pub fn random(nameplate: u32) -> Self {
        let mut rng = rand::rng();
        ShortCode { nameplate, words: std::array::from_fn(|_| rng.random_range(0..words::COUNT as u16)) }
    }

    /// The words joined by hyphens: the PAKE's password.
    pub fn password(&self) -> String {
        self.words.iter().map(|&w| words::word(w as usize)).collect::<Vec<_>>().join("-")
    }

    /// The secret bits of a code (the nameplate is public).
    pub fn entropy_bits() -> f64 {
        WORDS as f64 * (words::COUNT as f64).log2()
    }
}

impl fmt::Display for ShortCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.nameplate, self.password())
    }
}

/// The words are the secret: never in a log.
impl fmt::Debug for ShortCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ShortCode({}-<redacted>)", self.nameplate)
    }
}

impl FromStr for ShortCode {
    type Err = TransferError;

    fn from_str(s: &str) -> Result<Self, TransferError> {
        let bad = |why: String| TransferError::CodeMalformed(why);
        let lower = s.trim().to_ascii_lowercase();
        let mut parts = lower.split(|c: char| c == '-' || c.is_whitespace()).filter(|p| !p.is_empty()).peekable();
        let number = parts.next().ok_or_else(|| bad("it is empty".into()))?;
        let nameplate = match number.parse::<u32>() {
            Ok(n) if n > 0 && number.bytes().all(|b| b.is_ascii_digit()) => n,
            _ => return Err(bad("it must start with the number, as in 7-guitar-nebula-acorn".into())),
        };
        let mut found = Vec::new();
        while let Some(part) = parts.next() {
            // `yo-yo` is one word: try the part joined with the next one first.
            let joined = parts.peek().map(|next| format!("{part}-{next}")).and_then(|j| words::index(&j));
            let index = match joined {
                Some(i) => {
                    parts.next();
                    i
                }
                None => words::index(part).ok_or_else(|| bad(format!("`{part}` is not one of the code words")))?,
            };
            found.push(index as u16);
        }
        let words: [u16; WORDS] = found.try_into().map_err(|found: Vec<u16>| {
            bad(format!("it has {} words after the number; a code has {WORDS}", found.len()))
        })?;
        Ok(ShortCode { nameplate, words })
    }
}

/// Whether `s` looks like a code rather than a ticket or a URI (it starts with a digit).
pub fn looks_like_code(s: &str) -> bool {
    s.trim_start().starts_with(|c: char| c.is_ascii_digit())
}

/// The relay URL as both sides bind it into the PAKE: lowercase, no trailing slash.
pub fn relay_identity(url: &str) -> String {
    url.trim().trim_end_matches('/').to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_print_and_parse_back_whatever_the_spelling() {
        for n in [1, 7, 4096, u32::MAX] {
            let code = ShortCode::random(n);
            assert_eq!(code.to_string().parse::<ShortCode>().unwrap(), code);
        }
        let code: ShortCode = " 7 Acid-ACORN  zoom ".parse().unwrap();
        assert_eq!(code.to_string(), "7-acid-acorn-zoom");
        assert_eq!(code.password(), "acid-acorn-zoom");
        let yoyo: ShortCode = "12-yo-yo-yoyo-yodel".parse().unwrap();
        assert_eq!(yoyo.to_string(), "12-yo-yo-yoyo-yodel");
        assert_eq!(yoyo.to_string().parse::<ShortCode>().unwrap(), yoyo);
        assert!(!format!("{code:?}").contains("acid"), "Debug shows no words");
    }

    #[test]
    fn malformed_codes_say_why_without_touching_the_relay() {
        for (text, why) in [
            ("", "empty"),
            ("acid-acorn-zoom", "start with the number"),
            ("0-acid-acorn-zoom", "start with the number"),
            ("7-acid-acorn", "2 words"),
            ("7-acid-acorn-zoom-zone", "4 words"),
            ("7-acid-acorm-zoom", "`acorm`"),
            ("ferry1abc", "start with the number"),
        ] {
            let err = text.parse::<ShortCode>().unwrap_err();
            assert_eq!(err.code(), "code_malformed");
            assert!(err.to_string().contains(why), "{text:?}: {err}");
        }
    }

    #[test]
    fn three_words_are_31_bits() {
        assert!((ShortCode::entropy_bits() - 31.02).abs() < 0.01, "{}", ShortCode::entropy_bits());
        assert_eq!((words::COUNT as u64).pow(WORDS as u32), 2_176_782_336);
        assert!(looks_like_code("7-acid") && !looks_like_code("ferry…") && !looks_like_code("grant…"));
    }
}
