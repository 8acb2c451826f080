//! What each policy did and left behind, and the table `simulate` prints.

use std::fmt::Write as _;
use std::time::Duration;

use tidysession::tooling::OpCounts;

use super::mix::Traffic;
use super::plan::Plan;
use super::policy::Policy;

/// What one policy did and left behind.
#[derive(Debug, Clone)]
pub(super) struct Outcome {
    pub(super) policy: Policy,
    /// Every store operation.
    pub(super) counts: OpCounts,
    /// Store operations per kind of traffic.
    pub(super) by_traffic: [OpCounts; 5],
    /// Live records at the end.
    pub(super) rows: u64,
    /// Bytes of session data at rest, where the store can tell cheaply.
    pub(super) bytes: Option<u64>,
    /// (requests sent, live records) along the way.
    pub(super) samples: Vec<(u64, u64)>,
    pub(super) elapsed: Duration,
}

/// Every policy's outcome over one plan.
#[derive(Debug, Clone)]
pub(super) struct Report {
    pub(super) plan: Plan,
    pub(super) store: String,
    pub(super) outcomes: Vec<Outcome>,
}

impl Report {
    /// The plain table `simulate` prints.
    pub(super) fn table(&self) -> String {
        let p = &self.plan;
        let r = |t: Traffic| p.requests[t.index()];
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{} requests per policy (seed {}), store: {}",
            p.steps.len(),
            p.seed,
            self.store
        );
        let _ = writeln!(
            out,
            "traffic: {} health checks; {} cookie-less bot requests ({} cart adds); \
             {} browser requests from {} visitors ({} added to a cart); {} requests from {} users \
             ({} logged in); {} stale or forged cookies ({} of them session ids)",
            r(Traffic::Health),
            r(Traffic::Bots),
            p.bot_cart_adds,
            r(Traffic::Browsers),
            p.browser_pool,
            p.browsers_with_cart,
            r(Traffic::Users),
            p.user_pool,
            p.logged_in,
            r(Traffic::Stale),
            p.stale_ids,
        );
        let _ = writeln!(out);
        let mut rows: Vec<(String, Vec<String>)> = Vec::new();
        let mut row = |label: &str, f: &dyn Fn(&Outcome) -> String| {
            rows.push((label.to_owned(), self.outcomes.iter().map(f).collect()));
        };
        row("", &|o| o.policy.title().to_owned());
        row("rows at the end", &|o| o.rows.to_string());
        row("creates", &|o| o.counts.creates.to_string());
        row("updates", &|o| o.counts.updates.to_string());
        row("touches", &|o| o.counts.touches.to_string());
        row("renames", &|o| o.counts.renames.to_string());
        row("deletes", &|o| o.counts.deletes.to_string());
        row("loads", &|o| o.counts.loads.to_string());
        row("bytes at rest", &|o| {
            o.bytes.map_or_else(|| "n/a".to_owned(), |b| b.to_string())
        });
        row("store ops: health", &|o| {
            o.by_traffic[0].total().to_string()
        });
        row("store ops: bots", &|o| o.by_traffic[1].total().to_string());
        row("store ops: browsers", &|o| {
            o.by_traffic[2].total().to_string()
        });
        row("store ops: users", &|o| o.by_traffic[3].total().to_string());
        row("store ops: stale", &|o| o.by_traffic[4].total().to_string());
        row("seconds", &|o| format!("{:.1}", o.elapsed.as_secs_f64()));
        let label_width = rows.iter().map(|(l, _)| l.len()).max().unwrap_or(0);
        let widths: Vec<usize> = (0..self.outcomes.len())
            .map(|i| rows.iter().map(|(_, v)| v[i].len()).max().unwrap_or(0))
            .collect();
        for (label, values) in &rows {
            let _ = write!(out, "{label:<label_width$}");
            for (v, w) in values.iter().zip(&widths) {
                let _ = write!(out, "  {v:>w$}");
            }
            let _ = writeln!(out);
        }
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "logged-in users: {}; anonymous writers: {} (bot cart adds {} + browsers with a cart {})",
            p.logged_in,
            p.bot_cart_adds + p.browsers_with_cart,
            p.bot_cart_adds,
            p.browsers_with_cart
        );
        out
    }
}
