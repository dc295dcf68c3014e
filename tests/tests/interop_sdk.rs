//! Each published SDK against our engine: functions, calls both ways, errors, the two
//! seed channel examples in the SDK's own language, and trigger types across SDKs.
//! One engine and one peer process per SDK serve every test of this binary.

use iii_tests::interop::{checks, harness};

/// One module per SDK: `$peer` is the SDK under test, `$other` the SDK it pairs with
/// (the next one in the matrix order) for cross-SDK calls and trigger bindings.
macro_rules! sdk_tests {
    ($module:ident, $peer:literal, $other:literal) => {
        mod $module {
            use super::*;

            fn run<F: std::future::Future<Output = ()>>(peers: &[&str], test: F) {
                let ready = iii_tests::toolchain::published_sdks();
                if !iii_tests::toolchain::run_or_skip(module_path!(), ready) {
                    return;
                }
                let h = harness();
                h.ensure(peers);
                h.block_on(test);
            }

            #[test]
            fn registers_a_function_the_driver_calls() {
                run(&[$peer], checks::echo($peer));
            }

            #[test]
            fn is_called_and_calls_back() {
                run(&[$peer, $other], checks::call_back($peer, $other));
            }

            #[test]
            fn unknown_function_is_function_not_found() {
                run(&[$peer], checks::unknown_function($peer));
            }

            #[test]
            fn a_throwing_handler_returns_its_error() {
                run(&[$peer, $other], checks::handler_error($peer, $other));
            }

            #[test]
            fn seed_sender_to_processor() {
                run(&[$peer], checks::seed_sender_processor($peer));
            }

            #[test]
            fn seed_coordinator_and_worker() {
                run(&[$peer], checks::seed_coordinator_worker($peer));
            }

            #[test]
            fn provides_a_trigger_type_another_sdk_binds() {
                run(&[$peer, $other], checks::trigger_type($peer, $other));
            }
        }
    };
}

sdk_tests!(python_0_23, "py023", "py025");
sdk_tests!(python_0_25, "py025", "node");
sdk_tests!(node_0_22, "node", "rs023");
sdk_tests!(rust_0_23, "rs023", "tokio");
sdk_tests!(ours_tokio, "tokio", "smol");
sdk_tests!(ours_smol, "smol", "py023");
