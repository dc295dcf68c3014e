//! Everything a worker application names is reachable through `iii_smol` alone (no
//! direct dependency on iii-core or iii-driver needed): this compiles only if so.

#![allow(dead_code, clippy::type_complexity, clippy::too_many_arguments)]

use iii_smol::worker::{
    BoxFuture, Bytes, CallOptions, Channel, ChannelItem, ChannelReader, ChannelRef, ChannelWriter,
    CloseCode, ConfigError, ConnectionState, ConnectionStates, Direction, EndOutcome, Error,
    ErrorBody, FunctionDef, FunctionInfo, FunctionRef, FunctionsSubscription, Iii, IntoErrorBody,
    Invocation, InvokeError, ReadError, RegisterError, Rejection, Reply, TraceContext, Trigger,
    TriggerHandler, TriggerInfo, TriggerRequest, TriggerTypeInfo, TriggerTypeRef, WorkerConfig,
    WorkerIdentity, WorkerInfo, WorkerOptions, WriteError,
};

/// Names every type in one signature.
fn names(
    _: (
        BoxFuture<'static, ()>,
        Bytes,
        CallOptions,
        Option<Channel>,
        ChannelItem,
    ),
    _: (
        Option<ChannelReader>,
        ChannelRef,
        Option<ChannelWriter>,
        CloseCode,
        ConfigError,
    ),
    _: (
        ConnectionState,
        Option<ConnectionStates>,
        Direction,
        EndOutcome,
        Error,
        ErrorBody,
    ),
    _: (
        FunctionDef,
        FunctionInfo,
        Option<FunctionRef>,
        Option<FunctionsSubscription>,
    ),
    _: (
        Option<Iii>,
        Invocation,
        InvokeError,
        ReadError,
        RegisterError,
        Rejection,
        Reply,
    ),
    _: (
        TraceContext,
        Option<Trigger>,
        Option<Box<dyn TriggerHandler>>,
        TriggerInfo,
    ),
    _: (
        TriggerRequest,
        TriggerTypeInfo,
        Option<TriggerTypeRef>,
        WorkerConfig,
    ),
    _: (WorkerIdentity, WorkerInfo, WorkerOptions, WriteError),
) {
}

fn error_body<E: IntoErrorBody>(error: E) -> ErrorBody {
    error.into_error_body()
}

#[test]
fn the_public_api_is_reachable_from_the_adapter() {
    let body = error_body(Error::Timeout);
    assert_eq!(body.code, "invocation_failed");
    assert_eq!(WorkerOptions::default().core, WorkerConfig::default());
    let _ = iii_smol::sdk::TriggerRequest::new("f", serde_json::json!(null));
}
