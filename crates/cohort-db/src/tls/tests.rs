//! Reading `sslmode` and `sslrootcert` from both URL forms, and TLS against a real server (a
//! throwaway cluster with `ssl=on`, [`server`]): what each mode accepts and refuses, and how a
//! refusal reads.

mod server;

use std::path::PathBuf;

use tokio_postgres::config::{Host, SslMode as PgSslMode};

use super::{RootCert, Split, SslMode, split_tls_settings};
use crate::{DatabaseUrl, DbError, PoolOptions, connect, connect_dedicated};

fn parse(url: &str) -> DatabaseUrl {
    DatabaseUrl::parse(url).unwrap_or_else(|e| panic!("{url}: {e}"))
}

fn parse_err(url: &str) -> String {
    match DatabaseUrl::parse(url) {
        Ok(parsed) => panic!("{url} parsed as {parsed:?}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn the_url_form_gives_up_sslmode_and_sslrootcert_and_keeps_the_rest() {
    let url = parse(
        "postgres://app:p%40ss@db.internal:6432/cohort?sslmode=verify-full&application_name=cfg\
         &sslrootcert=%2Fetc%2Fcohort%2Fca.pem",
    );
    assert_eq!(url.ssl_mode(), SslMode::VerifyFull);
    assert_eq!(url.root_cert(), Some(&RootCert::File(PathBuf::from("/etc/cohort/ca.pem"))));
    let config = url.config();
    assert_eq!(config.get_ssl_mode(), PgSslMode::Require);
    assert_eq!(config.get_hosts(), [Host::Tcp("db.internal".to_owned())]);
    assert_eq!(config.get_ports(), [6432]);
    assert_eq!(config.get_user(), Some("app"));
    assert_eq!(config.get_password(), Some(&b"p@ss"[..]));
    assert_eq!(config.get_dbname(), Some("cohort"));
    assert_eq!(config.get_application_name(), Some("cfg"));

    // What tokio-postgres is handed: our two parameters gone, the rest as written.
    let split = |url: &str| split_tls_settings(url).unwrap();
    assert_eq!(
        split("postgresql://h/db?sslmode=require&options=-c%20a%3Db&sslrootcert=x.pem"),
        Split {
            rest: "postgresql://h/db?options=-c%20a%3Db".to_owned(),
            sslmode: Some("require".to_owned()),
            sslrootcert: Some("x.pem".to_owned()),
        }
    );
    assert_eq!(split("postgres://h/db?sslmode=disable").rest, "postgres://h/db");
    assert_eq!(split("postgres://h/db").rest, "postgres://h/db");
    // A `?` in the password is not the query (tokio-postgres reads credentials up to the `@`).
    let tricky = split("postgres://u:a?sslmode=disable@h/db?sslmode=require");
    assert_eq!(
        (tricky.rest.as_str(), tricky.sslmode.as_deref()),
        ("postgres://u:a?sslmode=disable@h/db", Some("require"))
    );
    // The last of a repeated parameter wins, as in libpq.
    assert_eq!(split("postgres://h?sslmode=disable&sslmode=verify-ca").sslmode.as_deref(), Some("verify-ca"));
}

#[test]
fn the_keyword_form_gives_up_sslmode_and_sslrootcert_and_keeps_the_rest() {
    let url = parse(
        "host=db.internal port=6432 sslmode = 'verify-ca' user=app sslrootcert='/etc/my ca\\'s.pem' dbname=cohort",
    );
    assert_eq!(url.ssl_mode(), SslMode::VerifyCa);
    assert_eq!(url.root_cert(), Some(&RootCert::File(PathBuf::from("/etc/my ca's.pem"))));
    let config = url.config();
    assert_eq!(config.get_ssl_mode(), PgSslMode::Require);
    assert_eq!(config.get_hosts(), [Host::Tcp("db.internal".to_owned())]);
    assert_eq!(config.get_ports(), [6432]);
    assert_eq!((config.get_user(), config.get_dbname()), (Some("app"), Some("cohort")));

    let split = split_tls_settings("host=h  sslmode=require\tsslrootcert=/a\\ b.pem dbname=x").unwrap();
    assert_eq!(split.rest, "host=h  \t dbname=x");
    assert_eq!((split.sslmode.as_deref(), split.sslrootcert.as_deref()), (Some("require"), Some("/a b.pem")));
    let plain = parse("host=127.0.0.1 user=postgres sslmode=disable");
    assert_eq!((plain.ssl_mode(), plain.config().get_ssl_mode()), (SslMode::Disable, PgSslMode::Disable));
}

#[test]
fn libpq_rules_decide_the_mode_in_force() {
    let mode = |url: &str| parse(url).ssl_mode();
    assert_eq!(mode("postgres://h/db"), SslMode::Prefer, "prefer is the default");
    assert_eq!(mode("host=h"), SslMode::Prefer);
    assert_eq!(mode("postgres://h/db?sslmode=allow"), SslMode::Prefer);
    assert_eq!(parse("postgres://h/db?sslmode=allow").config().get_ssl_mode(), PgSslMode::Prefer);
    assert_eq!(mode("postgres://h/db?sslmode=require"), SslMode::Require);
    assert_eq!(mode("postgres://h/db?sslmode=require&sslrootcert=/ca.pem"), SslMode::VerifyCa);
    assert_eq!(mode("postgres://h/db?sslrootcert=system"), SslMode::VerifyFull);
    assert_eq!(mode("postgres://h/db?sslmode=verify-full&sslrootcert=system"), SslMode::VerifyFull);
    assert_eq!(mode("postgres://h/db?sslmode=prefer&sslrootcert="), SslMode::Prefer, "empty: unset");

    assert_eq!(
        parse_err("postgres://h/db?sslmode=strict"),
        "invalid database url: sslmode \"strict\" is not one of disable, allow, prefer, require, verify-ca, verify-full"
    );
    assert!(
        parse_err("host=h sslmode=VERIFY-FULL").contains("sslmode \"VERIFY-FULL\""),
        "case matters, as in libpq"
    );
    let system = parse_err("postgres://h/db?sslmode=require&sslrootcert=system");
    assert!(
        system.contains("sslmode require may not be used with sslrootcert=system (use verify-full)"),
        "{system}"
    );
    let unanchored = parse_err("postgres://h/db?sslmode=verify-full");
    assert!(unanchored.contains("sslmode verify-full needs sslrootcert"), "{unanchored}");
    assert!(parse_err("host=h sslmode=verify-ca").contains("sslmode verify-ca needs sslrootcert"));
    // What tokio-postgres refuses is reported as before.
    assert!(matches!(DatabaseUrl::parse("postgres://h/db?sslcert=client.pem"), Err(DbError::Url(_))));
    assert!(matches!(DatabaseUrl::parse("host=h bogus"), Err(DbError::Url(_))));
}

#[test]
fn servers_are_named_as_tokio_postgres_pairs_hosts_addresses_and_ports() {
    let named =
        |url: &str| super::targets(parse(url).config()).iter().map(ToString::to_string).collect::<Vec<_>>();
    assert_eq!(named("postgres://a,b:6433/db"), ["a:5432", "b:6433"]);
    assert_eq!(named("host=a,b port=7000"), ["a:7000", "b:7000"]);
    assert_eq!(named("host=db.internal hostaddr=10.0.0.5 port=6432"), ["db.internal:6432 at 10.0.0.5"]);
    assert_eq!(named("hostaddr=::1"), ["[::1]:5432"]);
    assert_eq!(named("postgres://[::1]:6432/db"), ["[::1]:6432"]);
    assert_eq!(named("host=/run/postgresql"), ["/run/postgresql (port 5432)"]);
    // No TLS over a Unix socket, whatever sslmode says (as libpq).
    let socket = parse("host=/run/postgresql sslmode=require");
    assert_eq!((socket.ssl_mode(), socket.config().get_ssl_mode()), (SslMode::Require, PgSslMode::Disable));
}

#[test]
fn an_unusable_sslrootcert_is_named_with_the_reason() {
    let url = parse("postgres://h/db?sslmode=verify-full&sslrootcert=/nonexistent/ca.pem");
    assert_eq!(url.tls().unwrap_err().to_string(), "sslrootcert /nonexistent/ca.pem: no such file");
    // The pool reads it when it is built, not at its first connection.
    let pool =
        connect("postgres://h/db?sslmode=verify-ca&sslrootcert=/nonexistent/ca.pem", &PoolOptions::default());
    assert!(matches!(pool, Err(DbError::RootCert { .. })), "{pool:?}");

    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "not a certificate\n").unwrap();
    let err =
        parse(&format!("host=h sslmode=verify-full sslrootcert={}", empty.display())).tls().unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "sslrootcert {}: no certificates in it (expected PEM \"BEGIN CERTIFICATE\" blocks)",
            empty.display()
        )
    );
    let directory = parse(&format!("host=h sslmode=verify-full sslrootcert={}", dir.path().display())).tls();
    assert!(directory.unwrap_err().to_string().ends_with("is a directory, not a PEM file"));
    // No file needed where nothing is checked.
    parse("postgres://h/db?sslmode=require").tls().expect("require reads no file");
    parse("postgres://h/db?sslmode=disable&sslrootcert=/nonexistent/ca.pem")
        .tls()
        .expect("disable ignores it");
}

