//! `tidysession doctor`: a store's statistics turned into findings and advice, each naming
//! the figure it rests on.

use tidysession::store::redact_url;
use tidysession::store::stats::{Payloads, Stats};

use super::stats::{fig, share};

/// Arguments of `doctor`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[arg(long, env = "TIDYSESSION_STORE", help = super::store_help())]
    store: String,
    /// The most records read for the estimated figures.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    sample: u32,
}

/// One finding: what is wrong, the figure that shows it, and what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Finding {
    pub(crate) title: String,
    pub(crate) figure: String,
    pub(crate) advice: String,
}

pub(crate) async fn run(args: Args) -> anyhow::Result<()> {
    let stats = super::stats::gather(&args.store, args.sample).await?;
    print!("{}", report(&stats, &redact_url(&args.store)));
    Ok(())
}

/// The findings in words.
pub(crate) fn report(stats: &Stats, url: &str) -> String {
    let mut out = format!(
        "{}: {} records, {} live, {} expired (sample: {} records, {})\n",
        stats.store,
        fig(stats.total),
        fig(stats.live),
        fig(stats.expired),
        stats.sample.size,
        stats.sample.method
    );
    if stats.payloads == Payloads::Unverified {
        out.push_str(
            "note: payloads were read without DJANGO_SECRET_KEY, unverified; set it to check them\n",
        );
    }
    let found = findings(stats, url);
    if found.is_empty() {
        out.push_str("\nNo findings: the table looks healthy.\n");
    }
    for (i, f) in found.iter().enumerate() {
        out.push_str(&format!(
            "\n{}. {}\n   figure: {}\n   advice: {}\n",
            i + 1,
            f.title,
            f.figure,
            f.advice
        ));
    }
    out
}

/// The findings `stats` supports, most urgent first.
pub(crate) fn findings(s: &Stats, url: &str) -> Vec<Finding> {
    let mut out = Vec::new();
    let total = s.total.value;
    let live = s.live.value;
    let native = s.payloads == Payloads::Plain;
    if let Some(ix) = s.expiry_index.as_ref().filter(|ix| !ix.present) {
        out.push(Finding {
            title: format!(
                "No index on the expiry column {}.{}: every cleanup (tidysession clear, the \
                 reaper, Django's clearsessions) scans the whole table",
                ix.table, ix.column
            ),
            figure: format!(
                "expiry index = missing (checked in the database catalog); {total} records"
            ),
            advice: format!("create it: {}", ix.create_statement),
        });
    }
    if !s.removes_expired_itself && total > 0 && s.expired.value * 2 > total {
        out.push(Finding {
            title: "Most records are expired: nothing is cleaning this table up".into(),
            figure: format!("expired = {}", share(s.expired, total)),
            advice: format!(
                "run `tidysession clear --store {url}` now (batched, safe on a live site), then \
                 keep it clean: run the library's Reaper in the app, or `tidysession clear` \
                 from cron every few minutes"
            ),
        });
    }
    if live > 0 && s.test_cookie_only.value * 2 > live {
        out.push(Finding {
            title: "Most live records hold nothing but a test cookie: bots (or visitors without \
                    cookies) hitting the login page, each leaving a row"
                .into(),
            figure: format!(
                "test cookie only = {} of live",
                share(s.test_cookie_only, live)
            ),
            advice: "keep anonymous state out of the table: with tidysession's default \
                     Anonymous::InCookie policy the test cookie and all anonymous data live in \
                     an encrypted cookie and cost no row (in Django, call set_test_cookie() \
                     only on POST, or drop it)"
                .into(),
        });
    }
    if live > 0 && s.empty.value * 10 > live {
        out.push(Finding {
            title: "Many live records are empty: a stale or forged cookie on a site that saves \
                    every request gets a fresh, empty row per request"
                .into(),
            figure: format!("empty = {} of live", share(s.empty, live)),
            advice: "turn off save-every-request (Django: SESSION_SAVE_EVERY_REQUEST = False), or \
                     serve these routes with tidysession, which never stores an empty record \
                     and answers a bad cookie with a removal cookie instead of a row"
                .into(),
        });
    }
    if native && live > 0 && s.anonymous.value > 0 {
        out.push(Finding {
            title: "Anonymous sessions are stored server-side".into(),
            figure: format!("anonymous = {} of live", share(s.anonymous, live)),
            advice: "the cookie tier (SessionConfig with Anonymous::InCookie, the default) keeps \
                     visitors who are not logged in in an encrypted cookie: these rows would not \
                     exist"
                .into(),
        });
    }
    if live > 0 && s.unreadable.value > 0 {
        let why = match s.payloads {
            Payloads::Verified => {
                "rows signed with a secret not given (add the old one to \
                 DJANGO_SECRET_KEY_FALLBACKS), or corrupt"
            }
            _ => "corrupt rows, or rows another program wrote",
        };
        out.push(Finding {
            title: "Some live records cannot be read; they load as empty sessions".into(),
            figure: format!("unreadable = {} of live", share(s.unreadable, live)),
            advice: format!("look for {why}; they go away when they expire and are cleared"),
        });
    }
    if let Some((user, n)) = s.top_users.first().filter(|(_, n)| n.value >= 50) {
        out.push(Finding {
            title: format!("User {user} has many live sessions"),
            figure: format!("top user = {user} with {} sessions", fig(*n)),
            advice: "a script logging in without keeping its cookie, or a shared account: list \
                     and revoke them through the user index, and cap sessions per user"
                .into(),
        });
    }
    out
}
