//! The Django store's statements, with the table name and each database's placeholders and
//! types filled in once.

#[cfg(feature = "mysql")]
use crate::store::sql::sweep::MySqlSweep;
#[cfg(feature = "postgres")]
use crate::store::sql::sweep::PgSweep;
use crate::store::sql::Dialect;

use super::DEFAULT_TABLE;

/// The statements, with the table name and the database's placeholders filled in.
#[derive(Debug)]
pub(super) struct Statements {
    pub(super) dialect: Dialect,
    pub(super) load: String,
    /// SQLite: a write to the live row, so the transaction holds the write lock before it
    /// reads.
    pub(super) pre_lock: Option<String>,
    pub(super) lock: String,
    pub(super) lock_other: String,
    pub(super) insert: String,
    pub(super) write: String,
    pub(super) set_expiry: String,
    pub(super) delete: String,
    pub(super) delete_expired_under: String,
    pub(super) delete_expired: String,
    /// MySQL: the expiry a batch of cleanup ends at, read before it.
    pub(super) expired_edge: Option<String>,
    pub(super) count: String,
    pub(super) create_table: Vec<String>,
    /// A random key range for statistics: from a key on, then before it.
    pub(super) sample_from: String,
    pub(super) sample_before: String,
    pub(super) sample_all: String,
    /// Counts indexes whose first column is `expire_date`, on the table named by the one
    /// parameter.
    pub(super) index_check: String,
    /// The table as the catalog query takes it.
    pub(super) index_target: String,
    /// The statement that creates the expiry index.
    pub(super) index_create: String,
    #[cfg(feature = "postgres")]
    pub(super) pg_sweep: PgSweep,
    #[cfg(feature = "mysql")]
    pub(super) my_sweep: MySqlSweep,
}

