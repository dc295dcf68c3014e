// Interop peer for the published npm `iii-sdk` (run with NODE_PATH-free resolution: the
// harness passes the install prefix in INTEROP_NODE_MODULES and this script imports from it).
//
// Environment: III_URL (engine), INTEROP_NAME (short peer name, e.g. `node`). The worker
// registers as `interop-<name>` and every function id starts with `interop.<name>.`.
// The peer exits when its stdin reaches EOF (the harness holds the other end). See
// INTEROP.md for the function contracts and the byte generator.

import { createHash } from 'node:crypto'
import path from 'node:path'
import { pathToFileURL } from 'node:url'

const modules = process.env.INTEROP_NODE_MODULES
const sdkUrl = (sub) => pathToFileURL(path.join(modules, 'iii-sdk', 'dist', sub)).href
const { registerWorker, TriggerAction } = await import(sdkUrl('index.mjs'))
const { createChannel } = await import(sdkUrl('helpers.mjs'))

const NAME = process.env.INTEROP_NAME
const PREFIX = `interop.${NAME}`

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

const iii = registerWorker(process.env.III_URL, { workerName: `interop-${NAME}` })

const errorOf = (err) => ({ code: err?.code ?? err?.name ?? 'Error', message: String(err?.message ?? err) })

// Resolves when the Writable accepted the chunk and the socket send completed, so a
// following `sendMessage` (which bypasses the Writable) cannot overtake buffered bytes.
const writeChunk = (writer, buf) =>
  new Promise((resolve, reject) => writer.stream.write(buf, (err) => (err ? reject(err) : resolve())))
const endStream = (writer) =>
  new Promise((resolve, reject) => writer.stream.end((err) => (err ? reject(err) : resolve())))

async function write(data) {
  const { writer, pattern } = data
  const seed = Number(data.seed)
  const size = Number(data.size)
  const messages = data.messages ?? []
  const stallAfter = data.stall_after ?? null
  const payload = genBytes(seed, size)
  let pos = 0
  let mi = 0
  let wi = 0
  for (;;) {
    while (mi < messages.length && messages[mi].at === pos) {
      writer.sendMessage(messages[mi].text)
      mi++
    }
    if (stallAfter !== null && pos >= stallAfter) await new Promise((r) => setTimeout(r, 3_600_000))
    if (pos === size) break
    let n = Math.min(pattern[wi % pattern.length], size - pos)
    wi++
    if (mi < messages.length) n = Math.min(n, messages[mi].at - pos)
    await writeChunk(writer, payload.subarray(pos, pos + n))
    pos += n
  }
  await endStream(writer)
  return { written: pos }
}

async function read(data) {
  const { reader } = data
  const digest = createHash('sha256')
  let consumed = 0
  const messages = []
  // A text message arrives after every earlier binary message was pushed into the
  // Readable, so its offset is what was consumed plus what is still buffered.
  reader.onMessage((text) => messages.push({ at: consumed + reader.stream.readableLength, text }))
  await new Promise((resolve, reject) => {
    reader.stream.on('data', (chunk) => {
      digest.update(chunk)
      consumed += chunk.length
    })
    reader.stream.on('end', resolve)
    reader.stream.on('error', reject)
  })
  return { sha256: digest.digest('hex'), bytes: consumed, messages }
}

// --- The seed examples (sender -> processor; coordinator <-> worker), in Node. ---

async function dataProcessor(input) {
  const chunks = []
  for await (const chunk of input.reader.stream) chunks.push(Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk))
  const records = JSON.parse(Buffer.concat(chunks).toString('utf-8'))
  const values = records.map((r) => r.value)
  const sum = values.reduce((a, b) => a + b, 0)
  return {
    label: input.label,
    messages: [
      { type: 'stat', key: 'count', value: records.length },
      { type: 'stat', key: 'sum', value: sum },
      { type: 'stat', key: 'average', value: sum / records.length },
      { type: 'stat', key: 'min', value: Math.min(...values) },
      { type: 'stat', key: 'max', value: Math.max(...values) },
    ],
  }
}

