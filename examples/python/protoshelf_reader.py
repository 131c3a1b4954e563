"""A reference reader of protoshelf stores, following the reader contract
(docs/storage-format.md, "The reader contract", version 1) and nothing else.

It only reads: GETs and LISTs, so read-only credentials are enough. Every
JSON object's checksum and every descriptor's SHA-256 is checked; damage is
an error naming the key, never an older answer.

    import boto3
    r = Reader(S3Objects(boto3.client("s3"), "bucket", "team/schemas"))
    version, fds_bytes = r.current_descriptor("shop", "shop.orders")

`DirObjects` reads a store laid out on disk (the conformance fixtures, or a
local-directory store) with the same code.
"""

import hashlib
import json
import os
import re

READER_CONTRACT = 1
FORMAT_VERSION = 3
# A move marker's name starts with this minus the commit's seq, 20 digits.
REV_BASE = 99999999999999999999
CHECKSUM = re.compile(rb',"checksum":"([0-9a-f]{64})"}$')


class Damaged(Exception):
    """An object is missing, damaged or inconsistent: `key` names it."""

    def __init__(self, key, reason):
        super().__init__(f"{key}: {reason}")
        self.key = key


class NotFound(Exception):
    """What was asked for does not exist (the message says which part)."""


class S3Objects:
    """The store root `prefix` of `bucket`, through a boto3 S3 client."""

    def __init__(self, client, bucket, prefix=""):
        self.client, self.bucket = client, bucket
        self.root = prefix.strip("/") + "/" if prefix.strip("/") else ""

    def get(self, key):
        try:
            obj = self.client.get_object(Bucket=self.bucket, Key=self.root + key)
        except self.client.exceptions.NoSuchKey:
            return None
        return obj["Body"].read()

    def list_first_page(self, prefix):
        """Names (below `prefix`) of the first page of a LIST: in key order."""
        out = self.client.list_objects_v2(Bucket=self.bucket, Prefix=self.root + prefix)
        return [o["Key"][len(self.root + prefix):] for o in out.get("Contents", [])]


class DirObjects:
    """A store laid out as files under `root` (one file per key)."""

    def __init__(self, root):
        self.root = root

    def get(self, key):
        try:
            with open(os.path.join(self.root, key), "rb") as f:
                return f.read()
        except FileNotFoundError:
            return None

    def list_first_page(self, prefix):
        try:
            return sorted(os.listdir(os.path.join(self.root, prefix)))
        except FileNotFoundError:
            return []


def checked_json(key, data):
    """The object, after checking its checksum (objects from before
    checksums have none)."""
    m = CHECKSUM.search(data)
    if m:
        covered = data[: m.start()] + b"}"
        if hashlib.sha256(covered).hexdigest() != m.group(1).decode():
            raise Damaged(key, "its checksum does not match its content")
    try:
        return json.loads(data)
    except ValueError as e:
        raise Damaged(key, f"not valid JSON: {e}")


def pad(n):
    return f"{n:020d}"


