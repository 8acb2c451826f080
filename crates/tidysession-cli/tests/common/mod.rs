//! What the binary's test files share: running `tidysession`, unique names, and the
//! addresses of the test servers (`scripts/services.sh` starts them), as in the library's tests.

#![allow(dead_code)] // each test file uses its own subset

use std::process::Command;

use tidysession::store::SessionId;

pub(crate) fn tidysession() -> Command {
    Command::new(env!("CARGO_BIN_EXE_tidysession"))
}

/// Runs the binary without Django's secret unless `secret` is given: success, stdout, stderr.
pub(crate) fn run_with(args: &[&str], secret: Option<&str>) -> (bool, String, String) {
    let mut cmd = tidysession();
    cmd.args(args).env_remove("DJANGO_SECRET_KEY");
    if let Some(secret) = secret {
        cmd.env("DJANGO_SECRET_KEY", secret);
    }
    let out = cmd.output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

pub(crate) fn run(args: &[&str]) -> (bool, String, String) {
    run_with(args, None)
}

/// A random name for a per-test schema, table or key prefix.
pub(crate) fn unique_name(prefix: &str) -> String {
    let key = SessionId::generate().unwrap().storage_key();
    format!("{prefix}_{}", &key.to_hex()[..16])
}

pub(crate) fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

pub(crate) fn postgres_url() -> String {
    env_or(
        "TIDYSESSION_TEST_POSTGRES_URL",
        "postgres://root@127.0.0.1/test",
    )
}

pub(crate) fn mysql_url() -> String {
    env_or("TIDYSESSION_TEST_MYSQL_URL", "mysql://root@127.0.0.1/test")
}

pub(crate) fn redis_url() -> String {
    env_or("TIDYSESSION_TEST_REDIS_URL", "redis://127.0.0.1:6379")
}

/// `url` with one more query parameter.
pub(crate) fn with_param(url: &str, param: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}{param}")
}
