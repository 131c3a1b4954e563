//! AWS credentials from a named profile (aws-config's standard chain)
//! against LocalStack: no keys in the environment, a config and a
//! credentials file in a temporary directory, `AWS_PROFILE` selecting one.

use std::process::{Command, Output};

/// The binary with the LocalStack endpoint but no keys in the
/// environment, the profile files in `dir`, and no instance metadata
/// (the metadata endpoint refuses: nothing leaves the machine).
fn run(dir: &std::path::Path, profile: &str, url: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_protoshelf"))
        .arg("--store")
        .arg(url)
        .args(args)
        .args(["--storage-timeout", "10s"])
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .env_remove("AWS_SESSION_TOKEN")
        .env_remove("AWS_REGION")
        .env_remove("AWS_DEFAULT_REGION")
        .env_remove("AWS_DEFAULT_PROFILE")
        .env_remove("PROTOSHELF_STORE")
        .env_remove("RUST_LOG")
        .env("AWS_PROFILE", profile)
        .env("AWS_CONFIG_FILE", dir.join("config"))
        .env("AWS_SHARED_CREDENTIALS_FILE", dir.join("credentials"))
        .env("AWS_METADATA_ENDPOINT", "http://127.0.0.1:1")
        .env("AWS_EC2_METADATA_SERVICE_ENDPOINT", "http://127.0.0.1:1")
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn named_profiles_give_credentials_and_region() {
    if !crate::common::s3_enabled() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // LocalStack's test keys, in the profile files only.
    let key = std::env::var("AWS_ACCESS_KEY_ID").unwrap_or_else(|_| "test".into());
    let secret = std::env::var("AWS_SECRET_ACCESS_KEY").unwrap_or_else(|_| "test".into());
    std::fs::write(
        dir.path().join("config"),
        "[profile dev]\nregion = us-east-1\n\n[profile elsewhere]\nregion = eu-central-1\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("credentials"),
        format!(
            "[dev]\naws_access_key_id = {key}\naws_secret_access_key = {secret}\n\n[elsewhere]\naws_access_key_id = {key}\naws_secret_access_key = {secret}\n"
        ),
    )
    .unwrap();
    // The test bucket may not exist yet when this test runs first.
    crate::common::ensure_bucket().await;
    let url = format!(
        "s3://{}/profiles-{}",
        crate::common::TEST_BUCKET,
        uuid::Uuid::new_v4().simple()
    );
    let ok = |profile: &str, args: &[&str]| {
        let out = run(dir.path(), profile, &url, args);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(
            out.status.success(),
            "AWS_PROFILE={profile} {args:?}: {stderr}"
        );
        (String::from_utf8(out.stdout).unwrap(), stderr)
    };
    ok("dev", &["init"]);
    ok("dev", &["namespace", "create", "shop"]);
    let (listed, stderr) = ok("dev", &["namespace", "list"]);
    assert!(listed.contains("shop"), "{listed}");
    // aws-config's internals (Debug forms of its providers) stay out of -v.
    assert!(!stderr.contains("ProfileChain"), "{stderr}");
    // The region comes from the profile when the environment names none.
    let (_, verbose) = ok("elsewhere", &["-v", "namespace", "list"]);
    assert!(
        verbose.contains("region eu-central-1 from the AWS profile \"elsewhere\""),
        "{verbose}"
    );

    // A profile that does not exist: exit 1, naming it and what to do.
    let out = run(dir.path(), "nope", &url, &["namespace", "list"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    for needle in [
        "from the profile \"nope\" (AWS_PROFILE)",
        "`nope` was not defined",
        "hint: define the profile in ~/.aws/config",
    ] {
        assert!(stderr.contains(needle), "{needle:?} not in {stderr}");
    }
    assert!(
        !stderr.contains("ProviderChainError"),
        "Debug internals: {stderr}"
    );
    let out = run(
        dir.path(),
        "nope",
        &url,
        &["-o", "json", "namespace", "list"],
    );
    let body: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(body["error"]["exit_code"], 1);
}
