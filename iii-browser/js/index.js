// The package's entry module: loads the WebAssembly once (top-level await), then
// re-exports the API, so `import { registerWorker } from '.../index.js'` is all a page
// needs. `TriggerAction` builds the `action` of a TriggerRequest.
import init from './iii_browser.js'

await init({ module_or_path: new URL('./iii_browser_bg.wasm', import.meta.url) })

export * from './iii_browser.js'

export const TriggerAction = Object.freeze({
  /** Fire and forget: `trigger` resolves at once with `undefined`. */
  Void: () => ({ type: 'void' }),
  /** Enqueue for a queue worker (refused by engines without one). */
  Enqueue: (options) => ({ type: 'enqueue', queue: options.queue }),
})
