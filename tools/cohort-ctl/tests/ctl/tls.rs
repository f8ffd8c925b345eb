//! `https://` endpoints: the config service's certificate is checked against `--ca-file`, and a
//! refusal names the endpoint and why.

use cohort_db::testing::TestDb;
use cohort_transport::testing::Pki;

use crate::{Server, ctl};

#[tokio::test]
async fn https_endpoints_are_verified_against_the_ca_file() {
    let db = TestDb::new().await;
    let tenant = db.seed_tenant("acme").await;
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new("Cohort test CA");
    let served = pki.localhost().write(dir.path(), "config");
    let (cert, key) = (served.cert.display().to_string(), served.key.display().to_string());
    let ca = pki.write_ca(dir.path(), "ca").display().to_string();
    let other = Pki::new("Another CA").write_ca(dir.path(), "other").display().to_string();
    let server = Server::start_with(&db.url, &[("--tls-cert", &cert), ("--tls-key", &key)]).await;
    assert!(server.endpoint().starts_with("https://"), "{}", server.endpoint());

    let listed =
        ctl(&server, Some(&tenant.admin_key), &["--ca-file", &ca, "-o", "json", "env", "list"]).await;
    assert!(listed.ok().contains("production"), "{}", listed.out);

    let refused = ctl(&server, Some(&tenant.admin_key), &["--ca-file", &other, "env", "list"]).await.error();
    assert!(refused.contains(&server.endpoint()), "the endpoint is named: {refused}");
    assert!(
        refused.contains("UnknownIssuer") || refused.contains("certificate"),
        "the reason is named: {refused}"
    );

    let missing =
        ctl(&server, Some(&tenant.admin_key), &["--ca-file", "/nonexistent/ca.pem", "env", "list"]).await;
    assert!(missing.error().contains("/nonexistent/ca.pem"), "{}", missing.error());
    server.stop().await;
}
