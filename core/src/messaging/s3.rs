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
        #[source]
        source: BoxError,
    },
    #[error("s3://{bucket}/{key} is larger than {limit} bytes")]
    TooLarge {
        bucket: String,
        key: String,
        limit: usize,
    },
    #[error("s3://{bucket}/{key} is not UTF-8")]
    NotText { bucket: String, key: String },
    #[error("writing s3://{bucket}/{key} failed")]
    Put {
        bucket: String,
        key: String,
        #[source]
        source: BoxError,
    },
}

/// Fetches a pointed-to payload, refusing more than `limit` bytes.
pub async fn fetch(
    client: &aws_sdk_s3::Client,
    p: &Pointer,
    limit: usize,
) -> Result<String, S3Error> {
    let err = |source: BoxError| S3Error::Get {
        bucket: p.bucket.clone(),
        key: p.key.clone(),
        source,
    };
    let out = client
        .get_object()
        .bucket(&p.bucket)
        .key(&p.key)
        .send()
        .await
        .map_err(|e| err(Box::new(e)))?;
    if out.content_length().unwrap_or(0) as usize > limit {
        return Err(S3Error::TooLarge {
            bucket: p.bucket.clone(),
            key: p.key.clone(),
            limit,
        });
    }
    let bytes = out
        .body
        .collect()
        .await
        .map_err(|e| err(Box::new(e)))?
        .into_bytes();
    if bytes.len() > limit {
        return Err(S3Error::TooLarge {
            bucket: p.bucket.clone(),
            key: p.key.clone(),
            limit,
        });
    }
    String::from_utf8(bytes.to_vec()).map_err(|_| S3Error::NotText {
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

    proptest! {
        #[test]
        fn arbitrary_bodies_never_panic(s in ".{0,200}") {
            let _ = parse_pointer(&s);
            let _ = parse_pointer(&format!("[\"{POINTER_CLASS}\",{s}]"));
        }
    }
}
