"""Raw repro (no SDK) of a channel tail loss in our engine, found by the interop matrix.

Usage: start `iii-engine --addr 127.0.0.1:PORT`, then
    .cache/interop/py-0.25.0/bin/python tests/interop/repro_channel_tail_loss.py ws://127.0.0.1:PORT 40
A writer sends 200 x 64 KiB binary frames, a 1-byte frame, the text "end" and a Close;
the reader (every other trial slow to start) must get all 202 messages, then a clean
Close. Observed (engine at the interop branch point): in ~1 of 20 trials the last 2-3
messages are missing and the reader still gets a clean Close (no status code).
"""
import asyncio, json, sys, uuid, websockets, time
URL = sys.argv[1]
async def one(trial, reader_delay):
    async with websockets.connect(URL) as ctl:
        await ctl.recv()
        i = str(uuid.uuid4())
        await ctl.send(json.dumps({"type":"invokefunction","invocation_id":i,"function_id":"engine::channels::create","data":{}}))
        while True:
            m = json.loads(await ctl.recv())
            if m.get("invocation_id") == i: break
        refs = m["result"]
        def url(r, d): return f"{URL}/ws/channels/{r['channel_id']}?key={r['access_key']}&dir={d}"
        reader = await websockets.connect(url(refs["reader"], "read"), max_size=None)
        writer = await websockets.connect(url(refs["writer"], "write"))
        N = 200
        async def write():
            for k in range(N):
                await writer.send(bytes([k % 256]) * 65536)
            await writer.send(b"\x01")
            await writer.send("end")
            await writer.close()
        wt = asyncio.create_task(write())
        await asyncio.sleep(reader_delay)
        frames = []
        close = None
        try:
            async for msg in reader:
                frames.append(msg if isinstance(msg, str) else len(msg))
                if reader_delay and len(frames) % 50 == 0: await asyncio.sleep(0.01)
        except websockets.ConnectionClosed as e:
            close = ("error", e)
        close = close or ("ok", reader.close_code, reader.close_reason)
        await wt
        last = frames[-3:]
        ok = len(frames) == N + 2 and frames[-1] == "end" and frames[-2] == 1
        print(trial, "OK" if ok else "LOST", len(frames), last, close if not ok else "")
        return ok
async def main():
    bad = 0
    for t in range(int(sys.argv[2])):
        if not await one(t, 0.3 if t % 2 else 0): bad += 1
    print("lost in", bad, "trials")
    return bad
sys.exit(1 if asyncio.run(main()) else 0)
