"""Runs the reference reader against a store and compares with the expected
answers (a JSON file), counting requests with botocore's event hooks.

    python check_reader.py --dir fixtures/store fixtures/expected.json
    python check_reader.py --bucket B --prefix P expected.json   # S3 from AWS_* env

Exit 0 when every answer and every request count matches; prints one JSON
line with the counts.
"""

import argparse
import hashlib
import json
import sys

from protoshelf_reader import DirObjects, NotFound, Reader, S3Objects


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir")
    ap.add_argument("--bucket")
    ap.add_argument("--prefix", default="")
    ap.add_argument("expected")
    a = ap.parse_args()
    counts = {}
    if a.bucket:
        import boto3
        from botocore.config import Config

        client = boto3.client("s3", config=Config(s3={"addressing_style": "path"}))

        def count(event_name, **_):
            op = event_name.split(".")[-1]
            counts[op] = counts.get(op, 0) + 1

        client.meta.events.register("before-call.s3.*", count)
        objects = S3Objects(client, a.bucket, a.prefix)
    else:
        objects = DirObjects(a.dir)
    with open(a.expected) as f:
        expected = json.load(f)
    r = Reader(objects)
    r.marker()
    failures, costs = [], []
    for case in expected["cases"]:
        before = dict(counts)
        ns, schema, kind = case["namespace"], case.get("schema"), case["read"]
        try:
            if kind in ("current_set", "staged_set"):
                _, data = r.namespace_set(ns, kind[: -len("_set")])
                got = {"sha256": hashlib.sha256(data).hexdigest()}
            elif kind == "pinned":
                v, data = r.pinned_descriptor(ns, schema, case["version"])
            else:
                v, data = getattr(r, f"{kind}_descriptor")(ns, schema)
            if not kind.endswith("_set"):
                got = {"version": v, "sha256": hashlib.sha256(data).hexdigest()}
        except NotFound as e:
            got = {"not_found": str(e)}
        want = case["answer"]
        if "not_found" in want:
            ok = "not_found" in got and want["not_found"] in got["not_found"]
        else:
            ok = got == want
        if not ok:
            failures.append({"case": case, "got": got})
        used = {k: counts.get(k, 0) - before.get(k, 0) for k in counts}
        costs.append({"case": f"{kind} {ns}/{schema or '*'}", **used})
        if a.bucket and "not_found" not in want:
            gets, lists = used.get("GetObject", 0), used.get("ListObjectsV2", 0)
            writes = sum(v for k, v in used.items() if k.startswith(("Put", "Delete", "Copy")))
            # The contract's bounds: a pinned version 2 GETs; current,
            # staged and namespace sets 1 LIST + 2 GETs. Never a write.
            if gets > 2 or lists > (0 if kind == "pinned" else 1) or writes:
                failures.append({"case": case, "requests": used})
    print(json.dumps({"costs": costs, "failures": failures}))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
