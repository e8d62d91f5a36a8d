"""What running the engine in a child process would cost per job: a task sent to the
child and a result image sent back over a pipe, next to the in-process hop the worker
makes today (a call on the engine's thread and back to the event loop).

    .venv/bin/python bench/process_hop.py [--jobs 200]

It prints one JSON line per case: the median milliseconds per job of the round trip
only (no generation, no encoding: the child sends back what a pipeline would hand over),
for an SD-1.5-sized (512²) and an SDXL-sized (1024²) image, as WebP bytes (the child
encodes) and as raw RGB pixels (the parent would encode).
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import io
import json
import multiprocessing
import statistics
import sys
import time
from multiprocessing.connection import Connection


def _image(side: int) -> tuple[bytes, bytes]:
    """A noisy gradient (WebP cannot shrink it much: a heavy case), raw and as WebP."""
    from PIL import Image

    gradient = Image.linear_gradient("L").resize((side, side))
    noise = Image.effect_noise((side, side), 64)
    image = Image.merge("RGB", (gradient, noise, gradient.transpose(Image.Transpose.ROTATE_90)))
    buf = io.BytesIO()
    image.save(buf, format="WEBP")
    return image.tobytes(), buf.getvalue()


def _child(conn: Connection, payload: bytes) -> None:
    """The engine's process: answers each task with the result."""
    while True:
        task = conn.recv()
        if task is None:
            return
        conn.send_bytes(payload)


def _through_process(payload: bytes, jobs: int) -> list[float]:
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=_child, args=(child, payload), daemon=True)
    proc.start()
    task = {"prompt": "a stone golem in a mossy forest", "width": 512, "height": 512,
            "steps": 20, "seed": 1, "ext": "webp"}
    times: list[float] = []
    try:
        for _ in range(jobs + 5):
            started = time.perf_counter()
            parent.send(task)
            data = parent.recv_bytes()
            times.append(time.perf_counter() - started)
            assert len(data) == len(payload)
    finally:
        parent.send(None)
        proc.join(timeout=10)
    return times[5:]


async def _in_thread(payload: bytes, jobs: int) -> list[float]:
    """Today's hop: the engine's own thread runs the call, the loop awaits it."""
    loop = asyncio.get_running_loop()
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
    times: list[float] = []
    for _ in range(jobs + 5):
        started = time.perf_counter()
        data = await loop.run_in_executor(pool, lambda: payload)
        times.append(time.perf_counter() - started)
        assert data is payload
    pool.shutdown()
    return times[5:]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=200)
    args = parser.parse_args(argv)
    for side in (512, 1024):
        raw, webp = _image(side)
        inline = asyncio.run(_in_thread(webp, args.jobs))
        print(json.dumps({"bench": "process_hop", "side": side, "case": "in-process thread",
                          "ms_per_job": round(statistics.median(inline) * 1000, 3)}))
        for name, payload in (("child process, WebP bytes", webp),
                              ("child process, raw RGB", raw)):
            hops = _through_process(payload, args.jobs)
            print(json.dumps({"bench": "process_hop", "side": side, "case": name,
                              "bytes": len(payload),
                              "ms_per_job": round(statistics.median(hops) * 1000, 3)}),
                  flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
