//! Large payloads in S3 using the AWS Extended Client pointer format:
//! `["software.amazon.payloadoffloading.PayloadS3Pointer",{"s3BucketName":…,"s3Key":…}]`.

use aws_sdk_s3::primitives::ByteStream;
use serde_json::{json, Value};

pub const POINTER_CLASS: &str = "software.amazon.payloadoffloading.PayloadS3Pointer";
/// Message attribute with the real payload size (the legacy name is also read).
pub const SIZE_ATTRIBUTE: &str = "ExtendedPayloadSize";
pub const LEGACY_SIZE_ATTRIBUTE: &str = "SQSLargePayloadSize";
/// SNS and SQS refuse messages above 256 KiB (body and attributes together).
pub const MESSAGE_LIMIT: usize = 256 * 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pointer {
    pub bucket: String,
    pub key: String,
}

/// The pointer a body holds, if it is one (anything else is a plain body).
pub fn parse_pointer(body: &str) -> Option<Pointer> {
    let trimmed = body.trim_start();
    if !trimmed.starts_with('[') || !trimmed.contains(POINTER_CLASS) {
        return None;
    }
    let v: Value = serde_json::from_str(trimmed).ok()?;
    let arr = v.as_array()?;
    if arr.len() != 2 || arr[0].as_str() != Some(POINTER_CLASS) {
        return None;
    }
    let bucket = arr[1].get("s3BucketName")?.as_str()?.to_string();
    let key = arr[1].get("s3Key")?.as_str()?.to_string();
    (!bucket.is_empty() && !key.is_empty()).then_some(Pointer { bucket, key })
}

pub fn pointer_body(p: &Pointer) -> String {
    json!([POINTER_CLASS, {"s3BucketName": p.bucket, "s3Key": p.key}]).to_string()
}

type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

#[derive(Debug, thiserror::Error)]
pub enum S3Error {
    #[error("reading s3://{bucket}/{key} failed")]
    Get {
        bucket: String,
        key: String,
        /// The bucket refused (403: access denied, or not the expected
        /// owner's): no retry changes that.
        denied: bool,
        #[source]
        source: BoxError,
    },
    #[error("s3://{bucket}/{key} is larger than {limit} bytes (the message's declared size, or the limit of a message body)")]
    TooLarge {
        bucket: String,
        key: String,
        limit: usize,
    },
    #[error("s3://{bucket}/{key} is not UTF-8")]
    NotText { bucket: String, key: String },
    #[error("s3://{bucket}/{key}: bucket {bucket} is not one this worker reads pointers from (S3_POINTER_BUCKETS)")]
    BucketNotAllowed { bucket: String, key: String },
    #[error("writing s3://{bucket}/{key} failed")]
    Put {
        bucket: String,
        key: String,
        #[source]
        source: BoxError,
    },
}

impl S3Error {
    /// Whether reading again cannot succeed: the message is dead-lettered
    /// at once instead of being retried.
    pub fn is_permanent(&self) -> bool {
        match self {
            S3Error::Get { denied, .. } => *denied,
            S3Error::TooLarge { .. }
            | S3Error::NotText { .. }
            | S3Error::BucketNotAllowed { .. } => true,
            S3Error::Put { .. } => false,
        }
    }
}

/// Which pointers a worker follows (`S3_POINTER_BUCKETS`,
/// `S3_EXPECTED_BUCKET_OWNER`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PointerPolicy {
    /// The buckets pointers may name; any other is refused unread.
    pub buckets: Vec<String>,
    /// The account that must own them (S3's `ExpectedBucketOwner`).
    pub expected_owner: Option<String>,
}

impl PointerPolicy {
    pub fn check(&self, p: &Pointer) -> Result<(), S3Error> {
        if self.buckets.iter().any(|b| b == &p.bucket) {
            Ok(())
        } else {
            Err(S3Error::BucketNotAllowed {
                bucket: p.bucket.clone(),
                key: p.key.clone(),
            })
        }
    }
}

