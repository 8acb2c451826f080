//! Who the client is, for client metadata and per-client limits.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use http::{HeaderName, Request};
use time::{Duration, OffsetDateTime};

/// Where a client's address comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClientAddress {
    /// No address.
    None,
    /// The peer of the connection, from axum's `ConnectInfo<SocketAddr>` (serve the app with
    /// `into_make_service_with_connect_info`).
    Peer,
    /// A header set by a proxy you trust (e.g. `x-real-ip`). When it lists several addresses
    /// (`x-forwarded-for`), the last one is used: the one your proxy saw. Never name a header
    /// that clients can set on requests reaching the app directly.
    Header(HeaderName),
}

impl ClientAddress {
    /// The client's address on `req`, if this source gives one.
    pub(crate) fn of<T>(&self, req: &Request<T>) -> Option<String> {
        match self {
            ClientAddress::None => None,
            #[cfg(feature = "axum")]
            ClientAddress::Peer => req
                .extensions()
                .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
                .map(|c| c.0.ip().to_string()),
            #[cfg(not(feature = "axum"))]
            ClientAddress::Peer => None,
            // The last line, and its last entry: proxies append, so whatever the client sent
            // comes first. Only a real address counts.
            ClientAddress::Header(name) => req
                .headers()
                .get_all(name)
                .iter()
                .next_back()
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.rsplit(',').next())
                .and_then(|a| a.trim().parse::<std::net::IpAddr>().ok())
                .map(|ip| ip.to_string()),
        }
    }
}

/// At most `max` events per client per `window`, counted in fixed windows. Bounded: when it
/// tracks `capacity` clients, windows that have ended are dropped, and if every tracked
/// client is still inside its window, new clients are refused until some window ends (fail
/// closed: the limit exists to protect the store).
#[derive(Debug)]
pub(crate) struct Limiter {
    max: u32,
    window: Duration,
    capacity: usize,
    counts: Mutex<HashMap<String, (OffsetDateTime, u32)>>,
}

impl Limiter {
    pub(crate) fn new(max: u32, window: Duration) -> Self {
        Self {
            max,
            window,
            capacity: 100_000,
            counts: Mutex::new(HashMap::new()),
        }
    }

    /// Counts one event for `client`; whether it is within the limit.
    pub(crate) fn allow(&self, client: &str, now: OffsetDateTime) -> bool {
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((start, n)) = counts.get_mut(client) {
            if now - *start >= self.window {
                (*start, *n) = (now, 0);
            }
            *n += 1;
            return *n <= self.max;
        }
        if counts.len() >= self.capacity {
            counts.retain(|_, (start, _)| now - *start < self.window);
            if counts.len() >= self.capacity {
                return false;
            }
        }
        counts.insert(client.to_owned(), (now, 1));
        self.max >= 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limiter_counts_per_client_and_window_and_stays_bounded() {
        let l = Limiter::new(2, Duration::minutes(1));
        let t = OffsetDateTime::now_utc();
        assert!(l.allow("a", t) && l.allow("a", t));
        assert!(!l.allow("a", t), "third in the window");
        assert!(l.allow("b", t), "other clients unaffected");
        assert!(l.allow("a", t + Duration::minutes(1)), "a new window");
        let small = Limiter {
            capacity: 2,
            ..Limiter::new(1, Duration::minutes(1))
        };
        assert!(small.allow("x", t) && small.allow("y", t));
        assert!(!small.allow("z", t), "full of live windows: refuse");
        assert!(
            small.allow("z", t + Duration::minutes(2)),
            "ended windows make room"
        );
    }

    #[test]
    fn header_address_takes_the_last_hop_and_only_real_addresses() {
        let from = ClientAddress::Header(HeaderName::from_static("x-forwarded-for"));
        let of = |lines: &[&str]| {
            let mut req = Request::get("/");
            for line in lines {
                req = req.header("x-forwarded-for", *line);
            }
            from.of(&req.body(()).unwrap())
        };
        assert_eq!(
            of(&["203.0.113.9, 198.51.100.2"]).as_deref(),
            Some("198.51.100.2")
        );
        // A forged line from the client comes first; the proxy's own line wins.
        assert_eq!(
            of(&["1.2.3.4", "198.51.100.2"]).as_deref(),
            Some("198.51.100.2")
        );
        assert_eq!(of(&["<script>"]), None);
        assert_eq!(of(&["2001:db8::1"]).as_deref(), Some("2001:db8::1"));
        assert_eq!(of(&[]), None);
        let req = Request::get("/").body(()).unwrap();
        assert_eq!(ClientAddress::None.of(&req), None);
    }
}