impl Statements {
    pub(super) fn new(dialect: Dialect, table: &str) -> Self {
        let t = match dialect {
            Dialect::MySql => format!("`{table}`"),
            _ => format!("\"{table}\""),
        };
        let (ts, exp, for_update) = match dialect {
            Dialect::Postgres => (
                "CAST(? AS timestamptz)",
                "to_char(expire_date AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US')",
                " FOR UPDATE",
            ),
            Dialect::MySql => (
                "CAST(? AS DATETIME(6))",
                "CAST(expire_date AS CHAR)",
                " FOR UPDATE",
            ),
            Dialect::Sqlite => ("?", "expire_date", ""),
        };
        let index = match table {
            // Django's own name for it, so Django's migrations recognise it.
            DEFAULT_TABLE => "django_session_expire_date_a5c62663".to_owned(),
            _ => format!("{table}_expire_date"),
        };
        let q = |sql: String| match dialect {
            Dialect::Postgres => numbered(&sql),
            _ => sql,
        };
        let load = format!(
            "SELECT session_data, {exp} FROM {t} WHERE session_key = ? AND expire_date > {ts}"
        );
        // Expired rows from the cursor to now, each deleted row's expiry returned where the
        // database can (the latest is the next batch's cursor). PostgreSQL: SKIP LOCKED, so
        // concurrent cleaners take disjoint batches instead of queueing.
        let expired = format!("expire_date >= {ts} AND expire_date <= {ts}");
        let delete_expired = match dialect {
            Dialect::Postgres => format!(
                "DELETE FROM {t} WHERE session_key IN (
                    SELECT session_key FROM {t} WHERE {expired}
                    ORDER BY expire_date LIMIT ? FOR UPDATE SKIP LOCKED)
                 RETURNING {exp}"
            ),
            Dialect::MySql => {
                format!("DELETE FROM {t} WHERE {expired} ORDER BY expire_date LIMIT ?")
            }
            Dialect::Sqlite => format!(
                "DELETE FROM {t} WHERE session_key IN (
                    SELECT session_key FROM {t} WHERE {expired}
                    ORDER BY expire_date LIMIT ?)
                 RETURNING {exp}"
            ),
        };
        // MySQL has no DELETE … RETURNING: the batch's last expiry is read first, through the
        // index alone, and the batch deletes up to it.
        let expired_edge = (dialect == Dialect::MySql).then(|| {
            format!("SELECT {exp} FROM {t} WHERE {expired} ORDER BY expire_date LIMIT 1 OFFSET ?")
        });
        let create_table = match dialect {
            Dialect::Postgres => vec![
                format!(
                    "CREATE TABLE IF NOT EXISTS {t} (\"session_key\" varchar(40) NOT NULL PRIMARY KEY, \
                     \"session_data\" text NOT NULL, \"expire_date\" timestamp with time zone NOT NULL)"
                ),
                format!("CREATE INDEX IF NOT EXISTS \"{index}\" ON {t} (\"expire_date\")"),
            ],
            Dialect::MySql => vec![format!(
                "CREATE TABLE IF NOT EXISTS {t} (`session_key` varchar(40) NOT NULL PRIMARY KEY, \
                 `session_data` longtext NOT NULL, `expire_date` datetime(6) NOT NULL, \
                 KEY `{index}` (`expire_date`))"
            )],
            Dialect::Sqlite => vec![
                format!(
                    "CREATE TABLE IF NOT EXISTS {t} (\"session_key\" varchar(40) NOT NULL PRIMARY KEY, \
                     \"session_data\" text NOT NULL, \"expire_date\" datetime NOT NULL)"
                ),
                format!("CREATE INDEX IF NOT EXISTS \"{index}\" ON {t} (\"expire_date\")"),
            ],
        };
        let (index_check, index_target, index_create) = match dialect {
            Dialect::Postgres => (
                "SELECT COUNT(*) FROM pg_index i JOIN pg_attribute a \
                 ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0] \
                 WHERE i.indrelid = to_regclass($1) AND a.attname = 'expire_date'"
                    .to_owned(),
                t.clone(),
                format!("CREATE INDEX CONCURRENTLY \"{index}\" ON {t} (\"expire_date\");"),
            ),
            Dialect::MySql => (
                "SELECT COUNT(*) FROM information_schema.statistics \
                 WHERE table_schema = DATABASE() AND table_name = ? \
                 AND column_name = 'expire_date' AND seq_in_index = 1"
                    .to_owned(),
                table.to_owned(),
                format!(
                    "CREATE INDEX `{index}` ON {t} (`expire_date`) ALGORITHM=INPLACE LOCK=NONE;"
                ),
            ),
            Dialect::Sqlite => (
                "SELECT COUNT(*) FROM sqlite_master m, pragma_index_info(m.name) i \
                 WHERE m.type = 'index' AND m.tbl_name = ? AND i.seqno = 0 \
                 AND i.name = 'expire_date'"
                    .to_owned(),
                table.to_owned(),
                format!("CREATE INDEX \"{index}\" ON {t} (\"expire_date\");"),
            ),
        };
        Self {
            #[cfg(feature = "postgres")]
            pg_sweep: PgSweep::new(&t, "expire_date <= CAST($3 AS timestamptz)"),
            #[cfg(feature = "mysql")]
            my_sweep: MySqlSweep::new(
                &t,
                "session_key",
                "expire_date <= CAST(? AS DATETIME(6))",
                true,
            ),
            dialect,
            sample_from: q(format!(
                "SELECT session_data, {exp} FROM {t} WHERE session_key >= ? ORDER BY session_key LIMIT ?"
            )),
            sample_before: q(format!(
                "SELECT session_data, {exp} FROM {t} WHERE session_key < ? ORDER BY session_key LIMIT ?"
            )),
            sample_all: q(format!("SELECT session_data, {exp} FROM {t} LIMIT ?")),
            index_check,
            index_target,
            index_create,
            pre_lock: (dialect == Dialect::Sqlite).then(|| {
                format!(
                    "UPDATE {t} SET expire_date = expire_date WHERE session_key = ? AND expire_date > ?"
                )
            }),
            lock: q(format!("{load}{for_update}")),
            load: q(load),
            lock_other: q(format!(
                "SELECT {exp} FROM {t} WHERE session_key = ?{for_update}"
            )),
            insert: q(format!(
                "INSERT INTO {t} (session_key, session_data, expire_date) VALUES (?, ?, {ts})"
            )),
            write: q(format!(
                "UPDATE {t} SET session_data = ?, expire_date = {ts} WHERE session_key = ?"
            )),
            set_expiry: q(format!("UPDATE {t} SET expire_date = {ts} WHERE session_key = ?")),
            delete: q(format!("DELETE FROM {t} WHERE session_key = ?")),
            delete_expired_under: q(format!(
                "DELETE FROM {t} WHERE session_key = ? AND expire_date <= {ts}"
            )),
            delete_expired: q(delete_expired),
            expired_edge,
            count: q(format!(
                "SELECT COUNT(*), COUNT(CASE WHEN expire_date <= {ts} THEN 1 END) FROM {t}"
            )),
            create_table,
        }
    }
}

/// `?` placeholders as PostgreSQL's `$1`, `$2`, … (the statements hold no `?` otherwise).
fn numbered(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 8);
    let mut n = 0;
    for c in sql.chars() {
        if c == '?' {
            n += 1;
            out.push_str(&format!("${n}"));
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_numbered_for_postgres() {
        assert_eq!(
            numbered("a = ? AND b > CAST(? AS x)"),
            "a = $1 AND b > CAST($2 AS x)"
        );
    }
}
