//! AWS credentials and region through `aws-config`'s standard chain, as the
//! AWS CLI and SDKs find them: environment, the profile of `AWS_PROFILE`
//! in `~/.aws/config` and `~/.aws/credentials` (static keys, SSO,
//! `credential_process`, role assumption), web identity, the container
//! endpoint and instance metadata. object_store alone reads the
//! environment, web identity and instance metadata, but no profile.
//!
//! Keys in the environment (`AWS_ACCESS_KEY_ID`) are used as they are, by
//! object_store itself: the chain would find them first too, and a command
//! then pays nothing for the chain.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_credential_types::provider::ProvideCredentials;
use object_store::aws::AwsCredential;
use tokio::sync::{Mutex, OnceCell};

/// Credentials this close to their expiry are fetched again.
const REFRESH_BEFORE: Duration = Duration::from_secs(5 * 60);

/// Whether static keys are in the environment.
pub fn keys_in_env() -> bool {
    std::env::var_os("AWS_ACCESS_KEY_ID").is_some()
}

/// The profile named by `AWS_PROFILE` (`AWS_DEFAULT_PROFILE`), if any.
pub fn profile_name() -> Option<String> {
    ["AWS_PROFILE", "AWS_DEFAULT_PROFILE"]
        .iter()
        .find_map(|v| std::env::var(v).ok().filter(|p| !p.is_empty()))
}

/// The region of the selected profile, for when the environment names
/// none. Read on a thread of its own: opening a store is synchronous and
/// may run inside a runtime; a profile file is read without the network.
pub fn profile_region() -> Option<String> {
    if std::env::var_os("AWS_REGION").is_some() || std::env::var_os("AWS_DEFAULT_REGION").is_some()
    {
        return None;
    }
    std::thread::scope(|s| {
        s.spawn(|| {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            rt.block_on(async {
                use aws_config::meta::region::ProvideRegion;
                let mut b = aws_config::profile::ProfileFileRegionProvider::builder();
                if let Some(p) = profile_name() {
                    b = b.profile_name(p);
                }
                b.build().region().await.map(|r| r.to_string())
            })
        })
        .join()
        .ok()
        .flatten()
    })
}

/// object_store's credential provider over aws-config's default chain:
/// built on first use, credentials cached until shortly before they
/// expire (SSO and role credentials are temporary).
#[derive(Debug)]
pub struct ChainProvider {
    region: Option<String>,
    chain: OnceCell<aws_config::default_provider::credentials::DefaultCredentialsChain>,
    cached: Mutex<Option<(Arc<AwsCredential>, Option<SystemTime>)>>,
}

impl ChainProvider {
    pub fn new(region: Option<String>) -> Self {
        ChainProvider {
            region,
            chain: OnceCell::new(),
            cached: Mutex::new(None),
        }
    }
}

fn chain_error(e: impl std::fmt::Display) -> object_store::Error {
    let profile = profile_name().map_or(String::new(), |p| format!(" (profile {p:?})"));
    object_store::Error::Generic {
        store: "S3",
        source: format!("{AWS_CHAIN_FAILED}{profile}: {e}").into(),
    }
}

/// An error and its sources, as text (aws-config's chain lists each
/// provider it tried in a source).
fn causes(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let more = c.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        cause = c.source();
    }
    text
}

/// What the chain's profile provider said, when a profile was selected
/// and it gave no credentials (`profile `dev` was not defined: ...`).
pub fn profile_failure(e: &crate::Error) -> Option<(String, String)> {
    let profile = profile_name()?;
    let text = match e {
        crate::Error::Storage(e) => causes(e),
        _ => return None,
    };
    if !text.contains(AWS_CHAIN_FAILED) {
        return None;
    }
    let said = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("Profile: "))
        .map(|l| {
            l.trim_start_matches("the credential provider was not enabled: ")
                .to_string()
        })?;
    Some((profile, said))
}

/// How a failure of the chain begins: [`crate::Error::storage_problem`]
/// recognizes it.
pub const AWS_CHAIN_FAILED: &str = "no AWS credentials from the standard chain";

#[async_trait::async_trait]
impl object_store::CredentialProvider for ChainProvider {
    type Credential = AwsCredential;

    async fn get_credential(&self) -> object_store::Result<Arc<AwsCredential>> {
        let mut cached = self.cached.lock().await;
        if let Some((c, expiry)) = cached.as_ref()
            && expiry.is_none_or(|t| t > SystemTime::now() + REFRESH_BEFORE)
        {
            return Ok(c.clone());
        }
        let chain = self
            .chain
            .get_or_init(|| async {
                let mut b =
                    aws_config::default_provider::credentials::DefaultCredentialsChain::builder();
                if let Some(r) = &self.region {
                    b = b.region(aws_config::Region::new(r.clone()));
                }
                // object_store's name for the metadata endpoint, honoured
                // as before (aws-config reads its own,
                // AWS_EC2_METADATA_SERVICE_ENDPOINT, itself).
                if std::env::var_os("AWS_EC2_METADATA_SERVICE_ENDPOINT").is_none()
                    && let Ok(endpoint) = std::env::var("AWS_METADATA_ENDPOINT")
                    && let Ok(imds) = aws_config::imds::Client::builder().endpoint(&endpoint)
                {
                    b = b.imds_client(imds.build());
                }
                b.build().await
            })
            .await;
        let c = chain
            .provide_credentials()
            .await
            .map_err(|e| chain_error(causes(&e)))?;
        let credential = Arc::new(AwsCredential {
            key_id: c.access_key_id().to_string(),
            secret_key: c.secret_access_key().to_string(),
            token: c.session_token().map(str::to_string),
        });
        *cached = Some((credential.clone(), c.expiry()));
        Ok(credential)
    }
}
