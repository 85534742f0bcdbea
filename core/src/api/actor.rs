//! Who takes an action: the person the console's load balancer signed in,
//! when its signed identity (`x-amzn-oidc-data`, an ES256 JWT the ALB signs)
//! verifies against the load balancer named in `API_OIDC_SIGNER_ARN`; else
//! the token, by its configured name (`API_TOKEN_NAME`). Every action logs
//! it; a hold records it. An identity header that does not verify refuses
//! the request: nobody can claim a name by writing a header.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::engine::{general_purpose::GeneralPurpose, DecodePaddingMode, GeneralPurposeConfig};
use base64::Engine;
use http_body_util::{BodyExt, Empty, Limited};
use serde::Deserialize;

use super::error::ApiError;
use super::ApiState;
use crate::config::{ConfigError, Env};

/// The header the ALB adds after signing someone in.
pub const OIDC_DATA_HEADER: &str = "x-amzn-oidc-data";

/// Who took an action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actor {
    /// Signed in at the load balancer; the identity verified.
    SignedIn {
        subject: String,
        email: Option<String>,
    },
    /// The bearer token, by its configured name.
    Token { name: String },
}

impl Actor {
    /// The name a hold records: the person when known.
    pub fn holder(&self) -> Option<&str> {
        match self {
            Actor::SignedIn { email, subject } => Some(email.as_deref().unwrap_or(subject)),
            Actor::Token { .. } => None,
        }
    }
}

impl fmt::Display for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Actor::SignedIn { subject, email } => match email {
                Some(e) => write!(f, "{e} (oidc {subject})"),
                None => write!(f, "oidc {subject}"),
            },
            Actor::Token { name } => write!(f, "token {name}"),
        }
    }
}

/// How actors are told apart (`API_TOKEN_NAME`, `API_OIDC_SIGNER_ARN`).
#[derive(Clone)]
pub struct Actors {
    pub token_name: String,
    pub oidc: Option<Arc<AlbOidc>>,
}

impl Default for Actors {
    fn default() -> Self {
        Self {
            token_name: "api-token".into(),
            oidc: None,
        }
    }
}

