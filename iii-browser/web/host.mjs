// Serves browser pages on 127.0.0.1 and, optionally, opens one in headless Chromium.
//
//   node host.mjs --root DIR [--pkg DIR] [--open PAGE] [--chromium PATH]
//
// Serves DIR at `/`, the built package (target/iii-browser/pkg by default) at `/pkg/`
// and .cache/browser-node/node_modules at `/node_modules/`, on 127.0.0.1 with a free port, and prints `http://127.0.0.1:PORT/` as its
// first line. With --open, launches Chromium (playwright-core, found through
// NODE_PATH or .cache/browser-node) headless on a fresh profile, opens
// http://127.0.0.1:PORT/PAGE and prints every console message and page error
// (`[page] ...`). Exits when standard input closes (the parent died or is done), on
// SIGTERM/SIGINT, or when the browser dies; everything it started stops with it.
import { createServer } from 'node:http'
import { createReadStream, mkdtempSync, rmSync, statSync } from 'node:fs'
import { createRequire } from 'node:module'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

const here = path.dirname(fileURLToPath(import.meta.url))
const repo = path.resolve(here, '..', '..')
const args = process.argv.slice(2)
const option = (name, fallback) => {
  const at = args.indexOf(name)
  return at >= 0 && at + 1 < args.length ? args[at + 1] : fallback
}
const root = path.resolve(option('--root', here))
const pkg = path.resolve(option('--pkg', path.join(repo, 'target', 'iii-browser', 'pkg')))
const page = option('--open', null)
const chromiumPath = option('--chromium', '/usr/bin/chromium')
// Browser-side npm packages (@noble/hashes for the interop peer), installed by build.sh.
const nodeModules = path.join(repo, '.cache', 'browser-node', 'node_modules')

const types = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.wasm': 'application/wasm',
  '.json': 'application/json',
  '.ts': 'text/plain; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
}

function resolveFile(urlPath) {
  const clean = decodeURIComponent(urlPath.split('?')[0])
  const [base, rest] = clean.startsWith('/pkg/')
    ? [pkg, clean.slice(5)]
    : clean.startsWith('/node_modules/')
      ? [nodeModules, clean.slice(14)]
      : [root, clean.slice(1)]
  const file = path.resolve(base, rest === '' ? 'index.html' : rest)
  if (file !== base && !file.startsWith(base + path.sep)) return null
  try {
    return statSync(file).isFile() ? file : statSync(file).isDirectory() ? path.join(file, 'index.html') : null
  } catch {
    return null
  }
}

const server = createServer((req, res) => {
  if (req.url === '/favicon.ico') {
    res.writeHead(204).end()
    return
  }
  const file = resolveFile(req.url ?? '/')
  if (file === null || req.method !== 'GET') {
    res.writeHead(404, { 'content-type': 'text/plain' }).end('not found')
    return
  }
  res.writeHead(200, {
    'content-type': types[path.extname(file)] ?? 'application/octet-stream',
    'cache-control': 'no-store',
  })
  createReadStream(file).on('error', () => res.destroy()).pipe(res)
})

const cleanups = []
let exiting = false
async function exit(code) {
  if (exiting) return
  exiting = true
  for (const cleanup of cleanups.reverse()) {
    try {
      await cleanup()
    } catch {}
  }
  process.exit(code)
}
process.on('SIGTERM', () => exit(0))
process.on('SIGINT', () => exit(0))
process.stdin.on('end', () => exit(0))
process.stdin.on('close', () => exit(0))
process.stdin.resume()

server.listen(0, '127.0.0.1', async () => {
  const base = `http://127.0.0.1:${server.address().port}/`
  console.log(base)
  cleanups.push(() => new Promise((resolve) => server.close(resolve)))
  if (page === null) return
  let chromium
  try {
    const require = createRequire(path.join(repo, '.cache', 'browser-node', 'package.json'))
    ;({ chromium } = require('playwright-core'))
  } catch (error) {
    console.error(`playwright-core is not installed (iii-browser/build.sh installs it): ${error.message}`)
    return exit(2)
  }
  const profile = mkdtempSync(path.join(tmpdir(), 'iii-chromium-'))
  cleanups.push(() => rmSync(profile, { recursive: true, force: true }))
  // The flags this machine kind needs (see the README's Browser section): no sandbox as
  // root, no GPU, no background traffic to hosts the closed network refuses.
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: chromiumPath,
    headless: true,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--no-first-run',
      '--disable-quic',
      // gc() for the test that collects an unreferenced worker's handles (e2e.js).
      '--js-flags=--expose-gc',
    ],
  })
  cleanups.push(() => context.close())
  context.on('close', () => exit(exiting ? 0 : 3))
  const tab = context.pages()[0] ?? (await context.newPage())
  tab.on('console', (message) => console.log(`[page] ${message.type()}: ${message.text()}`))
  tab.on('pageerror', (error) => console.log(`[page] uncaught: ${error.stack ?? error.message}`))
  tab.on('crash', () => {
    console.log('[page] crashed')
    exit(4)
  })
  await tab.goto(new URL(page, base).href)
  console.log(`opened ${new URL(page, base).href}`)
})
