//! The traffic plan: every request each policy runs, drawn from the seed alone, and the
//! figures the traffic implies for the store.

use super::mix::{Mix, Traffic};
use super::rng::Prng;

const BASE64URL: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
const ITEMS: &[&str] = &["book", "pen", "mug", "lamp", "shirt", "socks", "tea", "map"];
/// Bots and stale cookies go to these; `/cart/add` is the bots' only write.
const BOT_PATHS: &[&str] = &["/", "/whoami", "/login", "/cart/add"];
const READ_PATHS: &[&str] = &["/", "/whoami", "/cart"];
/// Requests per pooled visitor and per user, on average: pools scale with the traffic.
const REQUESTS_PER_VISITOR: usize = 5;
const REQUESTS_PER_USER: usize = 10;
/// Share of browsers who shop, and how often a shopper adds to the cart.
const SHOPPERS_PERCENT: u64 = 30;
const ADD_PERCENT: u64 = 50;
/// Share of a logged-in user's requests that write.
const USER_WRITE_PERCENT: u64 = 30;
/// The demo's cart limit: the plan never asks for more, so every request succeeds.
const MAX_CART: usize = 50;

/// Who sends a request, and so which cookies go with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Sender {
    /// No cookies, and none kept.
    Nobody,
    /// This one cookie header, nothing kept.
    Forged(String),
    /// The cookie jar with this index (browsers first, then users).
    Jar(usize),
}

/// One planned request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Step {
    pub(super) traffic: Traffic,
    pub(super) sender: Sender,
    pub(super) method: &'static str,
    pub(super) path: String,
    pub(super) form: Option<String>,
    /// A login: the response must log this jar in.
    pub(super) login: bool,
}

/// What every policy runs, and what the traffic implies for the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Plan {
    pub(super) steps: Vec<Step>,
    pub(super) seed: u64,
    pub(super) browser_pool: usize,
    pub(super) user_pool: usize,
    /// Requests per kind of traffic.
    pub(super) requests: [u64; 5],
    /// Cart adds by bots: each a new anonymous writer.
    pub(super) bot_cart_adds: u64,
    /// Pooled browsers who added to their cart at least once.
    pub(super) browsers_with_cart: u64,
    /// Users who logged in (each once).
    pub(super) logged_in: u64,
    /// Stale cookies in the form of a session id: no policy can tell them from a live
    /// session without asking the store.
    pub(super) stale_ids: u64,
}

impl Plan {
    pub(super) fn new(requests: u32, mix: &Mix, seed: u64) -> Self {
        let mut rng = Prng(seed);
        let pool = |share: u32, per: usize| {
            (requests as usize * share as usize / 100)
                .div_ceil(per)
                .max(1)
        };
        let browser_pool = pool(mix.0[Traffic::Browsers.index()], REQUESTS_PER_VISITOR);
        let user_pool = pool(mix.0[Traffic::Users.index()], REQUESTS_PER_USER);
        let shopper: Vec<bool> = (0..browser_pool)
            .map(|_| rng.chance(SHOPPERS_PERCENT))
            .collect();
        let mut carts = vec![0usize; browser_pool + user_pool];
        let mut logged_in = vec![false; user_pool];
        let mut plan = Plan {
            steps: Vec::with_capacity(requests as usize),
            seed,
            browser_pool,
            user_pool,
            requests: [0; 5],
            bot_cart_adds: 0,
            browsers_with_cart: 0,
            logged_in: 0,
            stale_ids: 0,
        };
        for _ in 0..requests {
            let mut roll = rng.below(100) as u32;
            let traffic = Traffic::ALL
                .into_iter()
                .find(|t| {
                    let share = mix.0[t.index()];
                    let hit = roll < share;
                    roll = roll.saturating_sub(share);
                    hit
                })
                .unwrap_or(Traffic::Health);
            plan.requests[traffic.index()] += 1;
            let item = ITEMS[rng.below(ITEMS.len())];
            let get = |sender, path: String| Step {
                traffic,
                sender,
                method: "GET",
                path,
                form: None,
                login: false,
            };
            let post = |sender, path: &str, form: String| Step {
                method: "POST",
                path: path.to_owned(),
                form: Some(form),
                ..get(sender, String::new())
            };
            let step = match traffic {
                Traffic::Health => get(Sender::Nobody, "/health".to_owned()),
                Traffic::Bots => match BOT_PATHS[rng.below(BOT_PATHS.len())] {
                    "/cart/add" => {
                        plan.bot_cart_adds += 1;
                        get(Sender::Nobody, format!("/cart/add?item={item}"))
                    }
                    path => get(Sender::Nobody, path.to_owned()),
                },
                Traffic::Browsers => {
                    let v = rng.below(browser_pool);
                    let adds = shopper[v] && rng.chance(ADD_PERCENT) && carts[v] < MAX_CART;
                    let read = READ_PATHS[rng.below(READ_PATHS.len())];
                    if adds {
                        if carts[v] == 0 {
                            plan.browsers_with_cart += 1;
                        }
                        carts[v] += 1;
                        // Links and forms alike.
                        if rng.chance(50) {
                            get(Sender::Jar(v), format!("/cart/add?item={item}"))
                        } else {
                            post(Sender::Jar(v), "/cart/add", format!("item={item}"))
                        }
                    } else {
                        get(Sender::Jar(v), read.to_owned())
                    }
                }
                Traffic::Users => {
                    let u = rng.below(user_pool);
                    let jar = browser_pool + u;
                    let writes = rng.chance(USER_WRITE_PERCENT) && carts[jar] < MAX_CART;
                    let read = ["/", "/whoami", "/cart", "/account/sessions"][rng.below(4)];
                    if !logged_in[u] {
                        logged_in[u] = true;
                        plan.logged_in += 1;
                        let form = format!("username=user{}&password=password", u + 1);
                        Step {
                            login: true,
                            ..post(Sender::Jar(jar), "/login", form)
                        }
                    } else if writes {
                        carts[jar] += 1;
                        post(Sender::Jar(jar), "/cart/add", format!("item={item}"))
                    } else {
                        get(Sender::Jar(jar), read.to_owned())
                    }
                }
                Traffic::Stale => {
                    let value = match rng.below(3) {
                        // A session id that was never issued, or is long gone.
                        0 => {
                            plan.stale_ids += 1;
                            rng.text(BASE64URL, 32)
                        }
                        // Not even an id.
                        1 => {
                            let len = 1 + rng.below(40);
                            format!("!{}", rng.text(BASE64URL, len))
                        }
                        // The form of a sealed cookie, under no key we hold.
                        _ => format!("1.{}", rng.text(BASE64URL, 90)),
                    };
                    let path = READ_PATHS[rng.below(READ_PATHS.len())];
                    get(Sender::Forged(format!("id={value}")), path.to_owned())
                }
            };
            plan.steps.push(step);
        }
        plan
    }

    pub(super) fn jars(&self) -> usize {
        self.browser_pool + self.user_pool
    }
}
