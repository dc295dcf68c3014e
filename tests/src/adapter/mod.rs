//! One adapter test suite for every runtime: each scenario is an async function generic
//! over the worker's [`Runtime`], run against an engine URL. `tests/tests/adapter_*.rs`
//! run the suite on tokio, on smol, and in mixed pairs.

mod control;
mod handoff;
mod scenarios;

use std::future::Future;
use std::time::Duration;

use iii_driver::server::EngineServer;
use iii_driver::worker::{Iii, WorkerOptions};
use iii_driver::Runtime;

pub use control::*;
pub use handoff::*;
pub use scenarios::*;

/// How long any single wait in the suite may take before the test fails.
pub const WAIT: Duration = Duration::from_secs(30);

/// A runtime the suite can run on.
pub trait Flavor {
    /// The runtime workers and engines use.
    type Rt: Runtime;
    /// A handle to it.
    fn rt() -> Self::Rt;
    /// Runs `future` to completion on this runtime.
    fn block_on<F: Future>(future: F) -> F::Output;
}

/// tokio (a 2-thread runtime per test).
pub struct TokioFlavor;

impl Flavor for TokioFlavor {
    type Rt = iii_tokio::Tokio;
    fn rt() -> Self::Rt {
        iii_tokio::Tokio
    }
    fn block_on<F: Future>(future: F) -> F::Output {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("tokio runtime")
            .block_on(future)
    }
}

/// smol (its global executor).
pub struct SmolFlavor;

impl Flavor for SmolFlavor {
    type Rt = iii_smol::Smol;
    fn rt() -> Self::Rt {
        iii_smol::Smol
    }
    fn block_on<F: Future>(future: F) -> F::Output {
        smol::block_on(future)
    }
}

/// An engine on `rt`, on an ephemeral loopback port.
pub async fn engine<R: Runtime>(rt: R) -> EngineServer {
    EngineServer::bind(rt, "127.0.0.1:0", Default::default())
        .await
        .expect("bind an engine")
}

/// A worker on `rt` named `name`, connected to `url`.
pub async fn worker<R: Runtime>(rt: R, url: &str, name: &str) -> Iii<R> {
    let iii = Iii::connect(
        rt,
        WorkerOptions {
            url: Some(url.to_owned()),
            name: Some(name.to_owned()),
            ..WorkerOptions::default()
        },
    )
    .expect("valid worker options");
    iii.wait_connected(WAIT).await.expect("worker connected");
    iii
}

/// Declares one `#[test]` per scenario of the suite, each on a fresh engine of `$flavor`
/// with workers of the same flavor.
#[macro_export]
macro_rules! adapter_suite {
    ($flavor:ty) => {
        $crate::adapter_suite!($flavor;
            invoke_round_trip,
            void_call,
            invocation_stopped_when_the_target_leaves,
            trigger_timeout,
            sender_to_processor,
            coordinator_and_worker,
            dropped_writer_fails_the_reader,
            wrong_key_and_reused_ref_are_refused,
            trigger_type_and_binding,
            abandoned_writes_are_all_or_nothing,
            poll_write_pending_takes_nothing,
            writer_is_a_sink,
            closed_reader_fails_the_writer,
            reader_closed_before_reading_fails_the_writer,
            listings_and_handles,
            void_timeout_and_rejection,
            functions_available_subscription,
            metadata_and_trace_context,
        );
        $crate::adapter_suite!(@pairs $flavor; $flavor, $flavor;
            dropped_unused_writer_leaves_the_handed_off_ref_working,
            dropped_unused_reader_leaves_the_handed_off_ref_working,
        );

        #[test]
        fn transfer_256_mib_with_sha256() {
            use $crate::adapter::Flavor;
            <$flavor>::block_on(async {
                let engine = $crate::adapter::engine(<$flavor>::rt()).await;
                let url = engine.url();
                $crate::adapter::transfer(<$flavor>::rt(), <$flavor>::rt(), &url, 256 << 20).await;
                engine.shutdown().await;
            });
        }
    };
    // Scenarios of two workers: run on `$host` (tokio whenever a tokio worker takes
    // part), engine on `$first`, the first worker on `$first`, the second on `$second`.
    (@pairs $host:ty; $first:ty, $second:ty; $($name:ident),* $(,)?) => {$(
        #[test]
        fn $name() {
            use $crate::adapter::Flavor;
            <$host>::block_on(async {
                let engine = $crate::adapter::engine(<$first>::rt()).await;
                $crate::adapter::$name(<$first>::rt(), <$second>::rt(), &engine.url()).await;
                engine.shutdown().await;
            });
        }
    )*};
    ($flavor:ty; $($name:ident),* $(,)?) => {$(
        #[test]
        fn $name() {
            use $crate::adapter::Flavor;
            <$flavor>::block_on(async {
                let engine = $crate::adapter::engine(<$flavor>::rt()).await;
                $crate::adapter::$name(<$flavor>::rt(), &engine.url()).await;
                engine.shutdown().await;
            });
        }
    )*};
}
