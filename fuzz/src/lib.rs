//! The bodies of the fuzz targets, shared by the cargo-fuzz targets
//! (`fuzz/fuzz_targets/`) and by `cargo test`, whose `fuzz_regressions`
//! module runs them over every saved input (seed corpora and regressions).
//!
//! A body panics only when protoshelf misbehaves: every input, however
//! malformed, must come back as an `Err` (or `Ok`), never a panic, a stack
//! overflow, a hang or unbounded memory. Each target owns a named
//! in-memory store holding a small real registry (a schema published and
//! promoted), so inputs reach the same code a real store's objects do.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload, path::Path};
use prost::Message;
use protoshelf::compat::{self, Policy};
use protoshelf::fs::{FsCore, Options};
use protoshelf::objstore::protocol::ObjectCodec;
use protoshelf::objstore::{keys, log::JsonLog, records::*, sha256_hex, url};
use protoshelf::registry::compile::stored_pool;
use protoshelf::registry::{PublishOptions, SourceFile};
use protoshelf::{ObjStore, Registry};
use serde::{Serialize, de::DeserializeOwned};

/// The namespace and schema of every fixture.
pub const NS: &str = "fz";
pub const SCHEMA: &str = "a";
pub const MAIN: &str = "fz/a/order.proto";

/// Version 1 of [`SCHEMA`]: a little of everything the compatibility rules
/// look at (nested types, oneofs, maps, enums, services, imports).
pub const SEED: &str = r#"syntax = "proto3";
package fz.a;
import "google/protobuf/timestamp.proto";
message Order {
  string id = 1;
  repeated Item items = 2;
  google.protobuf.Timestamp at = 3;
  oneof pay { string card = 4; int64 cents = 5; }
  map<string, int32> tags = 6;
  enum State { STATE_UNKNOWN = 0; STATE_DONE = 1; }
  State state = 7;
  reserved 9, 10;
  reserved "old";
}
message Item { string sku = 1; int32 qty = 2; }
service Orders { rpc Get(Item) returns (Order); }
"#;

/// Separates files in a `compile` input: the first is [`MAIN`], the next
/// ones sit beside it (and may import each other).
pub const FILE_SEPARATOR: &[u8] = b"\n=====\n";

struct Fixture {
    rt: tokio::runtime::Runtime,
    url: String,
    raw: Arc<dyn ObjectStore>,
    /// Every object of the fixture, to restore what an input replaced.
    objects: BTreeMap<String, Bytes>,
    registry: Registry,
}

impl Fixture {
    fn new(name: &str) -> Fixture {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let url = format!("memory://{name}");
        let registry = rt.block_on(async {
            let registry = Registry::new(ObjStore::open(&url).await.expect("open fixture"));
            registry
                .create_namespace(NS, Policy::Strict, Default::default())
                .await
                .expect("namespace");
            registry
                .publish(
                    NS,
                    SCHEMA,
                    vec![SourceFile::new(MAIN, SEED)],
                    PublishOptions::default(),
                )
                .await
                .expect("publish seed");
            registry.promote(NS, false).await.expect("promote seed");
            registry
        });
        let raw = url::open(&url).expect("raw fixture").store;
        let objects = rt.block_on(async {
            use futures::TryStreamExt;
            let metas: Vec<_> = raw.list(None).try_collect().await.expect("list");
            let mut objects = BTreeMap::new();
            for m in metas {
                let bytes = raw.get(&m.location).await.unwrap().bytes().await.unwrap();
                objects.insert(m.location.to_string(), bytes);
            }
            objects
        });
        Fixture {
            rt,
            url,
            raw,
            objects,
            registry,
        }
    }

    fn put(&self, key: &str, bytes: Bytes) {
        self.rt
            .block_on(self.raw.put(&Path::from(key), PutPayload::from(bytes)))
            .expect("put");
    }

    /// Puts back the fixture's object at `key` (deletes it if it had none).
    fn restore(&self, key: &str) {
        match self.objects.get(key) {
            Some(b) => self.put(key, b.clone()),
            None => {
                let _ = self.rt.block_on(self.raw.delete(&Path::from(key)));
            }
        }
    }

    /// A handle of its own (empty caches) on the fixture's storage.
    fn fresh(&self) -> protoshelf::Result<Registry> {
        Ok(Registry::new(self.rt.block_on(ObjStore::open(&self.url))?))
    }

    fn manifest_key(&self) -> String {
        keys::version(NS, SCHEMA, 1).to_string()
    }
}

