// RBAC interop peer for the published npm `iii-sdk` (the same roles as rbac_peer.py; see
// INTEROP.md, "Untrusted workers (RBAC)"):
//
// * RBAC_ROLE=auth: a trusted worker on the engine's main listener serving the
//   authentication function `rbac.<sdk>.auth`, the middleware `rbac.<sdk>.middleware`,
//   `rbac.<sdk>.decisions` and, registered last, `rbac.<sdk>.ready`.
// * RBAC_ROLE=guest: an untrusted worker on an RBAC listener, sending the headers of
//   RBAC_HEADERS (a JSON object, through `registerWorker(url, { headers })`) to III_URL
//   (which may carry the credential as a query parameter). It registers `run`, which the
//   engine publishes as `<tenant>::run`. With RBAC_EXPECT=refused it waits until the SDK
//   gives up reconnecting, prints one `RESULT <json>` line and exits.
//
// Environment: III_URL, RBAC_ROLE, RBAC_SDK, INTEROP_NODE_MODULES (the install prefix's
// node_modules). Exits when stdin reaches EOF.

import { createHash } from 'node:crypto'
import path from 'node:path'
import { pathToFileURL } from 'node:url'

const modules = process.env.INTEROP_NODE_MODULES
const sdkUrl = (sub) => pathToFileURL(path.join(modules, 'iii-sdk', 'dist', sub)).href
const { registerWorker } = await import(sdkUrl('index.mjs'))
const { createChannel } = await import(sdkUrl('helpers.mjs'))
const { ChannelWriter } = await import(sdkUrl('channel.mjs'))

const ROLE = process.env.RBAC_ROLE
const SDK = process.env.RBAC_SDK ?? 'node'
const URL_ = process.env.III_URL

process.stdin.on('data', () => {})
process.stdin.on('end', () => process.exit(0))
process.stdin.on('close', () => process.exit(0))
process.stdin.resume()

// Block i is SHA-256(le64(seed) || le64(i)); the stream is the blocks in order.
function genBytes(seed, size) {
  const blocks = Math.ceil(size / 32)
  const out = Buffer.allocUnsafe(blocks * 32)
  const input = Buffer.alloc(16)
  input.writeBigUInt64LE(BigInt(seed), 0)
  for (let i = 0; i < blocks; i++) {
    input.writeBigUInt64LE(BigInt(i), 8)
    createHash('sha256').update(input).digest().copy(out, i * 32)
  }
  return out.subarray(0, size)
}

const errorOf = (err) => ({
  class: err?.constructor?.name ?? typeof err,
  code: err?.code ?? null,
  message: String(err?.message ?? err),
})

// --- Role `auth`: the authentication function and the middleware (trusted). ---

function runAuth() {
  const iii = registerWorker(URL_, { workerName: `rbac-auth-${SDK}` })
  const decisions = []
  const middlewareLog = []
  // Admits `good-<tenant>` from the `x-api-key` header, the `key` query parameter or
  // the `session` cookie (in that order); anything else throws, which the engine answers
  // with 401.
  iii.registerFunction(`rbac.${SDK}.auth`, async (data) => {
    const headers = data?.headers ?? {}
    const query = data?.query_params ?? {}
    const cookies = data?.cookies ?? {}
    let key = null
    let credential = null
    if (headers['x-api-key'] !== undefined) [key, credential] = [headers['x-api-key'], 'header']
    else if (query.key?.length) [key, credential] = [query.key[0], 'query']
    else if (cookies.session !== undefined) [key, credential] = [cookies.session, 'cookie']
    const allowed = typeof key === 'string' && key.startsWith('good-') && key.length > 5
    decisions.push({ key, credential, allowed, ip: data?.ip_address ?? null, cookies })
    if (!allowed) throw new Error(`unknown credential ${JSON.stringify(key)}`)
    const tenant = key.slice('good-'.length)
    return {
      allowed_functions: [],
      forbidden_functions: ['api::admin'],
      allow_function_registration: true,
      function_registration_prefix: tenant,
      context: { tenant, auth_sdk: SDK, credential, ip: data?.ip_address ?? null },
    }
  })
  // Sees every call of a worker on its listener, but the engine's own, as
  // `{function_id, payload, context}` and logs it (the engine's own functions bypass the
  // middleware: the test checks the log holds nothing else); a payload with
  // `deny: true` is refused; anything else is invoked and its result wrapped with what
  // the middleware saw.
  iii.registerFunction(`rbac.${SDK}.middleware`, async (data) => {
    const { function_id: functionId, payload } = data
    middlewareLog.push(data)
    if (payload?.deny === true) throw new Error(`refused by the ${SDK} middleware: ${functionId}`)
    const result = await iii.trigger({ function_id: functionId, payload })
    return { middleware: SDK, seen: data, result: result ?? null }
  })
  iii.registerFunction(`rbac.${SDK}.decisions`, async () => ({ decisions, middleware: middlewareLog }))
  iii.registerFunction(`rbac.${SDK}.ready`, async () => ({ sdk: SDK }))
}

