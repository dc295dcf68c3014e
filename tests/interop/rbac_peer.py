"""RBAC interop peer for the published Python `iii-sdk` (0.25), run by its venv's python.

Two roles (environment `RBAC_ROLE`), see INTEROP.md, "Untrusted workers (RBAC)":

* `auth`: a trusted worker on the engine's main listener. Serves the authentication
  function `rbac.<sdk>.auth`, the middleware `rbac.<sdk>.middleware`, the logs of their
  decisions `rbac.<sdk>.decisions` and, registered last, `rbac.<sdk>.ready`.
* `guest`: an untrusted worker on an RBAC listener, sending the handshake headers of
  `RBAC_HEADERS` (a JSON object, through `InitOptions(headers=...)`) to `III_URL` (which
  may carry the credential as a query parameter). It registers `run`, which the engine
  publishes as `<tenant>::run`; trusted workers call it to make the guest act. With
  `RBAC_EXPECT=refused` it only waits until the SDK gives up reconnecting, then prints
  one `RESULT <json>` line and exits.

Environment: III_URL, RBAC_ROLE, RBAC_SDK (the short name in the function ids). The
peer exits when its stdin reaches EOF (the harness holds the other end).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import struct
import sys
import threading
import time

from iii import InitOptions, InvocationError, register_worker
from iii.iii import III
from iii.helpers import create_channel_async
from iii_helpers.observability import ReconnectionConfig

ROLE = os.environ["RBAC_ROLE"]
SDK = os.environ.get("RBAC_SDK", "py025")
URL = os.environ["III_URL"]


def gen_bytes(seed: int, size: int) -> bytes:
    """Block i is SHA-256(le64(seed) || le64(i)); the stream is the blocks in order."""
    pack = struct.Struct("<QQ").pack
    blocks = (size + 31) // 32
    return b"".join(hashlib.sha256(pack(seed, i)).digest() for i in range(blocks))[:size]


def watch_stdin() -> None:
    try:
        sys.stdin.buffer.read()
    finally:
        os._exit(0)


threading.Thread(target=watch_stdin, daemon=True).start()


def error_of(exc: BaseException) -> dict:
    return {
        "class": type(exc).__name__,
        "code": getattr(exc, "code", None),
        "message": str(exc),
    }


# --- Role `auth`: the authentication function and the middleware (trusted). ---


def run_auth() -> None:
    iii = register_worker(URL, InitOptions(worker_name=f"rbac-auth-{SDK}"))
    decisions: list = []
    middleware_log: list = []

    async def auth(data):
        """Admits `good-<tenant>` from the `x-api-key` header, the `key` query
        parameter or the `session` cookie (in that order); anything else raises, which
        the engine answers with 401."""
        headers = data.get("headers") or {}
        query = data.get("query_params") or {}
        cookies = data.get("cookies") or {}
        key, credential = None, None
        if "x-api-key" in headers:
            key, credential = headers["x-api-key"], "header"
        elif query.get("key"):
            key, credential = query["key"][0], "query"
        elif "session" in cookies:
            key, credential = cookies["session"], "cookie"
        allowed = isinstance(key, str) and key.startswith("good-") and len(key) > 5
        decisions.append(
            {
                "key": key,
                "credential": credential,
                "allowed": allowed,
                "ip": data.get("ip_address"),
                "cookies": cookies,
            }
        )
        if not allowed:
            raise PermissionError(f"unknown credential {key!r}")
        tenant = key[len("good-") :]
        return {
            "allowed_functions": [],
            "forbidden_functions": ["api::admin"],
            "allow_function_registration": True,
            "function_registration_prefix": tenant,
            "context": {
                "tenant": tenant,
                "auth_sdk": SDK,
                "credential": credential,
                "ip": data.get("ip_address"),
            },
        }

    async def middleware(data):
        """Sees every call of a worker on its listener, but the engine's own, as
        `{function_id, payload, context}` and logs it (the engine's own functions bypass
        the middleware: the test checks the log holds nothing else); a payload with
        `deny: true` is refused; anything else is invoked and its result wrapped with
        what the middleware saw."""
        function_id = data["function_id"]
        payload = data.get("payload")
        middleware_log.append(data)
        if isinstance(payload, dict) and payload.get("deny") is True:
            raise PermissionError(f"refused by the {SDK} middleware: {function_id}")
        result = await iii.trigger_async({"function_id": function_id, "payload": payload})
        return {"middleware": SDK, "seen": data, "result": result}

    async def list_decisions(_data):
        return {"decisions": decisions, "middleware": middleware_log}

    async def ready(_data):
        return {"sdk": SDK}

    iii.register_function(f"rbac.{SDK}.auth", auth)
    iii.register_function(f"rbac.{SDK}.middleware", middleware)
    iii.register_function(f"rbac.{SDK}.decisions", list_decisions)
    iii.register_function(f"rbac.{SDK}.ready", ready)


# --- Role `guest`: an untrusted worker. ---


def run_refused_guest(headers) -> None:
    """Connects with a credential the authentication function refuses and reports what
    the SDK does: the connection states it went through, and what a call raises once it
    gave up (each failed attempt is logged with the HTTP status). The client is built as
    `register_worker` builds it, without its wait: 0.25's wait is not woken when the
    retries are spent and lasts its full 30 s. OpenTelemetry is off, so that only the
    worker's own connection is tried."""
    iii = III(
        URL,
        InitOptions(
            worker_name=f"rbac-guest-{SDK}",
            headers=headers,
            otel={"enabled": False},
            reconnection_config=ReconnectionConfig(
                initial_delay_ms=100, max_delay_ms=200, jitter_factor=0, max_retries=2
            ),
        ),
    )
    states: list = []
    iii.add_connection_state_listener(states.append)
    deadline = time.monotonic() + 30
    while iii.get_connection_state() != "failed" and time.monotonic() < deadline:
        time.sleep(0.05)
    outcome = {"state": iii.get_connection_state(), "states": sorted(set(states))}
    try:
        iii.trigger({"function_id": "api::echo", "payload": {}, "timeout_ms": 2000})
        outcome["call"] = "returned"
    except Exception as exc:  # the point: what a call raises on a refused worker
        outcome["call_error"] = error_of(exc)
    print("RESULT " + json.dumps(outcome), flush=True)
    os._exit(0)