// Against the throwaway cluster.

/// Connects with [`connect_dedicated`] and asks the server whether the session is encrypted.
async fn encrypted(url: &str) -> Result<bool, DbError> {
    let (client, connection) = connect_dedicated(url).await?;
    let driver = tokio::spawn(connection);
    let row = client
        .query_one("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()", &[])
        .await
        .expect("pg_stat_ssl");
    drop(client);
    let _ = driver.await;
    Ok(row.get(0))
}

#[tokio::test]
async fn require_encrypts_without_checking_the_certificate() {
    let server = server::server();
    assert!(encrypted(&server.url("127.0.0.1", "postgres", "sslmode=require")).await.unwrap());
    // A name the certificate does not have and no CA: require does not care.
    let elsewhere = server.url("wrong.example", "postgres", "sslmode=require&hostaddr=127.0.0.1");
    assert!(encrypted(&elsewhere).await.unwrap());
}

#[tokio::test]
async fn verify_full_accepts_the_right_ca_and_host() {
    let server = server::server();
    let ca = server.ca.display();
    for host in ["localhost", "127.0.0.1"] {
        let url = server.url(host, "postgres", &format!("sslmode=verify-full&sslrootcert={ca}"));
        assert!(encrypted(&url).await.unwrap(), "{url}");
    }
    let keywords = format!(
        "host=localhost port={} user=postgres dbname=postgres sslmode=verify-full sslrootcert={ca}",
        server.port
    );
    assert!(encrypted(&keywords).await.unwrap(), "{keywords}");
}

