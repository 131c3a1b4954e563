//! `protoshelf namespace ...`

use protoshelf::Result;
use protoshelf::compat::Policy;
use protoshelf::registry::CompatScope;
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
        /// Which earlier versions a new version is checked against: the
        /// current one (latest), or every version ever current (all).
        #[arg(long, default_value = "latest", value_parser = scope_values())]
        compat_scope: CompatScope,
        /// The parent namespace: imports not found here resolve through it
        /// (and its ancestors, then __builtins__), pinned to the version
        /// each was compiled against.
        #[arg(long, value_name = "NAMESPACE")]
        parent: Option<String>,
        /// Metadata entries, repeatable.
        #[arg(long = "metadata", value_name = "KEY=VALUE", value_parser = parse_kv)]
        metadata: Vec<(String, String)>,
        #[command(flatten)]
        author: AuthorArgs,
    },
    /// List namespaces.
    List {
        /// List the soft-deleted namespaces instead.
        #[arg(long)]
        deleted: bool,
    },
    /// Soft-delete a namespace: hidden from `namespace list`, its trees
    /// empty in the mount, closed to writes; every version stays readable.
    Delete {
        /// The namespace to delete.
        namespace: String,
        #[command(flatten)]
        author: AuthorArgs,
    },
    /// Restore a soft-deleted namespace.
    Undelete {
        /// The namespace to restore.
        namespace: String,
        #[command(flatten)]
        author: AuthorArgs,
    },
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
    /// Set a namespace's parent (__builtins__ or --none: no parent). One
    /// commit in its log; an unknown or deleted parent, a cycle or a chain
    /// deeper than 8 namespaces is refused.
    SetParent {
        /// The namespace to change.
        #[arg(add = super::complete::namespaces())]
        namespace: String,
        /// The new parent.
        #[arg(required_unless_present = "none", conflicts_with = "none")]
        parent: Option<String>,
        /// Clear the parent: the chain ends at __builtins__.
        #[arg(long)]
        none: bool,
        #[command(flatten)]
        author: AuthorArgs,
    },
    /// Set which earlier versions promote, check and rollback compare a new
    /// version with: latest (the current one) or all (every version ever
    /// current, transitive).
    SetCompatScope {
        /// The namespace to change.
        namespace: String,
        /// The new scope.
        #[arg(value_parser = scope_values())]
        scope: CompatScope,
        #[command(flatten)]
        author: AuthorArgs,
    },
}

/// Parses a compatibility scope and lists its values in `--help`.
fn scope_values() -> impl clap::builder::TypedValueParser<Value = CompatScope> {
    use clap::builder::TypedValueParser;
    clap::builder::PossibleValuesParser::new(["latest", "all"])
        .map(|s| s.parse::<CompatScope>().expect("one of the listed values"))
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
    if let Cmd::Create { author, .. }
    | Cmd::SetPolicy { author, .. }
    | Cmd::SetCompatScope { author, .. }
    | Cmd::SetParent { author, .. }
    | Cmd::Delete { author, .. }
    | Cmd::Undelete { author, .. } = &cmd
    {
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
            compat_scope,
            parent,
            metadata,
            ..
        } => {
            registry
                .create_namespace_with_parent(
                    &namespace,
                    policy,
                    metadata.into_iter().collect(),
                    parent.as_deref(),
                )
                .await?;
            registry.set_compat_scope(&namespace, compat_scope).await?;
            let parent = registry.parent(&namespace).await?;
            let value = json!({"namespace_id": namespace, "policy": policy,
                "compat_scope": compat_scope, "parent": parent});
            ctx.emit(&value, || {
                let under = parent.as_deref().map(|p| format!(", parent {p}")).unwrap_or_default();
                outln!("created namespace {namespace} (policy {policy}, compatibility scope {compat_scope}{under})")
            });
        }
        Cmd::List { deleted } => {
            let all = registry.list_namespaces(deleted).await?;
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
            let scope = registry.compat_scope(&namespace).await?;
            let deleted = protoshelf::registry::delete::is_deleted(&state.snapshot.config);
            let ancestors = registry.ancestors(&namespace).await?;
            let staged: Vec<_> = state
                .staged_schemas()
                .map(|(s, p)| json!({"schema_id": s, "current_version": p.current, "staged_version": p.staged}))
                .collect();
            let schemas = state.snapshot.schemas.len();
            let value = json!({
                "namespace_id": ns.id, "created_at": ns.created_at, "created_by": ns.created_by,
                "metadata": ns.metadata, "policy": policy, "compat_scope": scope, "deleted": deleted,
                "schemas": schemas, "staged": staged, "commits": state.seq,
                "parent": ancestors.first(), "ancestors": ancestors,
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
                outln!("  scope     {scope}");
                if !ancestors.is_empty() {
                    outln!("  parent    {}", ancestors.join(" -> "));
                }
                if deleted {
                    outln!("  deleted   yes (namespace undelete restores it)");
                }
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
        Cmd::Delete { namespace, .. } => {
            let changed = registry.delete_namespace(&namespace).await?;
            ctx.report_change(
                json!({"namespace_id": namespace}),
                &format!("namespace {namespace}"),
                "deleted",
                changed,
            );
        }
        Cmd::Undelete { namespace, .. } => {
            let changed = registry.undelete_namespace(&namespace).await?;
            ctx.report_change(
                json!({"namespace_id": namespace}),
                &format!("namespace {namespace}"),
                "restored",
                changed,
            );
        }
        Cmd::SetParent {
            namespace, parent, ..
        } => {
            let changed = registry.set_parent(&namespace, parent.as_deref()).await?;
            let parent = registry.parent(&namespace).await?;
            let shown = parent.as_deref().unwrap_or(protoshelf::ids::BUILTINS);
            ctx.report_change(
                json!({"namespace_id": namespace, "parent": parent}),
                &format!("the parent of namespace {namespace}"),
                &format!("set to {shown}"),
                changed,
            );
        }
        Cmd::SetCompatScope {
            namespace, scope, ..
        } => {
            registry.set_compat_scope(&namespace, scope).await?;
            let value = json!({"namespace_id": namespace, "compat_scope": scope});
            ctx.emit(&value, || {
                outln!("namespace {namespace}: compatibility scope {scope}")
            });
        }
    }
    Ok(())
}
