//! TLS to PostgreSQL: every `sslmode` against a real server with `ssl=on`
//! and a certificate from a CA this test makes, then against the same server
//! with `ssl=off`; and a worker that stops at start-up naming the setting.

use std::time::Duration;

use orchestrator_core::store::pool::{self, Target};
use orchestrator_tests::private_pg::PrivatePg;
use orchestrator_tests::process::Process;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};

struct Pki {
    ca: String,
    other_ca: String,
    server_cert: String,
    server_key: String,
}

fn ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
}

/// A CA, a server certificate it issues for `localhost` only (so that
/// `127.0.0.1` is a host name the certificate does not carry), and an
/// unrelated CA.
fn pki() -> Pki {
    let ca = ca("orchestrator test CA");
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    params
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    let cert = params.signed_by(&key, &ca).unwrap();
    Pki {
        ca: ca.pem(),
        other_ca: self::ca("another CA").pem(),
        server_cert: cert.pem(),
        server_key: key.serialize_pem(),
    }
}

const SSL_ON: &str = "-c ssl=on -c ssl_cert_file=../server.crt -c ssl_key_file=../server.key";

/// What one connection attempt came to: `Ok(ssl in use)` or the message.
async fn attempt(url: &str) -> Result<bool, String> {
    let target = Target::parse(url).map_err(|e| orchestrator_core::ground::errors::chain(&e))?;
    let pool = pool::pool_for(target.clone(), &pool::PoolOptions::sized(1))
        .map_err(|e| orchestrator_core::ground::errors::chain(&e))?;
    pool::check_connection(&pool, &target)
        .await
        .map_err(|e| orchestrator_core::ground::errors::chain(&e))?;
    let client = pool.get().await.map_err(|e| e.to_string())?;
    let row = client
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .map_err(|e| e.to_string())?;
    Ok(row.get(0))
}

enum Want {
    Connects { ssl: bool },
    Refused(&'static str),
}

async fn check_matrix(server: &str, cases: &[(String, Want)]) {
    let mut failures = Vec::new();
    for (url, want) in cases {
        let got = attempt(url).await;
        let shown = match &got {
            Ok(ssl) => format!("connected (ssl={ssl})"),
            Err(e) => format!("refused: {e}"),
        };
        eprintln!("TLS matrix | server {server} | {url} | {shown}");
        let ok = match (want, &got) {
            (Want::Connects { ssl }, Ok(got)) => ssl == got,
            (Want::Refused(text), Err(e)) => e.contains(text),
            _ => false,
        };
        if !ok {
            failures.push(format!("{url}: {shown}"));
        }
    }
    assert!(
        failures.is_empty(),
        "unexpected outcomes:\n{}",
        failures.join("\n")
    );
}

#[tokio::test]
async fn every_sslmode_against_a_tls_server_and_a_plaintext_one() {
    orchestrator_core::ground::telemetry::init_for_tests();
    let pki = pki();
    let mut pg = PrivatePg::start_with(
        &[
            ("server.crt", &pki.server_cert),
            ("server.key", &pki.server_key),
            ("ca.pem", &pki.ca),
            ("other-ca.pem", &pki.other_ca),
        ],
        SSL_ON,
    );
    let ca = pg.dir.join("ca.pem").display().to_string();
    let other = pg.dir.join("other-ca.pem").display().to_string();
    let port = pg.port;
    let url = |host: &str, q: &str| format!("postgres://postgres@{host}:{port}/postgres?{q}");
    use Want::*;
    let tls_server = vec![
        (
            url(
                "localhost",
                &format!("sslmode=verify-full&sslrootcert={ca}"),
            ),
            Connects { ssl: true },
        ),
        (
            url(
                "127.0.0.1",
                &format!("sslmode=verify-full&sslrootcert={ca}"),
            ),
            Refused("the server's certificate does not name the host"),
        ),
        (
            url(
                "localhost",
                &format!("sslmode=verify-full&sslrootcert={other}"),
            ),
            Refused("was not issued by a CA in sslrootcert="),
        ),
        (
            url("127.0.0.1", &format!("sslmode=verify-ca&sslrootcert={ca}")),
            Connects { ssl: true },
        ),
        (
            url(
                "127.0.0.1",
                &format!("sslmode=verify-ca&sslrootcert={other}"),
            ),
            Refused("was not issued by a CA in sslrootcert="),
        ),
        (url("127.0.0.1", "sslmode=require"), Connects { ssl: true }),
        (
            url("127.0.0.1", &format!("sslmode=require&sslrootcert={other}")),
            Refused("sslmode=require checks the chain"),
        ),
        (url("127.0.0.1", "sslmode=prefer"), Connects { ssl: true }),
        (url("127.0.0.1", ""), Connects { ssl: true }),
        (url("127.0.0.1", "sslmode=disable"), Connects { ssl: false }),
        (
            url(
                "localhost",
                "sslmode=verify-full&sslrootcert=/nonexistent/ca.pem",
            ),
            Refused("sslrootcert=/nonexistent/ca.pem: cannot read the certificate bundle"),
        ),
        (
            url("localhost", "sslmode=verify-everything"),
            Refused("is not one of disable, prefer"),
        ),
    ];
    check_matrix("ssl=on", &tls_server).await;

    // A worker started with a certificate it must refuse stops at once,
    // naming the setting, before it touches a queue.
    let wrong_host = url(
        "127.0.0.1",
        &format!("sslmode=verify-full&sslrootcert={ca}"),
    );
    for (binary, args) in [
        ("projection-update-worker", &[][..]),
        ("orchestrator", &["migrate"][..]),
    ] {
        let mut worker =
            Process::spawn(binary, &[("DATABASE_URL".into(), wrong_host.clone())], args);
        let status = worker.wait_exit(Duration::from_secs(30)).expect("exits");
        let output = worker.output();
        assert!(
            !status.success(),
            "{binary} started with a refused certificate:\n{output}"
        );
        assert!(
            output.contains("sslmode=verify-full") && output.contains("does not name the host"),
            "{binary}'s error names neither the setting nor the reason:\n{output}"
        );
    }

    pg.restart_with("-c ssl=off");
    let plaintext_server = vec![
        (
            url("127.0.0.1", "sslmode=require"),
            Refused("the server does not offer TLS, and sslmode=require refuses"),
        ),
        (
            url(
                "localhost",
                &format!("sslmode=verify-full&sslrootcert={ca}"),
            ),
            Refused("the server does not offer TLS, and sslmode=verify-full refuses"),
        ),
        (url("127.0.0.1", "sslmode=prefer"), Connects { ssl: false }),
        (url("127.0.0.1", "sslmode=disable"), Connects { ssl: false }),
    ];
    check_matrix("ssl=off", &plaintext_server).await;
}