// --- Role `guest`: an untrusted worker. ---

function options() {
  const headers = JSON.parse(process.env.RBAC_HEADERS || 'null') ?? undefined
  return { workerName: `rbac-guest-${SDK}`, headers }
}

// Connects with a credential the authentication function refuses and reports what the
// SDK does: its connection state once it gave up, and what a call then gives. With
// OpenTelemetry off, the SDK logs its socket errors (the HTTP status) to the console, and
// only the worker's own connection is tried.
async function runRefusedGuest() {
  const iii = registerWorker(URL_, {
    ...options(),
    otel: { enabled: false },
    reconnectionConfig: { initialDelayMs: 100, maxDelayMs: 200, jitterFactor: 0, maxRetries: 2 },
  })
  const deadline = Date.now() + 30_000
  // `connectionState` is the SDK's own field (0.22.1 has no getter).
  while (iii.connectionState !== 'failed' && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
  const outcome = { state: iii.connectionState }
  try {
    await iii.trigger({ function_id: 'api::echo', payload: {}, timeoutMs: 2000 })
    outcome.call = 'returned'
  } catch (err) {
    outcome.call_error = errorOf(err)
  }
  console.log(`RESULT ${JSON.stringify(outcome)}`)
  process.exit(0)
}

// A channel of `iii`. Node 0.22.1 builds channel URLs by appending
// `/ws/channels/<id>?key=...` to the engine URL as given, so with a credential in the
// URL's query (`ws://host:port/?key=...`) `createChannel` would dial the control
// path; the writer is then built on the URL without its query (channel sockets need no
// credential: the channel key is one).
async function newChannel(iii) {
  const query = URL_.indexOf('?')
  if (query < 0) return createChannel(iii)
  const base = URL_.slice(0, query)
  const result = await iii.trigger({ function_id: 'engine::channels::create', payload: {} })
  return { writer: new ChannelWriter(base, result.writer), readerRef: result.reader }
}

function runGuest() {
  const iii = registerWorker(URL_, options())
  const call = async (functionId, payload) => {
    try {
      return { ok: (await iii.trigger({ function_id: functionId, payload, timeoutMs: 20000 })) ?? null }
    } catch (err) {
      return { error: errorOf(err) }
    }
  }
  // Writes the generator's bytes into a new channel while the trusted reader
  // (`reader_function`) reads it from the reader ref.
  const channel = async (data) => {
    const size = Number(data.size)
    const ch = await newChannel(iii)
    const payload = genBytes(Number(data.seed), size)
    const write = async () => {
      const step = 100_000
      for (let offset = 0; offset < size; offset += step) {
        const chunk = payload.subarray(offset, Math.min(offset + step, size))
        await new Promise((resolve, reject) => ch.writer.stream.write(chunk, (e) => (e ? reject(e) : resolve())))
      }
      await new Promise((resolve, reject) => ch.writer.stream.end((e) => (e ? reject(e) : resolve())))
      return size
    }
    const [written, read] = await Promise.all([write(), call(data.reader_function, { reader: ch.readerRef })])
    return { written, read }
  }
  iii.registerFunction('run', async (data) => {
    switch (data?.op) {
      case 'ping':
        return { sdk: SDK }
      case 'call':
        return call(data.function_id, data.payload)
      case 'channel':
        return channel(data)
      default:
        throw new Error(`unknown op ${data?.op}`)
    }
  })
}

if (ROLE === 'auth') runAuth()
else if (ROLE === 'guest' && process.env.RBAC_EXPECT === 'refused') await runRefusedGuest()
else if (ROLE === 'guest') runGuest()
else throw new Error(`unknown RBAC_ROLE ${ROLE}`)
console.log('READY')