def run_guest() -> None:
    headers = json.loads(os.environ.get("RBAC_HEADERS") or "null")
    if os.environ.get("RBAC_EXPECT") == "refused":
        run_refused_guest(headers)
    iii = register_worker(URL, InitOptions(worker_name=f"rbac-guest-{SDK}", headers=headers))

    async def call(function_id, payload):
        try:
            result = await iii.trigger_async(
                {"function_id": function_id, "payload": payload, "timeout_ms": 20000}
            )
            return {"ok": result}
        except InvocationError as exc:
            return {"error": error_of(exc)}

    async def channel(data):
        """Writes the generator's bytes into a new channel while the trusted reader
        (`data.reader_function`) reads it from the reader ref."""
        size, seed = int(data["size"]), int(data["seed"])
        ch = await create_channel_async(iii)

        async def write():
            payload = gen_bytes(seed, size)
            step = 100_000
            for offset in range(0, size, step):
                await ch.writer.write(payload[offset : offset + step])
            await ch.writer.close_async()
            return size

        written, read = await asyncio.gather(
            write(),
            call(data["reader_function"], {"reader": ch.reader_ref.model_dump()}),
        )
        return {"written": written, "read": read}

    async def run(data):
        op = data.get("op")
        if op == "ping":
            return {"sdk": SDK}
        if op == "call":
            return await call(data["function_id"], data.get("payload"))
        if op == "channel":
            return await channel(data)
        raise ValueError(f"unknown op {op!r}")

    iii.register_function("run", run)


if ROLE == "auth":
    run_auth()
elif ROLE == "guest":
    run_guest()
else:
    raise SystemExit(f"unknown RBAC_ROLE {ROLE!r}")
print("READY", flush=True)
threading.Event().wait()
