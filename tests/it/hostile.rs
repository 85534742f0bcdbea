//! `orchestrator serve` under hostile input: generated requests to every
//! route and method of its own OpenAPI document (and to wrong methods and
//! unknown routes), with arbitrary bytes in path segments, query names and
//! values, headers and bodies, sent over raw TCP to the running binary on a
//! real, healthy database. Every answer must be below 500, carry the
//! security headers, and, when it is an error, the documented error shape;
//! the server's log must hold no ERROR line.
//!
//! Bytes go where HTTP can carry them: percent-encoded in the path and
//! query (so invalid UTF-8, NUL and control characters reach the server
//! decoded), and as raw field-value bytes in headers (RFC 9110: visible
//! ASCII, obs-text 0x80-0xFF, space and tab; a NUL in a header is not HTTP
//! and hyper refuses the connection before the API sees it).
//!
//! The seed is printed; `HOSTILE_SEED=<seed>` replays a run and
//! `HOSTILE_CASES=<n>` sets how many requests are generated.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use orchestrator_core::app::projection_update::process;
use orchestrator_tests::fixtures::{db_with_catalog, update};
use orchestrator_tests::process::Process;
use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestRng, TestRunner};
use serde_json::Value;

const TOKEN: &str = "a-hostile-test-token-of-32-chars";

/// One documented operation: method, path template, query parameter names.
#[derive(Debug, Clone)]
struct Operation {
    method: String,
    path: String,
    query: Vec<String>,
}

fn operations(doc: &Value) -> Vec<Operation> {
    let mut out = Vec::new();
    for (path, item) in doc["paths"]
        .as_object()
        .expect("paths in the OpenAPI document")
    {
        for (method, op) in item.as_object().unwrap() {
            let query = op["parameters"]
                .as_array()
                .map(|ps| {
                    ps.iter()
                        .filter(|p| p["in"] == "query")
                        .map(|p| p["name"].as_str().unwrap().to_string())
                        .collect()
                })
                .unwrap_or_default();
            out.push(Operation {
                method: method.to_uppercase(),
                path: path.clone(),
                query,
            });
        }
    }
    // Routes outside the document: the console, Prometheus, an unknown one.
    for path in ["/", "/console/app.js", "/metrics", "/api/v1/{x}", "/{x}"] {
        out.push(Operation {
            method: "GET".into(),
            path: path.into(),
            query: Vec::new(),
        });
    }
    out
}

/// A query parameter's name: one the operation documents, or raw bytes.
#[derive(Debug, Clone)]
enum Name {
    Documented(usize),
    Raw(Vec<u8>),
}

#[derive(Debug, Clone)]
struct Request {
    op: usize,
    /// `None`: the documented method.
    method: Option<&'static str>,
    segment: Vec<u8>,
    query: Vec<(Name, Vec<u8>)>,
    duplicate_first: bool,
    headers: Vec<(&'static str, Vec<u8>)>,
    auth: Option<Vec<u8>>,
    body: Vec<u8>,
    /// A `Content-Length` far above the body limit, with no body sent.
    claims_huge_body: bool,
}

fn nasty_bytes() -> impl Strategy<Value = Vec<u8>> {
    let fixed = |s: &'static [u8]| Just(s.to_vec());
    prop_oneof![
        4 => proptest::collection::vec(any::<u8>(), 0..40),
        1 => proptest::collection::vec(any::<u8>(), 300..3000),
        1 => fixed(b"\xff\xfe\x00garbage"),
        1 => fixed(b"\xe2\x80\x8b\x00"),
        1 => fixed(b"\xc3\x28"),
        1 => fixed(b"-1"),
        1 => fixed(b"1e309"),
        1 => fixed(b"2026-13-45T99:99:99Z"),
        1 => fixed(b"[]"),
        1 => fixed(b"m.single"),
        1 => fixed(b"d1"),
        1 => fixed(b"pending"),
        1 => fixed(b"500"),
    ]
}

/// Bytes a header field value may carry.
fn field_value() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(
        prop_oneof![Just(b'\t'), 0x20u8..0x7f, 0x80u8..=0xff],
        0..200,
    )
}

fn method() -> impl Strategy<Value = Option<&'static str>> {
    prop_oneof![
        4 => Just(None),
        1 => proptest::sample::select(vec!["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD"]).prop_map(Some),
    ]
}

fn name() -> impl Strategy<Value = Name> {
    prop_oneof![
        3 => (0usize..8).prop_map(Name::Documented),
        1 => nasty_bytes().prop_map(Name::Raw),
    ]
}

fn header() -> impl Strategy<Value = (&'static str, Vec<u8>)> {
    (
        proptest::sample::select(vec![
            "Accept",
            "Content-Type",
            "X-Forwarded-For",
            "Cookie",
            "Range",
            "If-None-Match",
            "User-Agent",
            "Origin",
            "X-Request-Id",
            "Accept-Encoding",
        ]),
        field_value(),
    )
}

