// The real @kafkajs/confluent-schema-registry client against
// `protoshelf serve` (run by tests/serve_clients.rs). Throws on any failed
// check; prints a JSON summary last.
const assert = require('node:assert/strict')
const { SchemaRegistry, SchemaType } = require('@kafkajs/confluent-schema-registry')

const host = process.env.PROTOSHELF_URL
const token = process.env.PROTOSHELF_WRITER_TOKEN
const prefix = process.env.PROTOSHELF_TOPIC || 'kjs'
// kafkajs sends HTTP Basic; protoshelf takes the password as the token.
const auth = { username: 'kafkajs', password: token }
const checks = []
const check = (name, fn) => { fn(); checks.push(name) }

const money = `syntax = "proto3";
package common;
message Money {
  string currency = 1;
  int64 units = 2;
}
`
const order = `syntax = "proto3";
package shop;
import "common/money.proto";
message Order {
  string id = 1;
  common.Money total = 2;
  repeated string items = 3;
}
`

async function main () {
  const registry = new SchemaRegistry({ host, auth })
  const moneySubject = `${prefix}-money`
  const orderSubject = `${prefix}-order-value`
  const m = await registry.register({ type: SchemaType.PROTOBUF, schema: money }, { subject: moneySubject })
  check('reference registered', () => assert.ok(m.id >= 1))
  const moneyVersion = (await registry.api.Subject.latestVersion({ subject: moneySubject })).data().version
  const o = await registry.register(
    {
      type: SchemaType.PROTOBUF,
      schema: order,
      references: [{ name: 'common/money.proto', subject: moneySubject, version: moneyVersion }],
    },
    { subject: orderSubject },
  )
  check('schema with a reference registered', () => assert.ok(o.id >= 1 && o.id !== m.id))
  const again = await registry.register(
    { type: SchemaType.PROTOBUF, schema: order, references: [{ name: 'common/money.proto', subject: moneySubject, version: moneyVersion }] },
    { subject: orderSubject },
  )
  check('registration is idempotent (and the subject level is BACKWARD)', () => assert.equal(again.id, o.id))
  const latest = await registry.getLatestSchemaId(orderSubject)
  check('latest schema id', () => assert.equal(latest, o.id))

  const value = { id: 'o-9', total: { currency: 'EUR', units: 7 }, items: ['x'] }
  const payload = await registry.encode(o.id, value)
  check('wire format', () => {
    assert.equal(payload[0], 0)
    assert.equal(payload.readUInt32BE(1), o.id)
  })
  // A fresh client knows nothing: it reads the schema and its reference
  // from the server to decode.
  const fresh = new SchemaRegistry({ host, auth })
  const decoded = await fresh.decode(payload)
  check('decoded by a fresh client', () => {
    assert.equal(decoded.id, 'o-9')
    assert.equal(decoded.total.currency, 'EUR')
    assert.equal(Number(decoded.total.units), 7)
    assert.deepEqual(decoded.items, ['x'])
  })
  const cfg = (await registry.api.Subject.config({ subject: orderSubject })).data()
  check('subject config set by the client', () => assert.equal(cfg.compatibilityLevel, 'BACKWARD'))

  let refused = null
  try {
    await registry.register(
      { type: SchemaType.PROTOBUF, schema: order.replace('string id = 1;', 'int64 id = 1;'), references: [{ name: 'common/money.proto', subject: moneySubject, version: moneyVersion }] },
      { subject: orderSubject },
    )
  } catch (e) {
    refused = e
  }
  check('incompatible change refused', () => assert.ok(refused && refused.status === 409, String(refused)))
  console.log(JSON.stringify({ client: '@kafkajs/confluent-schema-registry', passed: checks.length, checks }))
}

main().catch((e) => { console.error(e); process.exit(1) })