impl Actors {
    /// Who takes an action: `API_TOKEN_NAME` (how the token is named in the
    /// log, default `api-token`), and `API_OIDC_SIGNER_ARN` (the console load
    /// balancer whose signed identity is verified) with `API_OIDC_KEYS_URL`
    /// (default: the region's ALB public-key endpoint; plain HTTP only on
    /// loopback, for tests).
    pub fn from_env<F: Fn(&str) -> Option<String>>(env: &Env<F>) -> Result<Self, ConfigError> {
        let token_name = env.or("API_TOKEN_NAME", "api-token");
        if token_name.len() > 64
            || !token_name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.@".contains(c))
        {
            return Err(ConfigError::Invalid {
                name: "API_TOKEN_NAME",
                value: token_name,
                expected: "at most 64 letters, digits, '-', '_', '.' or '@'",
            });
        }
        let oidc = match env.optional("API_OIDC_SIGNER_ARN") {
            None => None,
            Some(arn) => {
                if !arn.starts_with("arn:") || !arn.contains(":elasticloadbalancing:") {
                    return Err(ConfigError::Invalid {
                        name: "API_OIDC_SIGNER_ARN",
                        value: arn,
                        expected: "the ARN of the console's Application Load Balancer",
                    });
                }
                let region = env.or("AWS_REGION", "us-east-1");
                let url = env.or(
                    "API_OIDC_KEYS_URL",
                    &format!("https://public-keys.auth.elb.{region}.amazonaws.com"),
                );
                let loopback = ["http://127.0.0.1:", "http://localhost:", "http://[::1]:"]
                    .iter()
                    .any(|p| url.starts_with(p));
                if !url.starts_with("https://") && !loopback {
                    return Err(ConfigError::Invalid {
                        name: "API_OIDC_KEYS_URL",
                        value: url,
                        expected: "an https:// URL (plain http only on this machine, for tests)",
                    });
                }
                let verifier = AlbOidc::new(arn, url).map_err(|_| ConfigError::Invalid {
                    name: "API_OIDC_KEYS_URL",
                    value: String::new(),
                    expected: "a URL an HTTPS client can be built for",
                })?;
                Some(std::sync::Arc::new(verifier))
            }
        };
        Ok(Actors { token_name, oidc })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    #[error("the signed identity is not a JWT of three parts")]
    Shape,
    #[error("the signed identity's {0} is not base64url JSON")]
    Encoding(&'static str),
    #[error("the signed identity is signed with {0}, not ES256")]
    Algorithm(String),
    #[error("the signed identity's key id is not a key id")]
    KeyId,
    #[error("the signed identity was signed by {0}, not by this API's load balancer")]
    Signer(String),
    #[error("the signed identity expired")]
    Expired,
    #[error("the signed identity's signature does not verify")]
    Signature,
    #[error("the load balancer's public key could not be fetched: {0}")]
    Key(String),
}

#[derive(Debug, Deserialize)]
struct Header {
    alg: String,
    kid: String,
    signer: String,
    #[serde(default)]
    exp: Option<i64>,
}

#[derive(Debug, Deserialize)]
struct Claims {
    sub: String,
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    exp: Option<i64>,
}

/// A token taken apart: what is signed, the signature, and what it says.
#[derive(Debug)]
pub struct Parsed {
    signed: String,
    signature: Vec<u8>,
    header: Header,
    claims: Claims,
}

/// The ALB pads its base64url segments; other JWTs do not. Both are read.
const B64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Takes a token apart. Pure: no key, no clock.
pub fn parse(token: &str) -> Result<Parsed, IdentityError> {
    let mut parts = token.trim().split('.');
    let (Some(h), Some(c), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(IdentityError::Shape);
    };
    let json = |what: &'static str, part: &str| -> Result<Vec<u8>, IdentityError> {
        B64.decode(part).map_err(|_| IdentityError::Encoding(what))
    };
    let header: Header = serde_json::from_slice(&json("header", h)?)
        .map_err(|_| IdentityError::Encoding("header"))?;
    let claims: Claims = serde_json::from_slice(&json("claims", c)?)
        .map_err(|_| IdentityError::Encoding("claims"))?;
    let signature = json("signature", s)?;
    Ok(Parsed {
        signed: format!("{h}.{c}"),
        signature,
        header,
        claims,
    })
}

/// The checks that need no key: algorithm, key id, signer, expiry (a minute
/// of clock skew allowed). Pure.
pub fn check(p: &Parsed, signer_arn: &str, now_secs: i64) -> Result<(), IdentityError> {
    if p.header.alg != "ES256" {
        return Err(IdentityError::Algorithm(p.header.alg.clone()));
    }
    let kid_ok = !p.header.kid.is_empty()
        && p.header.kid.len() <= 128
        && p.header
            .kid
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-');
    if !kid_ok {
        return Err(IdentityError::KeyId);
    }
    if p.header.signer != signer_arn {
        return Err(IdentityError::Signer(p.header.signer.clone()));
    }
    match p.header.exp.or(p.claims.exp) {
        Some(exp) if exp + 60 >= now_secs => Ok(()),
        _ => Err(IdentityError::Expired),
    }
}

/// The ALB's public key in PEM (a P-256 SubjectPublicKeyInfo) as the raw
/// point the verifier takes.
pub fn p256_point(pem: &str) -> Result<Vec<u8>, IdentityError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::SubjectPublicKeyInfoDer;
    let der = SubjectPublicKeyInfoDer::from_pem_slice(pem.as_bytes())
        .map_err(|e| IdentityError::Key(format!("not a PEM public key: {e}")))?;
    // id-ecPublicKey with prime256v1, then the 65-byte uncompressed point.
    const P256_SPKI_PREFIX: [u8; 26] = [
        0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08,
        0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
    ];
    let der: &[u8] = der.as_ref();
    match der.strip_prefix(&P256_SPKI_PREFIX[..]) {
        Some(point) if point.len() == 65 && point[0] == 4 => Ok(point.to_vec()),
        _ => Err(IdentityError::Key("not a P-256 public key".into())),
    }
}

