"""The real confluent-kafka Python client against `protoshelf serve`.

Run by tests/serve_clients.rs with the server's URL and tokens in the
environment. No Kafka broker: the serializers are called directly. Every
check raises on failure; the last line printed is a JSON summary.
"""
import base64
import json
import os
import struct
import subprocess
import sys
import tempfile

from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.error import SchemaRegistryError
from confluent_kafka.schema_registry.protobuf import (
    ProtobufDeserializer,
    ProtobufSerializer,
)
from confluent_kafka.serialization import MessageField, SerializationContext
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

URL = os.environ["PROTOSHELF_URL"]
WRITER = os.environ["PROTOSHELF_WRITER_TOKEN"]
ADMIN = os.environ["PROTOSHELF_ADMIN_TOKEN"]
PROTO_DIR = os.environ["PROTOSHELF_PROTO_DIR"]
TOPIC = os.environ.get("PROTOSHELF_TOPIC", "orders")
SUBJECT = f"{TOPIC}-value"

checks = []


def check(name, cond, detail=""):
    if not cond:
        raise AssertionError(f"{name}: {detail}")
    checks.append(name)


def client(token=None):
    conf = {"url": URL}
    if token:
        conf.update(
            {
                "bearer.auth.credentials.source": "STATIC_TOKEN",
                "bearer.auth.token": token,
                # Required by the client for STATIC_TOKEN; protoshelf ignores it.
                "bearer.auth.logical.cluster": "protoshelf",
            }
        )
    return SchemaRegistryClient(conf)


def expect_error(name, fn, status, code):
    try:
        fn()
    except SchemaRegistryError as e:
        check(name, e.http_status_code == status and e.error_code == code,
              f"got {e.http_status_code}/{e.error_code}: {e.error_message}")
        return e
    raise AssertionError(f"{name}: no error")


# Python classes generated from the fixtures with protoc (grpcio-tools).
out = tempfile.mkdtemp()
subprocess.run(
    [sys.executable, "-m", "grpc_tools.protoc", f"-I{PROTO_DIR}", f"--python_out={out}",
     "shop/order.proto", "common/money.proto"],
    check=True,
)
sys.path.insert(0, out)
from shop import order_pb2  # noqa: E402

sr = client(WRITER)
admin = client(ADMIN)
anonymous = client()

# --- auto.register: a message importing another file and a well-known type
ser = ProtobufSerializer(order_pb2.Order, sr, {"auto.register.schemas": True, "use.deprecated.format": False})
order = order_pb2.Order(id="o-1", items=["a", "b"])
order.total.currency = "EUR"
order.total.units = 12
order.placed_at.seconds = 1_700_000_000
ctx = SerializationContext(TOPIC, MessageField.VALUE)
data = ser(order, ctx)
check("wire format magic byte", data[0] == 0, data[:8])
schema_id = struct.unpack(">I", data[1:5])[0]
check("schema id in the payload", schema_id >= 1, schema_id)

subjects = sr.get_subjects()
check("reference registered under its import path", "common/money.proto" in subjects, subjects)
check("value subject registered", SUBJECT in subjects, subjects)
latest = sr.get_latest_version(SUBJECT)
check("latest is the registered schema", latest.schema_id == schema_id, latest)
refs = latest.schema.references
check("references name the import", [(r.name, r.subject) for r in refs] == [("common/money.proto", "common/money.proto")], refs)
check("no reference for the well-known type", all("google/protobuf" not in r.name for r in refs), refs)

# --- ProtobufDeserializer decodes the bytes
de = ProtobufDeserializer(order_pb2.Order, {"use.deprecated.format": False})
back = de(data, ctx)
check("deserializer round trip", back == order, back)

# --- a consumer without the generated class: the writer schema by ID
#     (format=serialized) with its references builds the message type
raw = sr.get_schema(schema_id, fmt="serialized")
pool = descriptor_pool.DescriptorPool()
from google.protobuf import timestamp_pb2  # noqa: E402
pool.AddSerializedFile(timestamp_pb2.DESCRIPTOR.serialized_pb)
for r in raw.references:
    dep = sr.get_version(r.subject, r.version, fmt="serialized")
    fdp = descriptor_pb2.FileDescriptorProto.FromString(base64.b64decode(dep.schema.schema_str))
    fdp.name = r.name
    pool.Add(fdp)