fn fixture(cell: &'static OnceLock<Fixture>, name: &str) -> &'static Fixture {
    cell.get_or_init(|| Fixture::new(name))
}

/// Every read a stored object can reach: catalog, history, verify and the
/// mount's files. Errors are the expected outcome for damaged objects.
fn read_everything(f: &Fixture, registry: &Registry) {
    let store = registry.store();
    f.rt.block_on(async {
        let _ = registry.list_schemas(NS).await;
        let _ = registry.schema_info(NS, SCHEMA).await;
        let _ = store.namespace_state(NS).await;
        let _ = store.log_entries(NS, 0, 8).await;
        let _ = store.get_version(NS, SCHEMA, 1).await;
        let _ = store.load_namespace_current(NS).await;
        let _ = store.verify(Some(NS)).await;
        let _ = registry
            .check(NS, SCHEMA, vec![SourceFile::new(MAIN, SEED)], false)
            .await;
    });
    let core = FsCore::new(store.clone(), f.rt.handle().clone(), mount_options());
    for path in [
        "",
        NS,
        "fz/current",
        "fz/current.binpb",
        "fz/current/fz/a/order.proto",
        "fz/schemas/a/versions/1/descriptor.binpb",
        "fz/schemas/a/versions/1/version.json",
    ] {
        let _ = core.entry(path);
        let _ = core.list(path);
        let _ = core.content(path);
    }
}

fn mount_options() -> Options {
    Options {
        namespaces: Vec::new(),
        refresh: Duration::from_secs(3600),
    }
}

/// `compile`: arbitrary bytes as the `.proto` files of the next version of
/// a stored schema, through normalization, the publish limits, the compile
/// guards, the compiler and the compatibility check (`Registry::check`,
/// which writes nothing); and as a Confluent API schema.
pub fn compile(data: &[u8]) {
    static F: OnceLock<Fixture> = OnceLock::new();
    let f = fixture(&F, "fuzz-compile");
    let mut files = Vec::new();
    let mut rest = data;
    while files.len() < 4 {
        let (part, next) = match find(rest, FILE_SEPARATOR) {
            Some(i) if files.len() < 3 => (&rest[..i], Some(&rest[i + FILE_SEPARATOR.len()..])),
            _ => (rest, None),
        };
        let path = match files.len() {
            0 => MAIN.to_string(),
            n => format!("fz/a/f{n}.proto"),
        };
        files.push(SourceFile::new(path, part));
        match next {
            Some(n) => rest = n,
            None => break,
        }
    }
    let _ =
        f.rt.block_on(f.registry.check(NS, SCHEMA, files.clone(), false));
    if let Ok(main) = std::str::from_utf8(&files[0].content) {
        let others: BTreeMap<String, String> = files[1..]
            .iter()
            .filter_map(|s| Some((s.path.clone(), String::from_utf8(s.content.clone()).ok()?)))
            .collect();
        let mut all = others;
        all.insert(MAIN.to_string(), main.to_string());
        let _ = protoshelf::confluent::schema::Input::parse(main);
        let _ = protoshelf::confluent::schema::compile(MAIN, &all);
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Decodes `bytes` as `T`; what decodes must encode and decode again.
fn round_trip<T: Serialize + DeserializeOwned>(bytes: &[u8]) {
    if let Ok(v) = from_json::<T>("fuzz/object.json", bytes) {
        let again = to_json(&v);
        if let Err(e) = from_json::<T>("fuzz/again.json", &again) {
            panic!(
                "{} decoded, but its encoding does not: {e}\n{}",
                std::any::type_name::<T>(),
                String::from_utf8_lossy(&again)
            );
        }
    }
}

/// `records`: arbitrary bytes as every JSON object protoshelf stores,
/// decoded directly (with a re-encoding check), then planted in place of
/// one of a real store's objects (the first byte picks which) and read
/// through the registry, `verify` and the mount.
pub fn records(data: &[u8]) {
    round_trip::<FormatMarker>(data);
    round_trip::<NamespaceRecord>(data);
    round_trip::<SchemaRecord>(data);
    round_trip::<VersionManifest>(data);
    round_trip::<LogEntry>(data);
    round_trip::<StateSnapshot>(data);
    round_trip::<HeadHint>(data);
    round_trip::<SchemaIdRecord>(data);
    round_trip::<SchemaContentRecord>(data);
    round_trip::<SchemaIdsHint>(data);
    round_trip::<ConfluentConfigRecord>(data);
    let codec = JsonLog {
        writer: "fuzz".into(),
        format_version: FORMAT_VERSION.into(),
        author: Default::default(),
    };
    let _ = codec.decode("fuzz/log.json", data);
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = keys::parse_version_file(text);
    }

    static F: OnceLock<Fixture> = OnceLock::new();
    let f = fixture(&F, "fuzz-records");
    let Some((&pick, body)) = data.split_first() else {
        return;
    };
    let json: Vec<&String> = f
        .objects
        .keys()
        .filter(|k| !k.contains("/blobs/") && !k.contains("/descriptors/"))
        .collect();
    let key = json[pick as usize % json.len()].clone();
    f.put(&key, Bytes::copy_from_slice(body));
    if let Ok(registry) = f.fresh() {
        read_everything(f, &registry);
    }
    f.restore(&key);
}

/// `descriptors`: arbitrary bytes as a `FileDescriptorSet`: decoded the
/// ways protoshelf decodes stored sets, checked for compatibility against
/// the seed both ways under every policy, merged as the mount merges sets;
/// then stored as the descriptor of the seed's version (with a manifest
/// that references it correctly) and read through the registry, `verify`
/// and the mount.
pub fn descriptors(data: &[u8]) {
    static F: OnceLock<Fixture> = OnceLock::new();
    let f = fixture(&F, "fuzz-descriptors");
    let seed = f.objects[&f.manifest_key()].clone();
    let mut manifest: VersionManifest =
        from_json("seed manifest", &seed).expect("seed manifest decodes");
    let seed_set = f.objects[&manifest.descriptor.key].clone();
    let bytes = Bytes::copy_from_slice(data);

    if let Ok(set) = prost_types::FileDescriptorSet::decode(bytes.clone()) {
        for file in &set.file {
            let _ = protoshelf::registry::compile::symbols(file);
            let _ = protoshelf::fs::wkt::print_file(file);
        }
    }
    {
        // The namespace-set builder over the input as a previous set, with
        // the seed version arriving and the input's first file leaving.
        use protoshelf::objstore::nsset::{Arrival, SetFiles, TreeMove, apply};
        if let Ok(prev) = SetFiles::decode("fuzz input", &bytes) {
            let moves = [TreeMove {
                left: prev.names().take(1).cloned().collect(),
                arrives: Some(Arrival {
                    own: manifest.files.iter().map(|f| f.path.clone()).collect(),
                    local_deps: Default::default(),
                    files: std::sync::Arc::new(
                        SetFiles::decode("seed", &seed_set).expect("seed set decodes"),
                    ),
                }),
            }];
            let _ = apply(&prev, &moves).map(|s| s.encode());
        }
    }
    let seed_pool = stored_pool("seed", seed_set).expect("seed set decodes");
    if let Ok(pool) = stored_pool("fuzz input", bytes.clone()) {
        let files: Vec<String> = pool.files().map(|f| f.name().to_string()).collect();
        for policy in [Policy::Strict, Policy::Wire, Policy::WireJson] {
            let _ = compat::check(policy, &pool, &seed_pool, &files);
            let _ = compat::check(policy, &seed_pool, &pool, &[MAIN.to_string()]);
        }
    }

    let sha = sha256_hex(data);
    let key = keys::descriptor(NS, &sha).to_string();
    manifest.descriptor = DescriptorRef {
        key: key.clone(),
        sha256: sha,
        size: data.len() as u64,
    };
    f.put(&key, bytes);
    f.put(&f.manifest_key(), to_json(&manifest));
    if let Ok(registry) = f.fresh() {
        read_everything(f, &registry);
    }
    f.restore(&f.manifest_key());
    f.restore(&key);
}

/// `mount_paths`: arbitrary bytes as paths (one per line) asked of the
/// mount's core, which parses them and looks them up in a real store.
pub fn mount_paths(data: &[u8]) {
    static F: OnceLock<Fixture> = OnceLock::new();
    static CORE: OnceLock<FsCore> = OnceLock::new();
    let f = fixture(&F, "fuzz-mount");
    let core = CORE.get_or_init(|| {
        FsCore::new(
            f.registry.store().clone(),
            f.rt.handle().clone(),
            mount_options(),
        )
    });
    let text = String::from_utf8_lossy(data);
    for path in text.split('\n').take(16) {
        let found = core.entry(path).is_ok();
        let _ = core.validity(path, found);
        let _ = core.list(path);
        let _ = core.content(path);
        let _ = core.readlink(path);
        let _ = protoshelf::ids::validate_file_path(path);
    }
}
