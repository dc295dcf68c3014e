// The browser usage of the iii documentation, on iii-rs's browser worker. The engine's
// URL comes from `?engine=` (iii-browser/example/run.sh prints the full link).
import { registerWorker } from '/pkg/index.js'

const engine = new URLSearchParams(location.search).get('engine') ?? 'ws://127.0.0.1:49134'
const iii = registerWorker(engine)
const show = (id, text) => (document.getElementById(id).textContent = text)
iii.onConnectionStateChange((state) => show('state', state))

function showToast(title, body) {
  const toast = document.createElement('div')
  toast.textContent = `${title}: ${body}`
  document.getElementById('toasts').prepend(toast)
}

// Register a function the backend can call.
iii.registerFunction({ id: 'ui::show-notification' }, async (data) => {
  showToast(data.title, data.body)
  return { displayed: true }
})

// Call a backend function directly.
const users = await iii.trigger({ function_id: 'api::get::users', payload: {} })
show('users', JSON.stringify(users, null, 2))

// A channel: the backend writes, the page reads.
const channel = await iii.createChannel()
const messages = []
channel.reader.onMessage((msg) => messages.push(msg))
const body = channel.reader.readAll()
await iii.trigger({ function_id: 'stream-producer', payload: { outputChannel: channel.writerRef } })
const bytes = await body
show('channel', `${bytes.length} bytes: ${new TextDecoder().decode(bytes)}\nmessages: ${messages.join(', ')}`)
console.log(`example ok: ${users.length} users, ${bytes.length} channel bytes, ${messages.length} messages`)
