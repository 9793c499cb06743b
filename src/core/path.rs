//! The names of the paths, and which one a user asks for.
//!
//! Here in the core because the path selector decides between them; the transports implement
//! them ([`crate::transport`]) and the fronts show and parse them, so both look down here.

use std::fmt;

use serde::Serialize;

/// How frames move between two nodes, best first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PathKind {
    /// The receiver opens a TCP connection to the sender and streams frames over HTTP/1.1.
    Http,
    /// A WebRTC data channel (ICE: direct, hole-punched or through TURN), signalled over the
    /// channel; frames travel as data-channel messages.
    Webrtc,
    /// Both sides reach a relay or shared folder from the inside; frames travel as messages.
    Relay,
}

impl PathKind {
    pub fn as_str(self) -> &'static str {
        match self {
            PathKind::Http => "http",
            PathKind::Webrtc => "webrtc",
            PathKind::Relay => "relay",
        }
    }
}

impl fmt::Display for PathKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which path a receiver should use. `auto` starts on the best path that answers, falls back
/// when it stops delivering and moves up when a better one opens; the others pin one path.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, serde::Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Prefer {
    #[default]
    Auto,
    Http,
    Webrtc,
    Relay,
}

impl Prefer {
    /// Every preference, in the order help texts list them.
    pub const ALL: [Prefer; 4] = [Prefer::Auto, Prefer::Http, Prefer::Webrtc, Prefer::Relay];

    /// The preference named `name` (as [`Prefer::as_str`] writes it).
    pub fn from_name(name: &str) -> Option<Prefer> {
        Prefer::ALL.into_iter().find(|p| p.as_str() == name)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Prefer::Auto => "auto",
            Prefer::Http => "http",
            Prefer::Webrtc => "webrtc",
            Prefer::Relay => "relay",
        }
    }

    /// The one path this preference pins, if any.
    pub fn pinned(self) -> Option<PathKind> {
        match self {
            Prefer::Auto => None,
            Prefer::Http => Some(PathKind::Http),
            Prefer::Webrtc => Some(PathKind::Webrtc),
            Prefer::Relay => Some(PathKind::Relay),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_preference_is_found_by_its_name_and_by_nothing_else() {
        for prefer in Prefer::ALL {
            assert_eq!(Prefer::from_name(prefer.as_str()), Some(prefer));
            let json = serde_json::to_value(prefer).unwrap();
            assert_eq!(json, prefer.as_str(), "the wire name is the same");
        }
        assert_eq!(Prefer::from_name("HTTP"), None);
        assert_eq!(Prefer::from_name("direct"), None);
    }
}
