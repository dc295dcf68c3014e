//! The iii worker SDK for the browser.
//!
//! `iii-core`'s worker machine ([`iii_core::worker::Worker`]) driven by the browser's
//! own `WebSocket` and timers, compiled to WebAssembly, with the JavaScript API of the
//! iii browser SDK documentation: `registerWorker(url, options)` returns a worker with
//! `registerFunction`, `trigger`, `registerTrigger`, `registerTriggerType`,
//! `createChannel`, `listFunctions`, `listTriggers`, `listTriggerTypes`,
//! `onFunctionsAvailable` and `shutdown`; channel ends are `ChannelWriter` (`sendBinary`,
//! `sendMessage`, `close`) and `ChannelReader` (`onBinary`, `onMessage`, `readAll`).
//! `iii-browser/build.sh` builds the package (`target/iii-browser/pkg/`: the `.wasm`,
//! wasm-bindgen's glue, TypeScript definitions and an `index.js` entry); the README's
//! "Browser" section shows its use.
//!
//! The crate has two halves:
//!
//! * platform-neutral modules ([`options`], [`requests`], [`errors`], [`discovery`]):
//!   the API's argument objects read into the core's specs, the core's outcomes turned
//!   into typed JavaScript errors, the engine's listings turned into the documented
//!   info objects. They build everywhere, so `cargo test --workspace` tests them on
//!   the native toolchain.
//! * `wasm` (only on `wasm32`): the driver (WebSocket connections, the timer, the
//!   driving contract of [`iii_core`]) and the `#[wasm_bindgen]` exports.

pub mod discovery;
pub mod errors;
pub mod options;
pub mod requests;

// Its `pub` items are reached from JavaScript (through `#[wasm_bindgen]`), not from Rust.
#[cfg(target_arch = "wasm32")]
#[allow(unreachable_pub)]
mod wasm;
