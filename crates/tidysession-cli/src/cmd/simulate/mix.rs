//! The kinds of traffic and the mix of them that `--mix` gives.

/// The kinds of traffic, in the order of the mix and the tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Traffic {
    Health,
    Bots,
    Browsers,
    Users,
    Stale,
}

impl Traffic {
    pub(super) const ALL: [Traffic; 5] = [
        Traffic::Health,
        Traffic::Bots,
        Traffic::Browsers,
        Traffic::Users,
        Traffic::Stale,
    ];

    pub(super) fn name(self) -> &'static str {
        match self {
            Traffic::Health => "health",
            Traffic::Bots => "bots",
            Traffic::Browsers => "browsers",
            Traffic::Users => "users",
            Traffic::Stale => "stale",
        }
    }

    pub(super) fn index(self) -> usize {
        self as usize
    }
}

/// Percent of requests per kind of traffic; adds up to 100.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Mix(pub(super) [u32; 5]);

impl std::str::FromStr for Mix {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let mut shares = [None; 5];
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, value) = part
                .split_once('=')
                .ok_or_else(|| format!("{part:?} is not NAME=PERCENT"))?;
            let name = name.trim();
            let traffic = Traffic::ALL
                .into_iter()
                .find(|t| t.name() == name)
                .ok_or_else(|| {
                    format!(
                        "unknown traffic {name:?}: expected health, bots, browsers, users or stale"
                    )
                })?;
            let value: u32 = value
                .trim()
                .parse()
                .ok()
                .filter(|v| *v <= 100)
                .ok_or_else(|| format!("{part:?}: the share is a whole percent from 0 to 100"))?;
            let slot = &mut shares[traffic.index()];
            if slot.is_some() {
                return Err(format!("{name:?} is given twice"));
            }
            *slot = Some(value);
        }
        let shares = shares.map(|s| s.unwrap_or(0));
        let sum: u32 = shares.iter().sum();
        if sum != 100 {
            return Err(format!("the shares add up to {sum}, not 100"));
        }
        Ok(Mix(shares))
    }
}