/// Fetches a pointed-to payload, refusing more than `limit` bytes: at once
/// when `Content-Length` says so, else as soon as the bytes read pass it.
pub async fn fetch(
    client: &aws_sdk_s3::Client,
    policy: &PointerPolicy,
    p: &Pointer,
    limit: usize,
) -> Result<String, S3Error> {
    policy.check(p)?;
    let err = |denied: bool, source: BoxError| S3Error::Get {
        bucket: p.bucket.clone(),
        key: p.key.clone(),
        denied,
        source,
    };
    let too_large = || S3Error::TooLarge {
        bucket: p.bucket.clone(),
        key: p.key.clone(),
        limit,
    };
    let mut out = client
        .get_object()
        .bucket(&p.bucket)
        .key(&p.key)
        .set_expected_bucket_owner(policy.expected_owner.clone())
        .send()
        .await
        .map_err(|e| {
            let denied = e.raw_response().is_some_and(|r| r.status().as_u16() == 403);
            err(denied, Box::new(e))
        })?;
    if out.content_length().unwrap_or(0) as usize > limit {
        return Err(too_large());
    }
    let mut bytes = Vec::with_capacity(out.content_length().unwrap_or(0).max(0) as usize);
    let read = async {
        while let Some(chunk) = out
            .body
            .try_next()
            .await
            .map_err(|e| err(false, Box::new(e)))?
        {
            if bytes.len() + chunk.len() > limit {
                return Err(too_large());
            }
            bytes.extend_from_slice(&chunk);
        }
        Ok(())
    };
    // The SDK's operation timeout ends when the headers arrive; the body
    // gets the same bound of its own.
    tokio::time::timeout(super::OPERATION_TIMEOUT, read)
        .await
        .map_err(|_| err(false, "the object's body did not arrive in time".into()))??;
    String::from_utf8(bytes).map_err(|_| S3Error::NotText {
        bucket: p.bucket.clone(),
        key: p.key.clone(),
    })
}

/// Stores a payload and returns the pointer to send instead.
pub async fn offload(
    client: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    payload: &str,
) -> Result<Pointer, S3Error> {
    client
        .put_object()
        .bucket(bucket)
        .key(key)
        .content_type("application/json")
        .body(ByteStream::from(payload.as_bytes().to_vec()))
        .send()
        .await
        .map_err(|e| S3Error::Put {
            bucket: bucket.into(),
            key: key.into(),
            source: Box::new(e),
        })?;
    Ok(Pointer {
        bucket: bucket.into(),
        key: key.into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn pointers_round_trip_and_plain_bodies_are_not_pointers() {
        let p = Pointer {
            bucket: "b".into(),
            key: "k/1.json".into(),
        };
        assert_eq!(parse_pointer(&pointer_body(&p)), Some(p));
        assert_eq!(parse_pointer(r#"{"event": "projection_update"}"#), None);
        assert_eq!(
            parse_pointer(
                r#"["software.amazon.payloadoffloading.PayloadS3Pointer", {"s3BucketName": ""}]"#
            ),
            None
        );
        assert_eq!(
            parse_pointer(r#"["other", {"s3BucketName": "b", "s3Key": "k"}]"#),
            None
        );
    }

    #[test]
    fn only_configured_buckets_are_read_and_refusals_are_permanent() {
        let policy = PointerPolicy {
            buckets: vec!["payloads".into()],
            expected_owner: None,
        };
        let at = |bucket: &str| Pointer {
            bucket: bucket.into(),
            key: "k".into(),
        };
        assert!(policy.check(&at("payloads")).is_ok());
        let refused = policy.check(&at("someone-elses")).unwrap_err();
        assert!(refused.is_permanent());
        assert!(
            refused.to_string().contains("S3_POINTER_BUCKETS"),
            "{refused}"
        );
        assert!(PointerPolicy::default().check(&at("payloads")).is_err());
        let transient = S3Error::Get {
            bucket: "b".into(),
            key: "k".into(),
            denied: false,
            source: "timeout".into(),
        };
        assert!(!transient.is_permanent());
        let denied = S3Error::Get {
            bucket: "b".into(),
            key: "k".into(),
            denied: true,
            source: "403".into(),
        };
        assert!(denied.is_permanent());
    }

    proptest! {
        #[test]
        fn arbitrary_bodies_never_panic(s in ".{0,200}") {
            let _ = parse_pointer(&s);
            let _ = parse_pointer(&format!("[\"{POINTER_CLASS}\",{s}]"));
        }
    }
}
