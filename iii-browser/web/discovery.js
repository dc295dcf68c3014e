// The browser side of the discovery test (iii-tokio/tests/browser.rs): listings and the
// functions-available subscription, checked in the page against what the Rust backend
// (another worker) and this page registered. Every check throws on failure, so the
// test sees a remote error with the reason.
import { registerWorker } from '/pkg/index.js'

const engine = new URLSearchParams(location.search).get('engine')
const log = (line) => {
  document.getElementById('log').textContent += `${line}\n`
  console.log(line)
}

function check(condition, message) {
  if (!condition) throw Object.assign(new Error(message), { code: 'discovery_check_failed' })
}

const keys = (object) => Object.keys(object).sort().join(',')
const PRIVATE_PREFIX = 'iii-browser.functions-available.'

const iii = registerWorker(engine, { workerName: 'discovery-browser', invocationTimeoutMs: 20000 })

// What the page registers: a function, a trigger type with its handler, a binding of
// it, and a binding of an engine trigger type to an engine function (an internal one).
const accepted = []
iii.registerFunction({ id: 'discovery.browser.fired', description: 'fired by a trigger' }, async () => null)
iii.registerTriggerType(
  { id: 'discovery.browser.type', description: 'a browser trigger type' },
  {
    registerTrigger: (trigger) => {
      accepted.push(trigger.id)
    },
    unregisterTrigger: () => {},
  },
)
const ownBinding = iii.registerTrigger({
  type: 'discovery.browser.type',
  function_id: 'discovery.browser.fired',
  config: { n: 1 },
})
iii.registerTrigger({ type: 'engine::functions-available', function_id: 'engine::functions::list', config: {} })

// listFunctions, listTriggers and listTriggerTypes, with and without internal entries.
iii.registerFunction('discovery.browser.lists', async () => {
  const functions = await iii.listFunctions()
  // The engine runs with small pages: the listing followed next_offset to the end.
  const firstPage = await iii.trigger({ function_id: 'engine::functions::list', payload: {} })
  check(typeof firstPage.next_offset === 'number' && functions.length > firstPage.functions.length,
    `listFunctions gave ${functions.length} functions, the first page ${firstPage.functions.length} (next_offset ${firstPage.next_offset})`)
  const alpha = functions.find((f) => f.function_id === 'discovery.backend.alpha')
  check(alpha !== undefined, `listFunctions lacks the backend's function: ${JSON.stringify(functions)}`)
  check(alpha.description === 'the first' && keys(alpha) === 'description,function_id',
    `the backend's function is listed as ${JSON.stringify(alpha)}`)
  const fired = functions.find((f) => f.function_id === 'discovery.browser.fired')
  check(fired?.description === 'fired by a trigger', `the page's own function is listed as ${JSON.stringify(fired)}`)
  check(functions.every((f) => !f.function_id.startsWith('engine::')), 'listFunctions shows engine functions')
  const documented = ['function_id', 'description', 'request_format', 'response_format', 'metadata']
  for (const f of functions) {
    check(Object.keys(f).every((key) => documented.includes(key)), `a FunctionInfo with other fields: ${JSON.stringify(f)}`)
  }

  const triggers = await iii.listTriggers()
  const fromBackend = triggers.find((t) => t.function_id === 'discovery.backend.alpha')
  check(fromBackend?.trigger_type === 'discovery.browser.type' && fromBackend.config?.from === 'backend'
    && keys(fromBackend) === 'config,function_id,id,trigger_type',
    `the backend's binding is listed as ${JSON.stringify(fromBackend)} in ${JSON.stringify(triggers)}`)
  const own = triggers.find((t) => t.id === ownBinding.id)
  check(own?.function_id === 'discovery.browser.fired' && own.config?.n === 1,
    `the page's binding ${ownBinding.id} is listed as ${JSON.stringify(own)}`)
  check(accepted.includes(ownBinding.id), `the page's type handler saw ${accepted}`)
  check(!triggers.some((t) => t.function_id === 'engine::functions::list'), 'listTriggers() shows an internal binding')
  const allTriggers = await iii.listTriggers(true)
  check(allTriggers.some((t) => t.function_id === 'engine::functions::list' && t.trigger_type === 'engine::functions-available'),
    `listTriggers(true) lacks the internal binding: ${JSON.stringify(allTriggers)}`)
  check((await iii.listTriggers(false)).length === triggers.length, 'listTriggers(false) differs from listTriggers()')

  const types = await iii.listTriggerTypes()
  const mine = types.find((t) => t.id === 'discovery.browser.type')
  check(mine?.description === 'a browser trigger type' && keys(mine) === 'description,id',
    `the page's trigger type is listed as ${JSON.stringify(mine)}`)
  check(types.every((t) => !t.id.startsWith('engine::')), `listTriggerTypes() shows engine types: ${JSON.stringify(types)}`)
  const allTypes = await iii.listTriggerTypes(true)
  const internal = allTypes.find((t) => t.id === 'engine::functions-available')
  check(internal !== undefined && typeof internal.description === 'string',
    `listTriggerTypes(true) lacks engine::functions-available: ${JSON.stringify(allTypes)}`)
  return { functions, triggers, allTriggers, types, allTypes }
})