async function dataSender(input) {
  const channel = await createChannel(iii)
  // The writer is closed (stream ended) before the processor is triggered.
  await new Promise((resolve, reject) =>
    channel.writer.stream.end(Buffer.from(JSON.stringify(input.records)), (err) => (err ? reject(err) : resolve())),
  )
  return iii.trigger({
    function_id: `${PREFIX}.data.processor`,
    payload: { label: 'metrics-batch', reader: channel.readerRef },
  })
}

async function streamWorker(input) {
  const { reader, writer } = input
  const chunks = []
  let chunkCount = 0
  for await (const chunk of reader.stream) {
    chunks.push(Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk))
    chunkCount++
    writer.sendMessage(JSON.stringify({ type: 'progress', chunks_received: chunkCount }))
  }
  const full = Buffer.concat(chunks)
  const words = full.toString('utf-8').split(/\s+/).filter(Boolean)
  writer.sendMessage(JSON.stringify({ type: 'complete', word_count: words.length, byte_count: full.length }))
  await new Promise((resolve, reject) =>
    writer.stream.end(Buffer.from(JSON.stringify({ words: words.slice(0, 5), total: words.length })), (err) =>
      err ? reject(err) : resolve(),
    ),
  )
  return { status: 'done' }
}

async function streamCoordinator(input) {
  const inputChannel = await createChannel(iii)
  const outputChannel = await createChannel(iii)
  const messages = []
  outputChannel.reader.onMessage((msg) => messages.push(JSON.parse(msg)))
  const textBuf = Buffer.from(input.text)
  const writePromise = new Promise((resolve, reject) => {
    let offset = 0
    const writeNext = () => {
      while (offset < textBuf.length) {
        const end = Math.min(offset + input.chunkSize, textBuf.length)
        const chunk = textBuf.subarray(offset, end)
        offset = end
        if (!inputChannel.writer.stream.write(chunk)) {
          inputChannel.writer.stream.once('drain', writeNext)
          return
        }
      }
      inputChannel.writer.stream.end((err) => (err ? reject(err) : resolve()))
    }
    writeNext()
  })
  const triggerPromise = iii.trigger({
    function_id: `${PREFIX}.stream.worker`,
    payload: { reader: inputChannel.readerRef, writer: outputChannel.writerRef },
  })
  const resultChunks = []
  for await (const chunk of outputChannel.reader.stream) {
    resultChunks.push(Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk))
  }
  await writePromise
  const workerResult = await triggerPromise
  const binaryResult = JSON.parse(Buffer.concat(resultChunks).toString('utf-8'))
  return { messages, binaryResult, workerResult }
}

// --- Trigger types: this peer provides `interop.<name>.tt` and can bind to any type. ---

const registrations = []
const fired = []

iii.registerTriggerType(
  { id: `${PREFIX}.tt`, description: `interop trigger type of ${NAME}` },
  {
    async registerTrigger(config) {
      registrations.push({ id: config.id, function_id: config.function_id, config: config.config })
      setImmediate(() => {
        iii
          .trigger({
            function_id: config.function_id,
            payload: { provider: NAME, trigger_id: config.id, config: config.config },
            action: TriggerAction.Void(),
          })
          .catch(() => {})
      })
    },
    async unregisterTrigger() {},
  },
)

const functions = {
  echo: async (data) => ({ sdk: NAME, value: data?.value ?? null }),
  fail: async (data) => {
    throw new Error(`boom from ${NAME}: ${data?.msg}`)
  },
  call: async (data) => {
    try {
      return { ok: (await iii.trigger({ function_id: data.function_id, payload: data.payload, timeoutMs: 20000 })) ?? null }
    } catch (err) {
      return { error: errorOf(err) }
    }
  },
  write,
  read,
  'data.processor': dataProcessor,
  'data.sender': dataSender,
  'stream.worker': streamWorker,
  'stream.coordinator': streamCoordinator,
  registrations: async () => ({ registrations }),
  bind: async (data) => {
    iii.registerTrigger({ type: data.trigger_type, function_id: data.function_id, config: data.config })
    return { bound: true }
  },
  on_fire: async (data) => {
    fired.push(data)
    return { ok: true }
  },
  fired: async () => ({ fired }),
}
for (const [suffix, handler] of Object.entries(functions)) iii.registerFunction(`${PREFIX}.${suffix}`, handler)

console.log('READY')
