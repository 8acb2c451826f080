//! The session policies compared: the implementations simulated.

use tidysession::{Anonymous, KeyRing, SessionConfig};

/// One way to run sessions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Policy {
    ServerAlways,
    SaveEveryRequest,
    Default,
}

impl Policy {
    pub(super) const ALL: [Policy; 3] = [
        Policy::ServerAlways,
        Policy::SaveEveryRequest,
        Policy::Default,
    ];

    pub(super) fn title(self) -> &'static str {
        match self {
            Policy::ServerAlways => "server-side always",
            Policy::SaveEveryRequest => "save every request",
            Policy::Default => "tidysession default",
        }
    }

    /// For file names, schemas, tables and prefixes.
    pub(super) fn slug(self) -> &'static str {
        match self {
            Policy::ServerAlways => "server_always",
            Policy::SaveEveryRequest => "save_every",
            Policy::Default => "default",
        }
    }

    pub(super) fn config(self, keys: KeyRing) -> SessionConfig {
        let config = SessionConfig::default().with_secure(false).with_keys(keys);
        match self {
            Policy::ServerAlways => config.with_anonymous(Anonymous::OnServer),
            Policy::SaveEveryRequest => config
                .with_anonymous(Anonymous::OnServer)
                .with_save_every_request(true),
            Policy::Default => config.with_anonymous(Anonymous::InCookie),
        }
    }
}