main = descriptor_pb2.FileDescriptorProto.FromString(base64.b64decode(raw.schema_str))
main.name = "default"
pool.Add(main)
cls = message_factory.GetMessageClass(pool.FindMessageTypeByName("shop.Order"))
# Payload: magic, id, message indexes ([0] is the single byte 0), message.
generic = cls.FromString(data[6:])
check("schema by id decodes the payload", generic.id == "o-1" and generic.total.units == 12, generic)
text = client(WRITER).get_schema(schema_id)  # a fresh cache: the first one holds the serialized form
check("schema text is .proto source", "message Order" in text.schema_str, text.schema_str[:80])

# --- use.latest.version
# (a client of its own: the first one's latest-version cache holds the text
# form, and this serializer asks for the serialized form)
ser_latest = ProtobufSerializer(
    order_pb2.Order, client(WRITER),
    {"auto.register.schemas": False, "use.latest.version": True, "use.deprecated.format": False},
)
data2 = ser_latest(order, ctx)
check("use.latest.version uses the latest id", struct.unpack(">I", data2[1:5])[0] == schema_id)

# --- evolution under BACKWARD
sr.set_compatibility(SUBJECT, "BACKWARD")
check("subject level set", sr.get_compatibility(SUBJECT) == "BACKWARD")
src = open(os.path.join(PROTO_DIR, "shop/order.proto")).read()
money_ref = refs
compatible = src.replace("repeated string items = 4;", "repeated string items = 4;\n  string note = 5;")
reg2 = sr.register_schema_full_response(SUBJECT, Schema(compatible, "PROTOBUF", money_ref))
check("compatible evolution registered", reg2.schema_id != schema_id, reg2)
versions = sr.get_versions(SUBJECT)
check("two versions", versions == [1, 2], versions)
check("compatibility test passes", sr.test_compatibility(SUBJECT, Schema(compatible, "PROTOBUF", money_ref)))
incompatible = src.replace("string id = 1;", "int64 id = 1;")
check("compatibility test fails", not sr.test_compatibility(SUBJECT, Schema(incompatible, "PROTOBUF", money_ref)))
expect_error("incompatible evolution refused with 409",
             lambda: sr.register_schema(SUBJECT, Schema(incompatible, "PROTOBUF", money_ref)), 409, 409)
check("the refused version changed nothing", client(WRITER).get_versions(SUBJECT) == [1, 2])
again = sr.register_schema_full_response(SUBJECT, Schema(compatible, "PROTOBUF", money_ref))
check("registering again is idempotent", again.schema_id == reg2.schema_id, again)

# --- lookup, versions, config, delete
found = sr.lookup_schema(SUBJECT, Schema(compatible, "PROTOBUF", money_ref))
check("lookup by content", found.version == 2 and found.schema_id == reg2.schema_id, found)
expect_error("lookup of unknown content is 40403",
             lambda: sr.lookup_schema(SUBJECT, Schema(incompatible, "PROTOBUF", money_ref)), 404, 40403)
v1 = sr.get_version(SUBJECT, 1)
check("version 1 keeps its id", v1.schema_id == schema_id, v1)
expect_error("unknown subject is 40401", lambda: sr.get_versions("no-such-subject"), 404, 40401)
expect_error("anonymous writes need a token",
             lambda: anonymous.register_schema("anon-value", Schema(compatible, "PROTOBUF", money_ref)), 401, 40101)
expect_error("global config needs admin", lambda: sr.set_compatibility(level="FULL"), 403, 40301)
admin.set_compatibility(level="FULL")
check("global config", admin.get_compatibility() == "FULL")
admin.set_compatibility(level="BACKWARD")
check("anonymous reads", SUBJECT in anonymous.get_subjects())

check("delete a version", sr.delete_version(SUBJECT, 2) == 2)
check("versions after delete", sr.get_versions(SUBJECT) == [1])
check("latest falls back", sr.get_latest_version(SUBJECT).version == 1)
check("by id still readable", "message Order" in sr.get_schema(reg2.schema_id).schema_str)
check("soft delete subject", sr.delete_subject(SUBJECT) == [1])
check("subject gone from the list", SUBJECT not in sr.get_subjects())
check("permanent delete", sorted(sr.delete_subject(SUBJECT, permanent=True)) == [1, 2])
expect_error("deleted subject is 40401", lambda: client(WRITER).get_versions(SUBJECT), 404, 40401)

print(json.dumps({"client": "confluent-kafka", "passed": len(checks), "checks": checks}))
