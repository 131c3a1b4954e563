//! `protoshelf namespace ...`

use protoshelf::Result;
use protoshelf::compat::Policy;
use serde_json::json;

use super::Ctx;
use super::author::AuthorArgs;
use super::publish::fmt_version;

#[derive(clap::Subcommand)]
pub enum Cmd {
    /// Create a namespace.
    Create {
        /// The namespace to create.
        namespace: String,
        /// The compatibility policy a promote checks against current.
        #[arg(long, default_value = "strict", value_parser = policy_values())]
        policy: Policy,
        /// Metadata entries, repeatable.
        #[arg(long = "metadata", value_name = "KEY=VALUE", value_parser = parse_kv)]
        metadata: Vec<(String, String)>,
        #[command(flatten)]
        author: AuthorArgs,
    },
    /// List namespaces.
    List,
    /// Show a namespace: policy, schemas, staged versions.
    Info {
        /// The namespace to show.
        #[arg(add = super::complete::namespaces())]
        namespace: String,
    },
    /// Set a namespace's compatibility policy.
    SetPolicy {
        /// The namespace to change.
        #[arg(add = super::complete::namespaces())]
        namespace: String,
        /// The new policy.
        #[arg(value_parser = policy_values())]
        policy: Policy,
        #[command(flatten)]
        author: AuthorArgs,
    },
}

/// Parses a policy and lists its values in `--help` and in errors.
fn policy_values() -> impl clap::builder::TypedValueParser<Value = Policy> {
    use clap::builder::TypedValueParser;
    clap::builder::PossibleValuesParser::new(["strict", "wire", "wire_json", "none"])
        .map(|s| s.parse::<Policy>().expect("one of the listed values"))
}

pub fn parse_kv(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("{s:?} is not KEY=VALUE")),
    }
}

pub async fn run(ctx: &Ctx, cmd: Cmd) -> Result<()> {
    // Creating a namespace is the one namespace command that may create
    // the store (a first write; reads of a missing store refuse).
    if let Cmd::Create { author, .. } | Cmd::SetPolicy { author, .. } = &cmd {
        ctx.commits_as(author);
    }
    let registry = if matches!(cmd, Cmd::Create { .. }) {
        ctx.registry_creating().await?
    } else {
        ctx.registry().await?
    };
    let store = registry.store();
    match cmd {
        Cmd::Create {
            namespace,
            policy,
            metadata,
            ..
        } => {
            registry
                .create_namespace(&namespace, policy, metadata.into_iter().collect())
                .await?;
            let value = json!({"namespace_id": namespace, "policy": policy});
            ctx.emit(&value, || {
                outln!("created namespace {namespace} (policy {policy})")
            });
        }
        Cmd::List => {
            let all = store.list_namespaces().await?;
            let value: Vec<_> = all
                .iter()
                .map(|n| {
                    json!({"namespace_id": n.id, "created_at": n.created_at,
                    "created_by": n.created_by, "metadata": n.metadata})
                })
                .collect();
            ctx.emit(&value, || {
                for n in &all {
                    outln!(
                        "{:<32} created {}",
                        n.id,
                        n.created_at.format("%Y-%m-%d %H:%M:%S UTC")
                    );
                }
            });
        }
        Cmd::Info { namespace } => {
            let ns = store.get_namespace(&namespace).await?;
            let state = store.namespace_state(&namespace).await?;
            let policy = registry.policy(&namespace).await?;
            let staged: Vec<_> = state
                .staged_schemas()
                .map(|(s, p)| json!({"schema_id": s, "current_version": p.current, "staged_version": p.staged}))
                .collect();
            let schemas = state.snapshot.schemas.len();
            let value = json!({
                "namespace_id": ns.id, "created_at": ns.created_at, "created_by": ns.created_by,
                "metadata": ns.metadata,
                "policy": policy, "schemas": schemas, "staged": staged, "commits": state.seq,
            });
            ctx.emit(&value, || {
                outln!("namespace {}", ns.id);
                outln!(
                    "  created   {}",
                    ns.created_at.format("%Y-%m-%d %H:%M:%S UTC")
                );
                if let Some(who) = &ns.created_by {
                    outln!("  by        {who}");
                }
                outln!("  policy    {policy}");
                outln!("  schemas   {schemas}");
                outln!("  commits   {}", state.seq);
                for (k, v) in &ns.metadata {
                    outln!("  metadata  {k}={v}");
                }
                for (schema, p) in state.staged_schemas() {
                    outln!(
                        "  staged    {schema} v{} (current {})",
                        fmt_version(p.staged),
                        fmt_version(p.current)
                    );
                }
            });
        }
        Cmd::SetPolicy {
            namespace, policy, ..
        } => {
            let changed = registry.set_policy(&namespace, policy).await?;
            let value = json!({"namespace_id": namespace, "policy": policy, "no_change": !changed});
            ctx.emit(&value, || {
                if changed {
                    outln!("namespace {namespace}: policy {policy}")
                } else {
                    outln!("namespace {namespace}: policy is {policy} already: nothing to do")
                }
            });
        }
    }
    Ok(())
}
