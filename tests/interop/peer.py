"""Interop peer for the published Python `iii-sdk` (run by each pinned venv's python).

Environment: III_URL (engine), INTEROP_NAME (short peer name, e.g. `py025`). The worker
registers as `interop-<name>` and every function id starts with `interop.<name>.`.
The peer exits when its stdin reaches EOF (the harness holds the other end), so it
never outlives the test process. See INTEROP.md for the function contracts and the
byte generator.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import struct
import sys
import threading

from iii import InitOptions, TriggerAction, register_worker
from iii.helpers import create_channel_async
from iii.triggers import TriggerHandler

NAME = os.environ["INTEROP_NAME"]
PREFIX = f"interop.{NAME}"
URL = os.environ["III_URL"]


def gen_bytes(seed: int, size: int) -> bytes:
    """Block i is SHA-256(le64(seed) || le64(i)); the stream is the blocks in order."""
    blocks = (size + 31) // 32
    sha = hashlib.sha256
    pack = struct.Struct("<QQ").pack
    return b"".join(sha(pack(seed, i)).digest() for i in range(blocks))[:size]


def watch_stdin() -> None:
    try:
        sys.stdin.buffer.read()
    finally:
        os._exit(0)


threading.Thread(target=watch_stdin, daemon=True).start()

iii = register_worker(URL, InitOptions(worker_name=f"interop-{NAME}"))


def error_of(exc: Exception) -> dict:
    return {"code": getattr(exc, "code", type(exc).__name__), "message": str(exc)}


async def echo(data):
    return {"sdk": NAME, "value": data.get("value")}


async def fail(data):
    raise RuntimeError(f"boom from {NAME}: {data.get('msg')}")


async def call(data):
    try:
        result = await iii.trigger_async(
            {"function_id": data["function_id"], "payload": data.get("payload"), "timeout_ms": 20000}
        )
        return {"ok": result}
    except Exception as exc:  # the error is the point of some calls
        return {"error": error_of(exc)}


async def write(data):
    writer = data["writer"]
    seed, size = int(data["seed"]), int(data["size"])
    pattern = [int(n) for n in data["pattern"]]
    messages = data.get("messages") or []
    stall_after = data.get("stall_after")
    payload = gen_bytes(seed, size)
    pos = mi = wi = 0
    while True:
        while mi < len(messages) and messages[mi]["at"] == pos:
            await writer.send_message_async(messages[mi]["text"])
            mi += 1
        if stall_after is not None and pos >= stall_after:
            await asyncio.sleep(3600)
        if pos == size:
            break
        n = min(pattern[wi % len(pattern)], size - pos)
        wi += 1
        if mi < len(messages):
            n = min(n, messages[mi]["at"] - pos)
        await writer.write(payload[pos : pos + n])
        pos += n
    await writer.close_async()
    return {"written": pos}


async def read(data):
    reader = data["reader"]
    digest = hashlib.sha256()
    state = {"bytes": 0}
    messages = []
    reader.on_message(lambda text: messages.append({"at": state["bytes"], "text": text}))
    async for chunk in reader:
        digest.update(chunk)
        state["bytes"] += len(chunk)
    return {"sha256": digest.hexdigest(), "bytes": state["bytes"], "messages": messages}


# --- The seed examples (sender -> processor; coordinator <-> worker), in Python. ---


async def data_processor(data):
    reader = data["reader"]
    raw = await reader.read_all()
    records = json.loads(raw.decode("utf-8"))
    values = [r["value"] for r in records]
    total = sum(values)
    return {
        "label": data["label"],
        "messages": [
            {"type": "stat", "key": "count", "value": len(records)},
            {"type": "stat", "key": "sum", "value": total},
            {"type": "stat", "key": "average", "value": total / len(records)},
            {"type": "stat", "key": "min", "value": min(values)},
            {"type": "stat", "key": "max", "value": max(values)},
        ],
    }


async def data_sender(data):
    channel = await create_channel_async(iii)
    await channel.writer.write(json.dumps(data["records"]).encode("utf-8"))
    # The writer is closed before the processor is even triggered.
    await channel.writer.close_async()
    return await iii.trigger_async(
        {
            "function_id": f"{PREFIX}.data.processor",
            "payload": {"label": "metrics-batch", "reader": channel.reader_ref.model_dump()},
        }
    )


async def stream_worker(data):
    reader, writer = data["reader"], data["writer"]
    chunks = []
    async for chunk in reader:
        chunks.append(chunk)
        await writer.send_message_async(
            json.dumps({"type": "progress", "chunks_received": len(chunks)})
        )
    full = b"".join(chunks)
    words = full.decode("utf-8").split()
    await writer.send_message_async(
        json.dumps({"type": "complete", "word_count": len(words), "byte_count": len(full)})
    )
    await writer.write(json.dumps({"words": words[:5], "total": len(words)}).encode("utf-8"))
    await writer.close_async()
    return {"status": "done"}


async def stream_coordinator(data):
    text, chunk_size = data["text"], int(data["chunkSize"])
    input_channel = await create_channel_async(iii)
    output_channel = await create_channel_async(iii)
    messages = []
    output_channel.reader.on_message(lambda msg: messages.append(json.loads(msg)))
    raw = text.encode("utf-8")
    for offset in range(0, len(raw), chunk_size):
        await input_channel.writer.write(raw[offset : offset + chunk_size])
    await input_channel.writer.close_async()
    # As the SDK's own test does: everything written and closed, then the worker runs, and
    # only after it returned the output (9 texts + 1 binary + end, all buffered) is read.
    worker_result = await iii.trigger_async(
        {
            "function_id": f"{PREFIX}.stream.worker",
            "payload": {
                "reader": input_channel.reader_ref.model_dump(),
                "writer": output_channel.writer_ref.model_dump(),
            },
        }
    )
    result = await output_channel.reader.read_all()
    return {
        "messages": messages,
        "binaryResult": json.loads(result.decode("utf-8")),
        "workerResult": worker_result,
    }


# --- Trigger types: this peer provides `interop.<name>.tt` and can bind to any type. ---

registrations: list = []
fired: list = []


class Provider(TriggerHandler):
    async def register_trigger(self, config):
        registrations.append(
            {"id": config.id, "function_id": config.function_id, "config": config.config}
        )

        async def fire():
            try:
                await iii.trigger_async(
                    {
                        "function_id": config.function_id,
                        "payload": {"provider": NAME, "trigger_id": config.id, "config": config.config},
                        "action": TriggerAction.Void(),
                    }
                )
            except Exception:  # reported through the target never firing
                pass

        asyncio.get_running_loop().create_task(fire())

    async def unregister_trigger(self, config):
        pass


async def list_registrations(_data):
    return {"registrations": registrations}


async def bind(data):
    iii.register_trigger(
        {"type": data["trigger_type"], "function_id": data["function_id"], "config": data["config"]}
    )
    return {"bound": True}


async def on_fire(data):
    fired.append(data)
    return {"ok": True}


async def list_fired(_data):
    return {"fired": fired}


iii.register_trigger_type({"id": f"{PREFIX}.tt", "description": f"interop trigger type of {NAME}"}, Provider())
for suffix, handler in [
    ("echo", echo),
    ("fail", fail),
    ("call", call),
    ("write", write),
    ("read", read),
    ("data.processor", data_processor),
    ("data.sender", data_sender),
    ("stream.worker", stream_worker),
    ("stream.coordinator", stream_coordinator),
    ("registrations", list_registrations),
    ("bind", bind),
    ("on_fire", on_fire),
    ("fired", list_fired),
]:
    iii.register_function(f"{PREFIX}.{suffix}", handler)

print("READY", flush=True)
threading.Event().wait()