fn auth() -> impl Strategy<Value = Option<Vec<u8>>> {
    prop_oneof![
        2 => Just(None),
        1 => field_value().prop_map(Some),
        1 => field_value().prop_map(|v| Some([b"Bearer ".as_slice(), &v].concat())),
        1 => Just(Some(format!("bearer {TOKEN}").into_bytes())),
    ]
}

prop_compose! {
    fn request(ops: usize)(
        op in 0..ops,
        method in method(),
        segment in nasty_bytes(),
        query in proptest::collection::vec((name(), nasty_bytes()), 0..5),
        duplicate_first in any::<bool>(),
        headers in proptest::collection::vec(header(), 0..4),
        auth in auth(),
        body in prop_oneof![3 => Just(Vec::new()), 1 => nasty_bytes()],
        claims_huge_body in proptest::bool::weighted(0.05),
    ) -> Request {
        Request { op, method, segment, query, duplicate_first, headers, auth, body, claims_huge_body }
    }
}

fn pct(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(b) {
                (*b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// The request's bytes on the wire, and its method.
fn wire(r: &Request, ops: &[Operation]) -> (Vec<u8>, String) {
    let op = &ops[r.op];
    let method = r
        .method
        .map(str::to_string)
        .unwrap_or_else(|| op.method.clone());
    let mut path = String::new();
    for part in op.path.split('/').skip(1) {
        path.push('/');
        if part.starts_with('{') {
            path.push_str(&pct(&r.segment));
        } else {
            path.push_str(part);
        }
    }
    let mut pairs: Vec<String> = r
        .query
        .iter()
        .map(|(name, value)| {
            let name = match name {
                Name::Documented(i) if !op.query.is_empty() => op.query[i % op.query.len()].clone(),
                Name::Documented(_) => "limit".to_string(),
                Name::Raw(bytes) => pct(bytes),
            };
            format!("{name}={}", pct(value))
        })
        .collect();
    if r.duplicate_first {
        if let Some(first) = pairs.first().cloned() {
            pairs.push(first);
        }
    }
    if !pairs.is_empty() {
        path = format!("{path}?{}", pairs.join("&"));
    }
    let mut out = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n")
        .into_bytes();
    for (name, value) in &r.headers {
        out.extend_from_slice(format!("{name}: ").as_bytes());
        out.extend_from_slice(value);
        out.extend_from_slice(b"\r\n");
    }
    if let Some(a) = &r.auth {
        out.extend_from_slice(b"Authorization: ");
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
    if r.claims_huge_body {
        out.extend_from_slice(b"Content-Length: 10000000\r\n\r\n");
    } else {
        out.extend_from_slice(format!("Content-Length: {}\r\n\r\n", r.body.len()).as_bytes());
        out.extend_from_slice(&r.body);
    }
    (out, method)
}

struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

fn send(port: u16, bytes: &[u8]) -> Result<Answer, String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(30))).ok();
    // The server may answer before reading a body it refuses: a failed
    // write is not the server's fault, a missing answer is.
    let _ = s.write_all(bytes);
    let mut raw = Vec::new();
    let mut buf = [0u8; 16384];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            Err(e) if raw.is_empty() => return Err(format!("no answer: {e}")),
            Err(_) => break,
        }
    }
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut resp = httparse::Response::new(&mut headers);
    let head = match resp.parse(&raw) {
        Ok(httparse::Status::Complete(n)) => n,
        other => {
            return Err(format!(
                "not an HTTP answer ({other:?}): {:?}",
                String::from_utf8_lossy(&raw[..raw.len().min(300)])
            ))
        }
    };
    Ok(Answer {
        status: resp.code.unwrap_or(0),
        headers: resp
            .headers
            .iter()
            .map(|h| {
                (
                    h.name.to_string(),
                    String::from_utf8_lossy(h.value).into_owned(),
                )
            })
            .collect(),
        body: raw[head..].to_vec(),
    })
}

fn check(a: &Answer, method: &str) -> Result<(), String> {
    if a.status >= 500 {
        return Err(format!(
            "answered {} while the database is up: {}",
            a.status,
            String::from_utf8_lossy(&a.body)
        ));
    }
    for (name, needle) in [
        ("content-security-policy", "frame-ancestors 'none'"),
        ("content-security-policy", "default-src 'self'"),
        ("x-content-type-options", "nosniff"),
        ("referrer-policy", "no-referrer"),
    ] {
        if !a.header(name).is_some_and(|v| v.contains(needle)) {
            return Err(format!("{name} lacks {needle:?}: {:?}", a.headers));
        }
    }
    if a.status >= 400 && method != "HEAD" {
        let body: Value = serde_json::from_slice(&a.body).map_err(|e| {
            format!(
                "{} with a body that is not JSON ({e}): {:?}",
                a.status,
                String::from_utf8_lossy(&a.body)
            )
        })?;
        if !(body["error"]["code"].is_string() && body["error"]["message"].is_string()) {
            return Err(format!("{} without the error shape: {body}", a.status));
        }
    }
    Ok(())
}