class Reader:
    def __init__(self, objects):
        self.objects = objects

    def _json(self, key):
        data = self.objects.get(key)
        return None if data is None else checked_json(key, data)

    def marker(self):
        """The format marker (optional for readers): refuses a store of a
        newer reader contract."""
        m = self._json("protoshelf.json")
        if m is None:
            raise NotFound("no protoshelf store at this root")
        contract = m.get("reader_contract", 1)
        if contract > READER_CONTRACT:
            raise NotFound(f"the store keeps reader contract {contract}; this reader knows {READER_CONTRACT}")
        return m

    def _marked_entries(self, ns, prefix):
        """The log entries the markers under `prefix` name, newest first, as
        (seq, key, entry): one LIST, then one GET per entry the caller asks
        for. Attempts that lost their seq, or are still in flight, are
        skipped; a lost entry is damage."""
        marked = {}
        for name in self.objects.list_first_page(prefix):
            rev, _, commit_id = name.partition("-")
            if len(rev) == 20 and rev.isdigit() and commit_id:
                marked.setdefault(REV_BASE - int(rev), set()).add(commit_id)
        for seq in sorted(marked, reverse=True):
            key = f"ns/{ns}/log/{pad(seq)}.json"
            entry = self._json(key)
            if entry is None:
                # In flight or died before its entry, unless a later entry
                # exists: then the log lost this one.
                if self.objects.get(f"ns/{ns}/log/{pad(seq + 1)}.json") is not None:
                    raise Damaged(key, f"missing, but entry {seq + 1} exists")
                continue
            if entry.get("seq") != seq:
                raise Damaged(key, f"holds seq {entry.get('seq')}")
            if entry.get("format_version", 0) > FORMAT_VERSION:
                raise Damaged(key, "written in a newer storage format than this reader knows")
            if entry["commit_id"] not in marked[seq]:
                continue  # an attempt that lost the race for this seq
            yield seq, key, entry

    def head(self, ns, schema):
        """The schema's pointers now: (seq, {current, staged, latest},
        {current, staged} descriptor hashes). One LIST, one GET."""
        for seq, key, entry in self._marked_entries(ns, f"ns/{ns}/moves/{schema}/"):
            if schema not in entry.get("changes", {}):
                raise Damaged(key, f"its move marker names {schema!r}, which it does not change")
            return seq, entry["changes"][schema], entry.get("descriptors", {}).get(schema, {})
        self._not_found(ns, schema)

    def _not_found(self, ns, schema):
        if self.objects.get(f"namespaces/{ns}") is None:
            raise NotFound(f"namespace {ns!r}")
        if self.objects.get(f"ns/{ns}/schemas/{schema}") is None:
            raise NotFound(f"schema {schema!r} in namespace {ns!r}")
        raise NotFound(
            f"a commit of schema {schema!r} in namespace {ns!r} (nothing staged yet, "
            "or a format-2 store, whose log this reader does not walk)"
        )

    def descriptor(self, ns, sha256):
        key = f"ns/{ns}/descriptors/{sha256}.binpb"
        data = self.objects.get(key)
        if data is None:
            raise Damaged(key, "missing, but the store names it")
        if hashlib.sha256(data).hexdigest() != sha256:
            raise Damaged(key, "content does not hash to its key")
        return data

    def _pointed(self, ns, schema, which):
        _, pointers, descriptors = self.head(ns, schema)
        version = pointers.get(which)
        if version is None:
            raise NotFound(f"a {which} version of schema {schema!r} in namespace {ns!r}")
        sha = descriptors.get(which)
        if sha is None:  # an entry from before descriptor hashes
            return self.pinned_descriptor(ns, schema, version)
        return version, self.descriptor(ns, sha)

    def current_descriptor(self, ns, schema):
        """(version, FileDescriptorSet bytes) of the current version: 1 LIST, 2 GETs."""
        return self._pointed(ns, schema, "current")

    def staged_descriptor(self, ns, schema):
        return self._pointed(ns, schema, "staged")

    def namespace_set(self, ns, tree="current"):
        """(seq, FileDescriptorSet bytes) of the namespace's current (or
        staged) tree: every file of every schema at its owner's version,
        the builtins and well-known types they import, each file once,
        dependencies first. 1 LIST, 2 GETs."""
        for seq, key, entry in self._marked_entries(ns, f"ns/{ns}/set-moves/"):
            sha = entry.get("sets", {}).get(tree)
            if sha is None:
                raise Damaged(key, "its set marker names it, but it records no namespace sets")
            key = f"ns/{ns}/sets/{sha}.binpb"
            data = self.objects.get(key)
            if data is None:
                raise Damaged(key, "missing, but the log names it")
            if hashlib.sha256(data).hexdigest() != sha:
                raise Damaged(key, "content does not hash to its key")
            return seq, data
        if self.objects.get(f"namespaces/{ns}") is None:
            raise NotFound(f"namespace {ns!r}")
        raise NotFound(
            f"a namespace set of {ns!r} (no commit since format 3 changed a pointer, "
            "or a format-2 store)"
        )

    def pinned_descriptor(self, ns, schema, version):
        """(version, bytes) of a version by number: 2 GETs. The number must
        come from a log entry (a manifest alone may be one never staged)."""
        key = f"ns/{ns}/versions/{schema}/{pad(version)}.json"
        m = self._json(key)
        if m is None:
            raise NotFound(f"version {version} of schema {schema!r} in namespace {ns!r}")
        if (m["namespace_id"], m["schema_id"], m["version"]) != (ns, schema, version):
            raise Damaged(key, "names another version")
        return version, self.descriptor(ns, m["descriptor"]["sha256"])
