//! The cookie jar a simulated browser or user keeps between requests.

use std::collections::BTreeMap;

/// A visitor's cookies: the latest value of each cookie a response set, dropped on removal.
#[derive(Debug, Default, Clone)]
pub(super) struct Jar(pub(super) BTreeMap<String, String>);

impl Jar {
    pub(super) fn header(&self) -> Option<String> {
        (!self.0.is_empty()).then(|| {
            self.0
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join("; ")
        })
    }

    pub(super) fn take(&mut self, set_cookie: &str) {
        let mut parts = set_cookie.split(';').map(str::trim);
        let Some((name, value)) = parts.next().and_then(|p| p.split_once('=')) else {
            return;
        };
        let removal = value.is_empty()
            || parts.any(|a| {
                a.split_once('=').is_some_and(|(k, v)| {
                    k.eq_ignore_ascii_case("max-age") && v.trim().starts_with(['0', '-'])
                })
            });
        if removal {
            self.0.remove(name);
        } else {
            self.0.insert(name.to_owned(), value.to_owned());
        }
    }
}
