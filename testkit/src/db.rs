//! A fresh database per test, with every migration applied, dropped when the test ends
//! (even when it panics), unless `TESTKIT_KEEP_DB` is set, for looking into it afterwards.

use sqlx::postgres::PgPoolOptions;
use sqlx::{Connection, PgConnection, PgPool};

pub struct TestDb {
    pub name: String,
    pub url: String,
    pub pool: PgPool,
}

/// The server tests use: `TEST_DATABASE_URL` (any database on it; tests create their own),
/// else the machine's local PostgreSQL as `postgres`.
fn server_url() -> String {
    std::env::var("TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

fn with_database(url: &str, database: &str) -> String {
    let (base, _) = url.rsplit_once('/').expect("a database URL has a path");
    format!("{base}/{database}")
}

impl TestDb {
    pub async fn create() -> TestDb {
        let server = server_url();
        let name = format!("elife_test_{}", uuid::Uuid::new_v4().simple());
        let mut admin = PgConnection::connect(&server)
            .await
            .expect("PostgreSQL must be running on this machine (see README)");
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut admin)
            .await
            .expect("create test database");
        admin.close().await.ok();
        let url = with_database(&server, &name);
        let pool = PgPoolOptions::new()
            .max_connections(10)
            .connect(&url)
            .await
            .expect("connect to test database");
        payment_api::MIGRATOR
            .run(&pool)
            .await
            .expect("migrations apply");
        TestDb { name, url, pool }
    }

    /// The database goes away for the service: new connections are refused and every open
    /// one is ended, as when PostgreSQL is down. [`TestDb::come_back`] ends the outage.
    pub async fn go_away(&self) {
        self.allow_connections(false).await;
        let mut admin = PgConnection::connect(&server_url())
            .await
            .expect("admin connection");
        sqlx::query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1")
            .bind(&self.name)
            .execute(&mut admin)
            .await
            .expect("end the database's connections");
        admin.close().await.ok();
    }

    pub async fn come_back(&self) {
        self.allow_connections(true).await;
    }

    async fn allow_connections(&self, allowed: bool) {
        let mut admin = PgConnection::connect(&server_url())
            .await
            .expect("admin connection");
        sqlx::query(&format!(
            "ALTER DATABASE {} ALLOW_CONNECTIONS {allowed}",
            self.name
        ))
        .execute(&mut admin)
        .await
        .expect("change whether the database takes connections");
        admin.close().await.ok();
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if std::env::var_os("TESTKIT_KEEP_DB").is_some() {
            eprintln!("TESTKIT_KEEP_DB: keeping database {}", self.name);
            return;
        }
        let name = self.name.clone();
        let server = server_url();
        // Drop runs outside any async context we can rely on: use a thread of our own.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            if let Ok(runtime) = runtime {
                runtime.block_on(async {
                    if let Ok(mut admin) = PgConnection::connect(&server).await {
                        let _ =
                            sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                                .execute(&mut admin)
                                .await;
                    }
                });
            }
        })
        .join();
    }
}