#[tokio::test]
async fn generated_hostile_requests_never_get_a_5xx_always_the_error_shape_and_log_no_error() {
    let db = db_with_catalog("hostile").await;
    process(&db.ctx(), &update("d1", "v1")).await.unwrap();
    let env = [
        ("DATABASE_URL".to_string(), db.url.clone()),
        ("API_ADDR".to_string(), "127.0.0.1:0".to_string()),
        ("API_TOKEN".to_string(), TOKEN.to_string()),
        ("OUTPUT_BUCKET".to_string(), "hostile-outputs".to_string()),
    ];
    let mut serve = Process::spawn_with_default_log_level("orchestrator", &env, &["serve"]);
    let port = serve.bound_port("operator API and console at").await;
    let doc: Value = orchestrator_tests::eventually(
        Duration::from_secs(30),
        "serve to answer its OpenAPI document",
        || async move {
            let a = send(
                port,
                b"GET /api/v1/openapi.json HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            )
            .ok()?;
            serde_json::from_slice(&a.body).ok()
        },
    )
    .await;
    let ops = operations(&doc);
    assert!(ops.len() >= 15, "{ops:?}");

    // The requests of the report that opened this work, and the framework's
    // own refusals: each a 400 (or its own 4xx) in the error shape that
    // names what was wrong.
    for (request, status, needle) in [
        (
            "GET /api/v1/runs?cursor=%FF%FE%00garbage",
            400,
            "\"cursor\": not valid UTF-8",
        ),
        (
            "GET /api/v1/runs?cursor=ab%00cd",
            400,
            "\"cursor\" contains the control character U+0000",
        ),
        (
            "GET /api/v1/metrics/%E2%80%8B%00",
            400,
            "path parameter code contains the control character U+0000",
        ),
        (
            "GET /api/v1/runs/%FF%FE%00",
            400,
            "path parameter id: not valid UTF-8",
        ),
        (
            "GET /api/v1/datasets/%C3%28",
            400,
            "path parameter id: not valid UTF-8",
        ),
        (
            "GET /api/v1/runs?limit=1&limit=2",
            400,
            "\"limit\" is given more than once",
        ),
        ("DELETE /api/v1/runs", 405, "Allow header"),
        ("GET /api/v1/nothing-here", 404, "no such endpoint"),
        ("POST /api/v1/runs/r1/cancel", 401, "Authorization: Bearer"),
    ] {
        let (method, path) = request.split_once(' ').unwrap();
        let a = send(
            port,
            format!("{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .unwrap();
        check(&a, method).unwrap_or_else(|e| panic!("{request}: {e}"));
        let body: Value = serde_json::from_slice(&a.body).unwrap();
        assert_eq!(a.status, status, "{request}: {body}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(
            message.contains(needle),
            "{request}: {message:?} lacks {needle:?}"
        );
        if status == 405 {
            assert_eq!(a.header("allow"), Some("GET,HEAD"), "{request}");
        }
    }
    let a = send(
        port,
        b"POST /api/v1/metrics/m.single/trigger HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 10000000\r\n\r\n",
    )
    .unwrap();
    assert_eq!(a.status, 413, "{:?}", String::from_utf8_lossy(&a.body));
    check(&a, "POST").unwrap();

    let seed: u64 = std::env::var("HOSTILE_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            let t = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap();
            t.as_nanos() as u64 ^ u64::from(std::process::id())
        });
    let cases: u32 = std::env::var("HOSTILE_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(600);
    eprintln!("hostile-input seed {seed}, {cases} cases (HOSTILE_SEED={seed} replays this run)");
    let result = tokio::task::spawn_blocking(move || {
        let mut key = [0u8; 32];
        key[..8].copy_from_slice(&seed.to_le_bytes());
        let config = Config {
            cases,
            failure_persistence: None,
            max_shrink_iters: 200,
            ..Config::default()
        };
        let mut runner =
            TestRunner::new_with_rng(config, TestRng::from_seed(RngAlgorithm::ChaCha, &key));
        let outcome = runner.run(&request(ops.len()), |r| {
            let (bytes, method) = wire(&r, &ops);
            let answer = send(port, &bytes).map_err(TestCaseError::fail)?;
            check(&answer, &method).map_err(|e| {
                TestCaseError::fail(format!(
                    "{e}\nrequest: {:?}",
                    String::from_utf8_lossy(&bytes[..bytes.len().min(600)])
                ))
            })
        });
        outcome.map_err(|e| e.to_string())
    })
    .await
    .unwrap();
    if let Err(e) = result {
        panic!("hostile-input seed {seed} (HOSTILE_SEED={seed} replays it) found: {e}");
    }

    let status = serve.terminate(Duration::from_secs(15));
    let logs = std::fs::read_to_string(&serve.log).unwrap_or_default();
    assert!(status.is_some_and(|s| s.success()), "{status:?}\n{logs}");
    let errors: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("\"level\":\"ERROR\""))
        .collect();
    assert!(
        errors.is_empty(),
        "seed {seed}: serve logged errors:\n{}",
        errors.join("\n")
    );
}