/// Verifies the signature with the raw P-256 `point`.
pub fn verify_signature(p: &Parsed, point: &[u8]) -> Result<(), IdentityError> {
    aws_lc_rs::signature::UnparsedPublicKey::new(
        &aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED,
        point,
    )
    .verify(p.signed.as_bytes(), &p.signature)
    .map_err(|_| IdentityError::Signature)
}

type HttpsClient = hyper_util::client::legacy::Client<
    hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
    Empty<hyper::body::Bytes>,
>;

/// HTTPS on the binary's one TLS stack, verified against the system's
/// roots.
fn https_config() -> Result<rustls::ClientConfig, IdentityError> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
    let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| IdentityError::Key(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// Verifies the ALB's signed identity, fetching (and keeping) its public
/// keys by key id from `keys_url` (AWS: the region's
/// `https://public-keys.auth.elb.<region>.amazonaws.com`).
pub struct AlbOidc {
    signer_arn: String,
    keys_url: String,
    client: HttpsClient,
    keys: Mutex<HashMap<String, Vec<u8>>>,
}

impl AlbOidc {
    pub fn new(signer_arn: String, keys_url: String) -> Result<Self, IdentityError> {
        let config = https_config()?;
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(config)
            .https_or_http()
            .enable_http1()
            .build();
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build(https);
        Ok(Self {
            signer_arn,
            keys_url: keys_url.trim_end_matches('/').to_string(),
            client,
            keys: Mutex::new(HashMap::new()),
        })
    }

    async fn key(&self, kid: &str) -> Result<Vec<u8>, IdentityError> {
        if let Some(k) = self.keys.lock().unwrap_or_else(|e| e.into_inner()).get(kid) {
            return Ok(k.clone());
        }
        let url = format!("{}/{kid}", self.keys_url);
        let uri: hyper::Uri = url.parse().map_err(|_| IdentityError::KeyId)?;
        let fetch = async {
            let response = self
                .client
                .get(uri)
                .await
                .map_err(|e| IdentityError::Key(format!("{url}: {e}")))?;
            if !response.status().is_success() {
                return Err(IdentityError::Key(format!("{url}: {}", response.status())));
            }
            let body = Limited::new(response.into_body(), 16 * 1024)
                .collect()
                .await
                .map_err(|e| IdentityError::Key(format!("{url}: {e}")))?
                .to_bytes();
            Ok(String::from_utf8_lossy(&body).into_owned())
        };
        let pem = tokio::time::timeout(std::time::Duration::from_secs(5), fetch)
            .await
            .map_err(|_| IdentityError::Key(format!("{url}: timed out")))??;
        let point = p256_point(&pem)?;
        self.keys
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(kid.to_string(), point.clone());
        Ok(point)
    }

    /// The signed-in person, when `token` verifies.
    pub async fn verify(&self, token: &str, now_secs: i64) -> Result<Actor, IdentityError> {
        let parsed = parse(token)?;
        check(&parsed, &self.signer_arn, now_secs)?;
        let point = self.key(&parsed.header.kid).await?;
        verify_signature(&parsed, &point)?;
        Ok(Actor::SignedIn {
            subject: parsed.claims.sub,
            email: parsed.claims.email,
        })
    }
}

/// Puts the [`Actor`] of an action request into its extensions (after the
/// token check): refused with 401 when an identity header does not verify.
pub async fn identify(State(s): State<ApiState>, mut req: Request, next: Next) -> Response {
    let header = req
        .headers()
        .get(OIDC_DATA_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let actor = match (&s.actors.oidc, header) {
        (Some(oidc), Some(token)) => {
            match oidc.verify(&token, chrono::Utc::now().timestamp()).await {
                Ok(actor) => actor,
                Err(e) => {
                    tracing::warn!(error = %e, client = %super::auth::client_of(&req), "refused an action: the load balancer's identity did not verify");
                    return ApiError::unauthorized(format!("{e}")).into_response();
                }
            }
        }
        _ => Actor::Token {
            name: s.actors.token_name.clone(),
        },
    };
    req.extensions_mut().insert(actor);
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lc_rs::rand::SystemRandom;
    use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};

    const SIGNER: &str =
        "arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/app/api/0123456789abcdef";

    fn b64(v: &serde_json::Value) -> String {
        // Padded, as the ALB writes it.
        base64::engine::general_purpose::URL_SAFE.encode(v.to_string())
    }

    fn signed(header: serde_json::Value, claims: serde_json::Value, key: &EcdsaKeyPair) -> String {
        let signed = format!("{}.{}", b64(&header), b64(&claims));
        let sig = key.sign(&SystemRandom::new(), signed.as_bytes()).unwrap();
        format!(
            "{signed}.{}",
            base64::engine::general_purpose::URL_SAFE.encode(sig.as_ref())
        )
    }

    fn key() -> EcdsaKeyPair {
        let pkcs8 =
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
                .unwrap();
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref()).unwrap()
    }

    #[test]
    fn tokens_are_checked_for_algorithm_key_id_signer_expiry_and_signature() {
        let k = key();
        let other = key();
        let now = 1_800_000_000;
        let h = |alg: &str, kid: &str, signer: &str| serde_json::json!({"alg": alg, "kid": kid, "signer": signer, "exp": now + 60});
        let claims = serde_json::json!({"sub": "u-1", "email": "alice@example.com"});
        let good = signed(h("ES256", "k-1", SIGNER), claims.clone(), &k);
        let p = parse(&good).unwrap();
        assert_eq!(check(&p, SIGNER, now), Ok(()));
        assert_eq!(verify_signature(&p, k.public_key().as_ref()), Ok(()));
        assert_eq!(
            verify_signature(&p, other.public_key().as_ref()),
            Err(IdentityError::Signature)
        );
        let cases: Vec<(String, IdentityError)> = vec![
            (
                signed(h("HS256", "k-1", SIGNER), claims.clone(), &k),
                IdentityError::Algorithm("HS256".into()),
            ),
            (
                signed(h("ES256", "../../x", SIGNER), claims.clone(), &k),
                IdentityError::KeyId,
            ),
            (
                signed(h("ES256", "k-1", "arn:other"), claims.clone(), &k),
                IdentityError::Signer("arn:other".into()),
            ),
            (
                signed(
                    serde_json::json!({"alg": "ES256", "kid": "k", "signer": SIGNER, "exp": now - 3600}),
                    claims.clone(),
                    &k,
                ),
                IdentityError::Expired,
            ),
            (
                signed(
                    serde_json::json!({"alg": "ES256", "kid": "k", "signer": SIGNER}),
                    claims.clone(),
                    &k,
                ),
                IdentityError::Expired,
            ),
        ];
        for (token, wanted) in cases {
            assert_eq!(check(&parse(&token).unwrap(), SIGNER, now), Err(wanted));
        }
        // A claim changed after signing no longer verifies.
        let mut parts: Vec<String> = good.split('.').map(str::to_string).collect();
        parts[1] = b64(&serde_json::json!({"sub": "u-1", "email": "mallory@example.com"}));
        let forged = parse(&parts.join(".")).unwrap();
        assert_eq!(
            verify_signature(&forged, k.public_key().as_ref()),
            Err(IdentityError::Signature)
        );
    }

    #[test]
    fn malformed_tokens_are_refused_not_panicked_on() {
        for bad in ["", "a", "a.b", "a.b.c.d", "!!.??.**", "e30.e30.e30"] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_p256_public_key_in_pem_gives_its_point() {
        let k = key();
        let mut der = vec![
            0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06,
            0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
        ];
        der.extend_from_slice(k.public_key().as_ref());
        let pem = format!(
            "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
            base64::engine::general_purpose::STANDARD.encode(&der)
        );
        assert_eq!(p256_point(&pem).unwrap(), k.public_key().as_ref());
        assert!(
            p256_point("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n").is_err()
        );
        assert!(p256_point("not pem").is_err());
    }
}
