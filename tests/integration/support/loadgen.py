"""A load generator: steady requests at a fixed rate, every outcome counted.

Run as a separate process::

    python loadgen.py URL BODY_FILE SUMMARY_FILE [--rate 40] [--timeout 10]

It sends ``POST URL`` with the JSON body every 1/rate seconds (open loop: a slow answer
does not delay the next request) until SIGTERM or SIGINT, waits for the requests in
flight, and writes a JSON summary: how many were sent, answered 200, failed (any other
status or a connection error, with the first messages), and how many answers each
upstream gave (the router's ``X-Mlform-Upstream`` header), per second of the run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import time
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp


async def run(url: str, body: bytes, rate: float, timeout: float) -> dict[str, Any]:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    counts: Counter[str] = Counter()
    upstreams: Counter[str] = Counter()
    timeline: list[tuple[float, str]] = []
    failures: list[str] = []
    started = time.monotonic()
    client_timeout = aiohttp.ClientTimeout(total=timeout)
    headers = {"Content-Type": "application/json"}
    async with aiohttp.ClientSession(timeout=client_timeout) as session:

        async def one() -> None:
            counts["sent"] += 1
            try:
                async with session.post(url, data=body, headers=headers) as response:
                    await response.read()
                    upstream = response.headers.get("X-Mlform-Upstream", "?")
                    if response.status == 200:
                        counts["ok"] += 1
                        upstreams[upstream] += 1
                        timeline.append((round(time.monotonic() - started, 2), upstream))
                        return
                    message = f"HTTP {response.status} from {upstream}"
            except (aiohttp.ClientError, TimeoutError) as exc:
                message = f"{type(exc).__name__}: {exc}"
            counts["failed"] += 1
            if len(failures) < 20:
                failures.append(message)

        tasks: set[asyncio.Task[None]] = set()
        interval = 1.0 / rate
        next_at = time.monotonic()
        while not stop.is_set():
            task = asyncio.create_task(one())
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            next_at += interval
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), max(0.0, next_at - time.monotonic()))
        if tasks:
            await asyncio.gather(*tasks)
    return {
        "sent": counts["sent"],
        "ok": counts["ok"],
        "failed": counts["failed"],
        "failures": failures,
        "upstreams": dict(upstreams),
        "timeline": timeline,
        "seconds": round(time.monotonic() - started, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("body", type=Path)
    parser.add_argument("summary", type=Path)
    parser.add_argument("--rate", type=float, default=40.0)
    parser.add_argument("--timeout", type=float, default=10.0)
    args = parser.parse_args()
    summary = asyncio.run(run(args.url, args.body.read_bytes(), args.rate, args.timeout))
    args.summary.write_text(json.dumps(summary))


if __name__ == "__main__":
    main()
