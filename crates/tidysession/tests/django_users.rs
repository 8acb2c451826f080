//! `DjangoUsers` over `auth_user` tables as Django creates them on SQLite and MySQL/MariaDB
//! (the PostgreSQL case runs against real Django in `django_companion`).

use sqlx::Connection as _;
use tidysession::auth::{AuthBackend, DjangoUser, DjangoUsers};
use tidysession::django::make_pbkdf2_password;

use crate::util::servers;

/// Rows: alice (active), carol (inactive), both with a 1,000-round PBKDF2 password.
fn rows() -> Vec<(i64, &'static str, String, bool)> {
    vec![
        (
            1,
            "alice",
            make_pbkdf2_password("alice-pw", "saltsaltsalt", 1000),
            true,
        ),
        (
            2,
            "carol",
            make_pbkdf2_password("carol-pw", "saltsaltsalt", 1000),
            false,
        ),
    ]
}

async fn check(users: &DjangoUsers) {
    let alice: DjangoUser = users.user(&1).await.unwrap().expect("alice");
    assert_eq!(
        (alice.id, alice.username.as_str(), alice.is_active),
        (1, "alice", true)
    );
    assert_eq!(users.user(&2).await.unwrap(), None, "carol is inactive");
    assert_eq!(users.user(&3).await.unwrap(), None);
    let logged = users.authenticate("alice", "alice-pw").await.unwrap();
    assert_eq!(logged, Some(alice));
    assert_eq!(users.authenticate("alice", "alice-PW").await.unwrap(), None);
    assert_eq!(users.authenticate("carol", "carol-pw").await.unwrap(), None);
    assert_eq!(users.authenticate("nobody", "x").await.unwrap(), None);
}

#[tokio::test]
async fn sqlite_auth_user() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("django.db");
    let url = format!("sqlite://{}", path.display());
    {
        let options = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(&path)
            .create_if_missing(true);
        let mut conn = sqlx::SqliteConnection::connect_with(&options)
            .await
            .unwrap();
        // Django 5.2's DDL for auth_user on SQLite.
        sqlx::raw_sql(
            r#"CREATE TABLE "auth_user" ("id" integer NOT NULL PRIMARY KEY AUTOINCREMENT,
            "password" varchar(128) NOT NULL, "last_login" datetime NULL,
            "is_superuser" bool NOT NULL, "username" varchar(150) NOT NULL UNIQUE,
            "last_name" varchar(150) NOT NULL, "email" varchar(254) NOT NULL,
            "is_staff" bool NOT NULL, "is_active" bool NOT NULL, "date_joined" datetime NOT NULL,
            "first_name" varchar(150) NOT NULL)"#,
        )
        .execute(&mut conn)
        .await
        .unwrap();
        for (id, name, password, active) in rows() {
            sqlx::query(
                "INSERT INTO auth_user VALUES (?, ?, NULL, 0, ?, '', '', 0, ?, '2025-01-01 00:00:00', '')",
            )
            .bind(id)
            .bind(password)
            .bind(name)
            .bind(active)
            .execute(&mut conn)
            .await
            .unwrap();
        }
    }
    let users = DjangoUsers::connect(&url, servers::django_secrets())
        .await
        .unwrap();
    check(&users).await;
    assert!(users.clone().with_table("no such; table").is_err());
}

#[cfg(feature = "mysql")]
#[tokio::test]
async fn mysql_auth_user() {
    let table = servers::unique_name("auth_user_t");
    let _guard = servers::DropOnExit::mysql_table(&table);
    let url = servers::mysql_url();
    {
        let mut conn = sqlx::MySqlConnection::connect(&url).await.unwrap();
        // Django 5.2's DDL for auth_user on MySQL/MariaDB.
        sqlx::raw_sql(&format!(
            "CREATE TABLE `{table}` (`id` integer AUTO_INCREMENT NOT NULL PRIMARY KEY,
            `password` varchar(128) NOT NULL, `last_login` datetime(6) NULL,
            `is_superuser` bool NOT NULL, `username` varchar(150) NOT NULL UNIQUE,
            `first_name` varchar(150) NOT NULL, `last_name` varchar(150) NOT NULL,
            `email` varchar(254) NOT NULL, `is_staff` bool NOT NULL, `is_active` bool NOT NULL,
            `date_joined` datetime(6) NOT NULL)"
        ))
        .execute(&mut conn)
        .await
        .unwrap();
        for (id, name, password, active) in rows() {
            sqlx::query(&format!(
                "INSERT INTO `{table}` VALUES (?, ?, NULL, 0, ?, '', '', '', 0, ?, NOW(6))"
            ))
            .bind(id)
            .bind(password)
            .bind(name)
            .bind(active)
            .execute(&mut conn)
            .await
            .unwrap();
        }
    }
    let users = DjangoUsers::connect(
        &format!("django+{url}?table={table}"),
        servers::django_secrets(),
    )
    .await
    .unwrap();
    check(&users).await;
}