#[tokio::test]
async fn verify_full_refuses_a_certificate_from_another_ca() {
    let server = server::server();
    let other = server.other_ca.display();
    let url = server.url("127.0.0.1", "postgres", &format!("sslmode=verify-full&sslrootcert={other}"));
    let err = encrypted(&url).await.unwrap_err();
    assert!(matches!(err, DbError::Tls { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!(
            "TLS to 127.0.0.1:{} refused: certificate is not signed by a CA of sslrootcert {other}",
            server.port
        )
    );
    // The platform's trust store knows nothing of the test CA.
    let system = server.url("localhost", "postgres", "sslrootcert=system");
    assert_eq!(
        encrypted(&system).await.unwrap_err().to_string(),
        format!(
            "TLS to localhost:{} refused: certificate is not signed by a CA of \
             sslrootcert=system (the platform's trust store)",
            server.port
        )
    );
    // libpq's rule: require with a root certificate checks the chain.
    let require = server.url("127.0.0.1", "postgres", &format!("sslmode=require&sslrootcert={other}"));
    assert!(matches!(encrypted(&require).await, Err(DbError::Tls { .. })));
}

#[tokio::test]
async fn verify_full_refuses_a_host_name_the_certificate_lacks_and_verify_ca_accepts_it() {
    let server = server::server();
    let ca = server.ca.display();
    // Connect to 127.0.0.1 but check the certificate for wrong.example.
    let url = |mode: &str| {
        server.url(
            "wrong.example",
            "postgres",
            &format!("hostaddr=127.0.0.1&sslmode={mode}&sslrootcert={ca}"),
        )
    };
    let err = encrypted(&url("verify-full")).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "TLS to wrong.example:{} at 127.0.0.1 refused: \
             certificate is not valid for name \"wrong.example\" (it is for localhost, 127.0.0.1)",
            server.port
        )
    );
    assert!(encrypted(&url("verify-ca")).await.unwrap());
    assert!(encrypted(&url("require")).await.unwrap(), "require with a CA is verify-ca");
}

#[tokio::test]
async fn disable_is_refused_where_only_tls_is_allowed() {
    let server = server::server();
    let err = encrypted(&server.url("127.0.0.1", "postgres", "sslmode=disable")).await.unwrap_err();
    let DbError::Connect { target, .. } = &err else { panic!("{err:?}") };
    assert_eq!(target, &format!("127.0.0.1:{}", server.port));
    let text = err.to_string();
    assert!(text.contains("no pg_hba.conf entry") && text.contains("no encryption"), "{text}");
    // Where the server allows plain connections, disable makes one.
    assert!(!encrypted(&server.url("127.0.0.1", "template1", "sslmode=disable")).await.unwrap());
}

#[tokio::test]
async fn prefer_uses_tls_when_the_server_offers_it() {
    let server = server::server();
    // template1 would take a plain connection too: prefer chose TLS.
    for params in ["sslmode=prefer", "sslmode=allow", ""] {
        let url = server.url("127.0.0.1", "template1", params);
        assert!(encrypted(&url).await.unwrap(), "{url}");
    }
}

#[tokio::test]
async fn the_pool_connects_with_verify_full_and_reports_a_refusal() {
    let server = server::server();
    let url = server.url(
        "127.0.0.1",
        "postgres",
        &format!("sslmode=verify-full&sslrootcert={}", server.ca.display()),
    );
    let pool = connect(&url, &PoolOptions::default()).unwrap();
    let client = pool.get().await.unwrap();
    let row =
        client.query_one("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()", &[]).await.unwrap();
    assert!(row.get::<_, bool>(0));
    crate::ping(&pool, std::time::Duration::from_secs(5)).await.expect("ping over TLS");

    let wrong = server.url(
        "wrong.example",
        "postgres",
        &format!("hostaddr=127.0.0.1&sslmode=verify-full&sslrootcert={}", server.ca.display()),
    );
    let pool = connect(&wrong, &PoolOptions::default()).unwrap();
    let err = DbError::from(pool.get().await.unwrap_err());
    assert!(
        matches!(&err, DbError::Tls { target, reason }
            if target.starts_with("wrong.example:") && reason.contains("not valid for name \"wrong.example\"")),
        "{err:?}"
    );
}
