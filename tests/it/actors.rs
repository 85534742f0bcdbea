//! Who takes an action, as `orchestrator serve` logs and records it: the
//! person the console's load balancer signed in (its ES256-signed identity
//! verified against the balancer's public key, served here as AWS serves
//! it: PEM by key id), else the token by its configured name. A forged
//! identity and a wrong token are refused and logged with the client.

use std::time::Duration;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use base64::Engine;
use orchestrator_tests::fixtures::db_with_catalog;
use orchestrator_tests::process::Process;
use serde_json::{json, Value};

const TOKEN: &str = "a-test-token-of-32-characters-xx";
const SIGNER: &str =
    "arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/app/console/0123456789abcdef";
const KID: &str = "8a3f0b2c-1d4e-4f5a-9b6c-7d8e9f0a1b2c";

fn key() -> EcdsaKeyPair {
    let rng = SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref()).unwrap()
}

/// The public key as the ALB key endpoint serves it: a PEM
/// SubjectPublicKeyInfo for P-256.
fn pem(k: &EcdsaKeyPair) -> String {
    let mut der = hex_prefix();
    der.extend_from_slice(k.public_key().as_ref());
    format!(
        "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
        base64::engine::general_purpose::STANDARD.encode(der)
    )
}

fn hex_prefix() -> Vec<u8> {
    vec![
        0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08,
        0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
    ]
}

/// `x-amzn-oidc-data` as the ALB writes it: padded base64url parts, ES256.
fn identity(k: &EcdsaKeyPair, email: &str) -> String {
    let b64 = |v: Value| base64::engine::general_purpose::URL_SAFE.encode(v.to_string());
    let exp = chrono::Utc::now().timestamp() + 120;
    let signed = format!(
        "{}.{}",
        b64(
            json!({"alg": "ES256", "kid": KID, "signer": SIGNER, "iss": "https://idp.example", "client": "c", "exp": exp})
        ),
        b64(json!({"sub": "u-42", "email": email, "exp": exp}))
    );
    let sig = k.sign(&SystemRandom::new(), signed.as_bytes()).unwrap();
    format!(
        "{signed}.{}",
        base64::engine::general_purpose::URL_SAFE.encode(sig.as_ref())
    )
}

/// Serves `body` to every request, counting them.
async fn key_server(body: String) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let body = body.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 2048];
                let _ = s.read(&mut buf).await;
                let answer = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = s.write_all(answer.as_bytes()).await;
            });
        }
    });
    port
}

async fn post(port: u16, path: &str, headers: &[(&str, String)]) -> (u16, Value) {
    let mut req = reqwest::Client::new().post(format!("http://127.0.0.1:{port}{path}"));
    for (k, v) in headers {
        req = req.header(*k, v);
    }
    let r = req.send().await.expect("the API answers");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn actions_record_the_signed_in_person_or_the_token_and_refusals_are_logged() {
    let db = db_with_catalog("actors").await;
    let alb_key = key();
    let keys_port = key_server(pem(&alb_key)).await;
    let env: Vec<(String, String)> = [
        ("DATABASE_URL", db.url.clone()),
        ("API_ADDR", "127.0.0.1:0".into()),
        ("API_TOKEN", TOKEN.into()),
        ("API_TOKEN_NAME", "ops-token".into()),
        ("API_OIDC_SIGNER_ARN", SIGNER.into()),
        ("API_OIDC_KEYS_URL", format!("http://127.0.0.1:{keys_port}")),
        ("OUTPUT_BUCKET", "out-bucket".into()),
        ("LOG_FORMAT", "json".into()),
    ]
    .map(|(k, v)| (k.to_string(), v))
    .into();
    let serve = Process::spawn("orchestrator", &env, &["serve"]);
    let port = serve.bound_port("operator API and console at").await;
    let bearer = ("authorization", format!("Bearer {TOKEN}"));

    // Signed in at the load balancer: recorded as the person, whatever
    // `by` says.
    let (st, body) = post(
        port,
        "/api/v1/metrics/m.single/hold?by=mallory",
        &[
            bearer.clone(),
            ("x-amzn-oidc-data", identity(&alb_key, "alice@example.com")),
        ],
    )
    .await;
    assert_eq!(st, 200, "{body}");
    assert_eq!(
        db.string("SELECT held_by FROM metrics WHERE code = 'm.single'")
            .await,
        "alice@example.com"
    );
    // An identity signed by another key is refused.
    let (st, body) = post(
        port,
        "/api/v1/metrics/m.single/resume",
        &[
            bearer.clone(),
            ("x-amzn-oidc-data", identity(&key(), "alice@example.com")),
        ],
    )
    .await;
    assert_eq!(st, 401, "{body}");
    assert!(
        body.to_string().contains("signature does not verify"),
        "{body}"
    );
    // The token alone: the token's name.
    let (st, body) = post(
        port,
        "/api/v1/metrics/m.single/resume",
        std::slice::from_ref(&bearer),
    )
    .await;
    assert_eq!(st, 200, "{body}");
    // A wrong token.
    let (st, _) = post(
        port,
        "/api/v1/metrics/m.single/hold",
        &[(
            "authorization",
            "Bearer wrong-token-wrong-token-wrong".into(),
        )],
    )
    .await;
    assert_eq!(st, 401);

    let logs: Vec<Value> = orchestrator_tests::eventually(
        Duration::from_secs(10),
        "the actions' log lines",
        || async {
            let lines: Vec<Value> = serve
                .output()
                .lines()
                .filter_map(|l| serde_json::from_str(l).ok())
                .collect();
            lines
                .iter()
                .any(|l| l["message"] == "refused a request: no valid API token")
                .then_some(lines)
        },
    )
    .await;
    let find = |message: &str| {
        logs.iter()
            .filter(|l| l["message"].as_str().is_some_and(|m| m.contains(message)))
            .cloned()
            .collect::<Vec<_>>()
    };
    let holds = find("metric hold through the API");
    assert_eq!(holds.len(), 1, "{logs:?}");
    assert_eq!(holds[0]["actor"], "alice@example.com (oidc u-42)");
    assert_eq!(holds[0]["stated_by"], "Some(\"mallory\")");
    let resumes = find("metric resumed through the API");
    assert_eq!(resumes.len(), 1, "{logs:?}");
    assert_eq!(resumes[0]["actor"], "token ops-token");
    let forged = find("the load balancer's identity did not verify");
    assert_eq!(forged.len(), 1, "{logs:?}");
    assert!(
        forged[0]["client"]
            .as_str()
            .unwrap()
            .starts_with("127.0.0.1:"),
        "{forged:?}"
    );
    let refused = find("refused a request: no valid API token");
    assert_eq!(refused.len(), 1, "{logs:?}");
    assert_eq!(refused[0]["level"], "WARN");
    assert!(
        refused[0]["client"]
            .as_str()
            .unwrap()
            .starts_with("127.0.0.1:"),
        "{refused:?}"
    );
}
