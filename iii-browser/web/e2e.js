// The browser side of the end-to-end test (iii-tokio/tests/browser.rs). The Rust test
// (our Rust SDK) drives it by calling the functions registered here; every check of
// the page throws on failure, so the test sees a remote error with the reason.
import { registerWorker } from '/pkg/index.js'

const params = new URLSearchParams(location.search)
const engine = params.get('engine')
const log = (line) => {
  document.getElementById('log').textContent += `${line}\n`
  console.log(line)
}

function check(condition, message) {
  if (!condition) throw Object.assign(new Error(message), { code: 'e2e_check_failed' })
}

const hex = (buffer) => [...new Uint8Array(buffer)].map((b) => b.toString(16).padStart(2, '0')).join('')
const sha256 = async (bytes) => hex(await crypto.subtle.digest('SHA-256', bytes))

function randomBytes(size) {
  const bytes = new Uint8Array(size)
  for (let at = 0; at < size; at += 65536) crypto.getRandomValues(bytes.subarray(at, Math.min(size, at + 65536)))
  return bytes
}

const states = []
const iii = registerWorker(engine, {
  workerName: 'e2e-browser',
  invocationTimeoutMs: 20000,
  reconnectionConfig: { initialDelayMs: 200, maxDelayMs: 1000 },
})
iii.onConnectionStateChange((state) => {
  states.push(state)
  log(`connection: ${state}`)
})

// A function the backend calls.
iii.registerFunction({ id: 'e2e.browser.double', description: 'doubles n' }, async ({ n }) => ({ n: n * 2 }))

// Calls backend functions and checks what comes back, errors included.
iii.registerFunction('e2e.browser.call_backend', async () => {
  const { sum } = await iii.trigger({ function_id: 'e2e.backend.add', payload: { a: 2, b: 40 } })
  check(sum === 42, `e2e.backend.add gave ${sum}`)
  let error
  try {
    await iii.trigger({ function_id: 'e2e.backend.missing', payload: {}, timeoutMs: 5000 })
  } catch (e) {
    error = e
  }
  check(error?.name === 'IIIError' && error.kind === 'remote' && error.code === 'function_not_found',
    `a missing function gave ${error?.kind}/${error?.code}: ${error?.message}`)
  let thrown
  try {
    await iii.trigger({ function_id: 'e2e.backend.fail', payload: { why: 'asked to' } })
  } catch (e) {
    thrown = e
  }
  check(thrown?.kind === 'remote' && thrown.message.includes('asked to'), `e2e.backend.fail gave ${thrown?.message}`)
  const late = await iii.trigger({ function_id: 'e2e.backend.slow', payload: {}, timeoutMs: 100 }).catch((e) => e)
  check(late?.kind === 'timeout', `a call past its timeoutMs gave ${late?.kind}: ${late?.message}`)
  const fired = await iii.trigger({ function_id: 'e2e.backend.add', payload: {}, action: { type: 'void' } })
  check(fired === undefined, 'a void call resolves with undefined')
  const typo = await iii.trigger({ function_id: 'e2e.backend.add', timeout: 5 }).catch((e) => e)
  check(typo?.kind === 'invalid', `an unknown TriggerRequest key gave ${typo?.kind}`)
  let badUrl
  try {
    registerWorker('http://127.0.0.1:1')
  } catch (e) {
    badUrl = e
  }
  check(badUrl?.name === 'IIIError' && badUrl.kind === 'invalid', `registerWorker('http://…') gave ${badUrl}`)
  let duplicate
  try {
    iii.registerFunction('e2e.browser.double', async () => null)
  } catch (e) {
    duplicate = e
  }
  check(duplicate?.kind === 'invalid', `a duplicate registerFunction gave ${duplicate}`)
  return { sum, workerId: iii.workerId }
})

// 16 MiB browser -> Rust (channel A) and back Rust -> browser (channel B), text messages
// interleaved; SHA-256 checked here and by the Rust relay.
iii.registerFunction('e2e.browser.stream', async ({ size }) => {
  const data = randomBytes(size)
  const expected = await sha256(data)
  const texts = ['start', 'x'.repeat(100000), 'üñïçødé ✓', 'end']
  const at = [0, Math.floor(size / 3), Math.floor(size / 2) + 7, size]
  const toRust = await iii.createChannel()
  const fromRust = await iii.createChannel()
  check(toRust.readerRef.direction === 'read' && toRust.writerRef.direction === 'write', 'ref directions')
  check(typeof toRust.readerRef.access_key === 'string' && toRust.readerRef.access_key !== toRust.writerRef.access_key,
    'the two refs carry different keys')
  const relay = iii.trigger({
    function_id: 'e2e.backend.relay',
    payload: { input: toRust.readerRef, output: fromRust.writerRef },
    timeoutMs: 120000,
  })
  const received = []
  fromRust.reader.onMessage((text) => received.push(text))
  const back = fromRust.reader.readAll()
  const write = async () => {
    let pos = 0
    let next = 0
    while (pos <= size) {
      while (next < at.length && at[next] === pos) await toRust.writer.sendMessage(texts[next++])
      if (pos === size) break
      const end = Math.min(size, pos + 1000003, next < at.length ? at[next] : size)
      await toRust.writer.sendBinary(data.subarray(pos, end))
      pos = end
    }
    await toRust.writer.close()
  }
  const [, echoed, rust] = await Promise.all([write(), back, relay])
  const echoedSha = await sha256(echoed)
  check(rust.sha256 === expected, `Rust read ${rust.bytes} bytes with SHA-256 ${rust.sha256}, sent ${expected}`)
  check(JSON.stringify(rust.messages) === JSON.stringify(texts.map((text, i) => ({ at: at[i], text }))),
    'Rust got the text messages in order at their offsets')
  check(echoed.length === size && echoedSha === expected, `read back ${echoed.length} bytes with SHA-256 ${echoedSha}`)
  check(JSON.stringify(received) === JSON.stringify(texts), `read back texts ${JSON.stringify(received.map((t) => t.length))}`)
  log(`stream ok: ${size} bytes each way, ${expected}`)
  return { sha256: expected, bytes: size, rustSha256: rust.sha256, echoedSha256: echoedSha }
})

