//! Administrative S3 calls object_store does not offer (bucket creation),
//! through aws-sdk-s3 configured from the same standard AWS environment.

use crate::error::{Error, Result};

/// Creates the bucket of an `s3://bucket/prefix` URL if it does not exist.
/// Returns whether it was created.
pub async fn create_bucket(url: &str) -> Result<bool> {
    let parsed = url::Url::parse(url).map_err(|e| Error::InvalidUrl {
        url: url.into(),
        reason: e.to_string(),
    })?;
    if !matches!(parsed.scheme(), "s3" | "s3a") {
        return Err(Error::InvalidUrl {
            url: url.into(),
            reason: "--create-bucket works for s3:// stores only; create GCS buckets and Azure containers with their own tools".into(),
        });
    }
    let bucket = parsed.host_str().unwrap_or_default();
    let conf = aws_config::from_env().load().await;
    let s3 = aws_sdk_s3::config::Builder::from(&conf)
        // LocalStack and MinIO serve path-style requests.
        .force_path_style(std::env::var("AWS_ENDPOINT_URL").is_ok())
        .build();
    let client = aws_sdk_s3::Client::from_conf(s3);
    if client.head_bucket().bucket(bucket).send().await.is_ok() {
        return Ok(false);
    }
    match client.create_bucket().bucket(bucket).send().await {
        Ok(_) => Ok(true),
        Err(e) => {
            let svc = e.as_service_error();
            if svc.is_some_and(|s| s.is_bucket_already_owned_by_you()) {
                return Ok(false);
            }
            Err(Error::Storage(object_store::Error::Generic {
                store: "S3",
                source: format!(
                    "creating bucket {bucket}: {}",
                    aws_sdk_s3::error::DisplayErrorContext(&e)
                )
                .into(),
            }))
        }
    }
}
