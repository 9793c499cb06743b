//! The word list codes are made of: the EFF's short word list (list 1), 1296 words of 3 to 5
//! letters chosen to be easy to say, spell and tell apart.
//!
//! Source: the Electronic Frontier Foundation, "EFF Dice-Generated Passphrases",
//! <https://www.eff.org/dice> (`eff_short_wordlist_1.txt`, July 2016), licensed under the
//! Creative Commons Attribution 3.0 license (CC BY 3.0,
//! <https://creativecommons.org/licenses/by/3.0/us/>). The copy in `eff_short_wordlist_1.txt`
//! beside this file is the list as shipped (words only, without the dice numbers) by the
//! `xkcdpass` 1.30.0 package on PyPI (`xkcdpass/static/eff-short`), and matches the list in the
//! `eff-wordlist` 1.0.3 crate word for word; its SHA-256 is checked below.
//!
//! One word carries log2(1296) ≈ 10.34 bits. One word has a hyphen in it (`yo-yo`), which
//! [`super::ShortCode`]'s parser joins back together.

use std::sync::OnceLock;

const TEXT: &str = include_str!("eff_short_wordlist_1.txt");

/// How many words the list has.
pub const COUNT: usize = 1296;

/// Every word, in the list's order (alphabetical).
pub fn all() -> &'static [&'static str] {
    static WORDS: OnceLock<Vec<&'static str>> = OnceLock::new();
    WORDS.get_or_init(|| TEXT.lines().map(str::trim).filter(|l| !l.is_empty()).collect())
}

/// The word at `index` (below [`COUNT`]).
pub fn word(index: usize) -> &'static str {
    all()[index]
}

/// Where `word` is in the list, if it is there.
pub fn index(word: &str) -> Option<usize> {
    all().binary_search(&word).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};

    #[test]
    fn the_list_is_the_eff_short_list_whole() {
        assert_eq!(all().len(), COUNT);
        assert_eq!(
            data_encoding::HEXLOWER.encode(&Sha256::digest(TEXT.as_bytes())),
            "36ecca49e4fa20ca84b176c32f2e9c82f98f446585190e75f9879a95c08247bf"
        );
        assert_eq!((word(0), word(COUNT - 1)), ("acid", "zoom"));
        let mut sorted = all().to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted, all(), "sorted and unique, so binary search finds every word");
        for (i, w) in all().iter().enumerate() {
            assert_eq!(index(w), Some(i));
            assert!(w.bytes().all(|b| b.is_ascii_lowercase() || b == b'-'), "{w}");
        }
        assert_eq!(all().iter().filter(|w| w.contains('-')).collect::<Vec<_>>(), [&"yo-yo"]);
        assert_eq!(index("yo"), None, "so `yo-yo` cannot be read as two words");
    }
}