// The subscribers and what each saw (every function id of every notification).
const seen = { a: [], b: [], c: [] }
const unsubscribe = {}
const subscribe = (name) => {
  unsubscribe[name] = iii.onFunctionsAvailable((functions) => {
    check(Array.isArray(functions) && functions.every((f) => typeof f.function_id === 'string'),
      `a notification of ${JSON.stringify(functions)}`)
    seen[name].push(...functions.map((f) => f.function_id))
  })
}
const watchBindings = async () =>
  (await iii.listTriggers()).filter((t) => t.trigger_type === 'engine::functions-available')

iii.registerFunction('discovery.browser.subscribe', async ({ names }) => {
  for (const name of names) subscribe(name)
  check(typeof unsubscribe[names[0]] === 'function', 'onFunctionsAvailable returns a function')
  const bindings = await watchBindings()
  check(bindings.length === 1 && bindings[0].function_id.startsWith(PRIVATE_PREFIX),
    `${names.length} subscribers are one binding: ${JSON.stringify(bindings)}`)
  const hidden = await iii.listFunctions()
  check(!hidden.some((f) => f.function_id.startsWith(PRIVATE_PREFIX)), 'the private function is listed')
  return { binding: bindings[0] }
})

// Waits (20 s at most) until each named subscriber saw `id`; those in `not` must not.
iii.registerFunction('discovery.browser.await_function', async ({ id, names, not }) => {
  for (let tries = 0; !names.every((name) => seen[name].includes(id)); tries++) {
    check(tries < 400, `after 20 s, ${names.map((n) => `${n} saw ${seen[n].includes(id)}`)} for ${id}`)
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
  for (const name of not) check(!seen[name].includes(id), `unsubscribed ${name} still saw ${id}`)
  return { seen }
})

iii.registerFunction('discovery.browser.unsubscribe', async ({ name }) => {
  unsubscribe[name]()
  unsubscribe[name]() // a second call does nothing
  delete unsubscribe[name]
  const bindings = await watchBindings()
  const remaining = Object.keys(unsubscribe).length
  check(bindings.length === (remaining > 0 ? 1 : 0),
    `with ${remaining} subscribers left, the engine holds ${JSON.stringify(bindings)}`)
  if (remaining === 0) {
    const { functions } = await iii.trigger({ function_id: 'engine::functions::list', payload: { include_internal: true } })
    check(!functions.some((f) => f.function_id.startsWith(PRIVATE_PREFIX)),
      'the last unsubscribe left the private function registered')
  }
  return { bindings }
})

// unregisterTriggerType removes the type from listTriggerTypes().
iii.registerFunction('discovery.browser.drop_type', async () => {
  iii.unregisterTriggerType({ id: 'discovery.browser.type', description: 'a browser trigger type' })
  const types = await iii.listTriggerTypes()
  check(!types.some((t) => t.id === 'discovery.browser.type'), `still listed: ${JSON.stringify(types)}`)
  return { types }
})

// Registered last: the test waits until it can call it.
iii.registerFunction('discovery.browser.ready', async () => ({ ready: true }))
log(`registered with ${engine}`)