// Writes `size` bytes to the writer ref it was given (a live ChannelWriter here), then
// navigates away without closing it: the browser closes the socket with the page.
iii.registerFunction('e2e.browser.write_and_leave', async ({ writer, size }) => {
  check(writer.constructor.name === 'ChannelWriter', `the ref arrived as ${writer?.constructor?.name}`)
  await writer.sendBinary(randomBytes(size))
  // Leave only once the Rust reader has every byte, so that what it sees next is the
  // navigation's close and nothing else.
  for (let tries = 0; ; tries++) {
    const { received } = await iii.trigger({ function_id: 'e2e.backend.received', payload: {} })
    if (received >= size) break
    check(tries < 200, `the Rust reader got ${received} of ${size} bytes`)
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
  setTimeout(() => {
    location.href = 'about:blank'
  }, 50)
  return { written: size }
})

// Writes `size` bytes, then aborts: the Rust reader must fail, not end cleanly.
iii.registerFunction('e2e.browser.write_and_abort', async ({ writer, size }) => {
  await writer.sendBinary(randomBytes(size))
  writer.abort()
  const late = await writer.sendMessage('after the abort').catch((e) => e)
  check(late?.name === 'IIIError', `a write after abort() gave ${late}`)
  return { written: size }
})

// maxRetries gives up ('failed', queued calls rejected); shutdown() rejects pending calls.
iii.registerFunction('e2e.browser.lifecycle', async () => {
  const doomed = registerWorker('ws://127.0.0.1:1', {
    workerName: 'e2e-doomed',
    reconnectionConfig: { initialDelayMs: 10, maxDelayMs: 20, maxRetries: 2 },
  })
  const seen = []
  const failed = new Promise((resolve) =>
    doomed.onConnectionStateChange((state) => {
      seen.push(state)
      if (state === 'failed') resolve()
    }),
  )
  const queued = doomed.trigger({ function_id: 'e2e.backend.add', payload: {} }).catch((e) => e)
  await failed
  check(JSON.stringify(seen) === '["reconnecting","failed"]', `a worker that cannot connect went ${seen}`)
  const offline = await queued
  check(offline?.kind === 'disconnected' || offline?.kind === 'closed', `its queued call gave ${offline?.kind}`)
  const after = await doomed.trigger({ function_id: 'e2e.backend.add', payload: {} }).catch((e) => e)
  check(after?.kind === 'closed', `a call after it failed gave ${after?.kind}`)

  const second = registerWorker(engine, { workerName: 'e2e-second' })
  const pending = second.trigger({ function_id: 'e2e.backend.slow', payload: {} }).catch((e) => e)
  const channel = await second.createChannel()
  const reading = channel.reader.readAll().catch((e) => e)
  await second.shutdown()
  const stopped = await pending
  check(stopped?.kind === 'disconnected', `shutdown() left a pending call with ${stopped?.kind}`)
  const ended = await reading
  check(ended?.kind === 'closed', `shutdown() left a readAll with ${ended?.kind ?? ended}`)
  check(second.connectionState === 'disconnected', `after shutdown: ${second.connectionState}`)
  return { doomed: seen, second: second.connectionState }
})

// A running worker the page keeps no reference to goes on serving: its handles are
// collected (gc() needs Chromium's --expose-gc, which host.mjs passes), then the
// backend's call to its function must still be answered.
iii.registerFunction('e2e.browser.unreferenced', async () => {
  check(typeof gc === 'function', 'gc() is not exposed (host.mjs starts Chromium with --js-flags=--expose-gc)')
  let collected = 0
  const registry = new FinalizationRegistry(() => {
    collected += 1
  })
  ;(() => {
    const worker = registerWorker(engine, { workerName: 'e2e-unreferenced' })
    registry.register(worker, 'worker')
    registry.register(worker.registerFunction('e2e.unreferenced.ping', async () => ({ pong: true })), 'function')
  })()
  for (let tries = 0; collected < 2; tries++) {
    check(tries < 200, `the page still holds the unreferenced worker's handles (${collected} of 2 collected)`)
    gc()
    await new Promise((resolve) => setTimeout(resolve, 10))
  }
  // wasm-bindgen's own finalizers (which free the Rust handles) run in the same round.
  gc()
  await new Promise((resolve) => setTimeout(resolve, 50))
  return { collected }
})

iii.registerFunction('e2e.browser.states', async () => ({ states, state: iii.connectionState }))

// Registered last: the test waits until it can call it.
iii.registerFunction('e2e.browser.ready', async () => ({ ready: true }))
log(`registered with ${engine}`)
