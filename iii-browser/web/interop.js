// The interop peer in the browser (INTEROP.md, "Peer contract"): echo, fail, write,
// read and fired, as `interop.<name>.*`, on our browser worker. Opened by
// `iii-browser/web/host.mjs` for the harness's Browser peer (tests/src/interop/peer.rs).
// SHA-256 is @noble/hashes (npm, served from .cache/browser-node by host.mjs): the byte
// generator needs 524 288 small digests, which crypto.subtle's promises make slow.
import { registerWorker } from '/pkg/index.js'
import { sha256 } from '/node_modules/@noble/hashes/sha2.js'

const params = new URLSearchParams(location.search)
const NAME = params.get('name')
const PREFIX = `interop.${NAME}`
const iii = registerWorker(params.get('engine'), { workerName: `interop-${NAME}` })

const hex = (bytes) => [...bytes].map((b) => b.toString(16).padStart(2, '0')).join('')

// Block i is SHA-256(le64(seed) || le64(i)); the stream is the blocks in order.
function genBytes(seed, size) {
  const blocks = Math.ceil(size / 32)
  const out = new Uint8Array(blocks * 32)
  const input = new Uint8Array(16)
  const view = new DataView(input.buffer)
  view.setBigUint64(0, BigInt(seed), true)
  for (let i = 0; i < blocks; i++) {
    view.setBigUint64(8, BigInt(i), true)
    out.set(sha256(input), i * 32)
  }
  return out.subarray(0, size)
}

iii.registerFunction(`${PREFIX}.echo`, async ({ value }) => ({ sdk: NAME, value }))
iii.registerFunction(`${PREFIX}.fail`, async ({ msg }) => {
  throw new Error(`boom from ${NAME}: ${msg}`)
})

// {writer, seed, size, pattern, messages, stall_after?} -> {written}
iii.registerFunction(`${PREFIX}.write`, async (data) => {
  const { writer, pattern } = data
  const size = Number(data.size)
  const messages = data.messages ?? []
  const stallAfter = data.stall_after ?? null
  const payload = genBytes(Number(data.seed), size)
  let pos = 0
  let mi = 0
  let wi = 0
  for (;;) {
    while (mi < messages.length && messages[mi].at === pos) await writer.sendMessage(messages[mi++].text)
    if (stallAfter !== null && pos >= stallAfter) await new Promise(() => {})
    if (pos === size) break
    let n = Math.min(pattern[wi++ % pattern.length], size - pos)
    if (mi < messages.length) n = Math.min(n, messages[mi].at - pos)
    await writer.sendBinary(payload.subarray(pos, pos + n))
    pos += n
  }
  await writer.close()
  return { written: pos }
})

// {reader} -> {sha256, bytes, messages: [{at, text}]}
iii.registerFunction(`${PREFIX}.read`, async ({ reader }) => {
  const digest = sha256.create()
  let bytes = 0
  const messages = []
  reader.onMessage((text) => messages.push({ at: bytes, text }))
  reader.onBinary((chunk) => {
    digest.update(chunk)
    bytes += chunk.length
  })
  await reader.finished()
  return { sha256: hex(digest.digest()), bytes, messages }
})

const fired = []
iii.registerFunction(`${PREFIX}.on_fire`, async (payload) => {
  fired.push(payload)
  return null
})
// Registered last: the harness waits until it can call it.
iii.registerFunction(`${PREFIX}.fired`, async () => ({ fired }))
console.log(`interop peer ${NAME} registered`)
