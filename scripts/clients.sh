#!/usr/bin/env bash
# The real Schema Registry clients that tests/integration/serve.rs drives
# against `protoshelf serve`:
#   - Python confluent-kafka (ProtobufSerializer/Deserializer,
#     SchemaRegistryClient) with grpcio-tools to generate message classes;
#   - npm @kafkajs/confluent-schema-registry;
#   - boto3, for the reference reader examples/python/ (tests/integration/reader.rs).
#
#   scripts/clients.sh install   # create/refresh both, print `export` lines
#
# Prints only `export` lines on stdout (PROTOSHELF_CLIENTS_PY,
# PROTOSHELF_CLIENTS_NODE_PATH); progress goes to stderr.
# PROTOSHELF_CACHE: where they live (~/.cache/protoshelf).
set -euo pipefail

CACHE_DIR="${PROTOSHELF_CACHE:-$HOME/.cache/protoshelf}"
VENV="$CACHE_DIR/clients-venv"
PY="$VENV/bin/python"
NPM_DIR="$CACHE_DIR/clients-npm"

# Known-good versions (DESIGN §6: confluent-kafka 2.16, kafkajs registry 4.x).
PY_PINS=(
  'confluent-kafka[schemaregistry,protobuf]==2.16.*'
  'grpcio-tools'
  'protobuf'
  'requests'
  'authlib'
  'httpx'
  'cachetools'
  'attrs'
  'boto3'
)
NPM_PINS=('@kafkajs/confluent-schema-registry@4')

log() { echo "clients.sh: $*" >&2; }

install_py() {
  local want stamp="$VENV/.protoshelf-pins"
  want="$(printf '%s\n' "${PY_PINS[@]}")"
  if [[ -x "$PY" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
    return 0
  fi
  mkdir -p "$CACHE_DIR"
  [[ -x "$PY" ]] || python3 -m venv "$VENV"
  log "installing confluent-kafka into $VENV"
  "$PY" -m pip install --quiet --upgrade pip >&2
  "$PY" -m pip install --quiet "${PY_PINS[@]}" >&2
  "$PY" -c 'import confluent_kafka.schema_registry.protobuf, grpc_tools.protoc, boto3' >&2
  printf '%s\n' "$want" >"$stamp"
}

install_npm() {
  local want stamp="$NPM_DIR/.protoshelf-pins"
  want="$(printf '%s\n' "${NPM_PINS[@]}")"
  if [[ -d "$NPM_DIR/node_modules/@kafkajs/confluent-schema-registry" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
    return 0
  fi
  command -v npm >/dev/null || { log "npm not found"; return 1; }
  mkdir -p "$NPM_DIR"
  log "installing ${NPM_PINS[*]} into $NPM_DIR"
  (cd "$NPM_DIR" && { [[ -f package.json ]] || echo '{"name":"protoshelf-clients","private":true}' >package.json; } &&
    npm install --silent --no-audit --no-fund "${NPM_PINS[@]}" >&2)
  printf '%s\n' "$want" >"$stamp"
}

case "${1:-}" in
  install)
    install_py
    install_npm
    echo "export PROTOSHELF_CLIENTS_PY=$PY"
    echo "export PROTOSHELF_CLIENTS_NODE_PATH=$NPM_DIR/node_modules"
    ;;
  *) echo "usage: $0 install" >&2; exit 2 ;;
esac
