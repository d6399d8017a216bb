"""Benchmark: archiving files from a local origin into the folder store (relay/archive).

  peak       one large file (--big-mib, 1 GiB by default) through `fetch_to_store` into a FileStore, in a
             fresh child process: its peak resident memory (ru_maxrss) over what it held just before the
             fetch must stay under 100 MiB, whatever the file's size. Also the fetch's MiB/s.
  throughput --files files of --file-mib MiB (1,000 of 1 MiB by default), --concurrency at a time, through
             `fetch_to_store` (guarded aiohttp session, sha256, size bound, redirect checks) against a plain
             httpx download loop streaming each response into the same FileStore (`put_stream`, so both
             write, fsync and rename alike; no hashing, no bounds). Files per second, first request to last
             file stored. The two take turns, run by run.

Layout: the origin (aiohttp on uvloop, serving one random MiB repeated, with a Content-Length) runs in its
own process on CPU 0; the fetchers run here on CPU 1 (`--no-pin` turns that off). The store's folder is
--dir (default: a new temp folder, removed at the end); it must be on a real disk, not tmpfs, or the files
count as memory.

Run: .venv/bin/python bench/archive.py [--runs 3] [--files 1000] [--file-mib 1] [--big-mib 1024]
                                       [--concurrency 8] [--dir DIR] [--no-pin]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from _harness import PYTHON, Server, free_port, main, median, options, write_json

from relay.archive import FileStore, archive_session, fetch_to_store

MIB = 1024 * 1024
PEAK_LIMIT_MIB = 100
HOSTS = ["127.0.0.1"]


# --- the origin (a child process) ---------------------------------------------------------------------


def serve_origin(port: int) -> None:
    """GET /{size}/{name}: `size` bytes (one random MiB repeated), with a Content-Length."""
    import uvloop
    from aiohttp import web

    block = os.urandom(MIB)

    async def file(request: web.Request) -> web.StreamResponse:
        size = int(request.match_info["size"])
        response = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
        response.content_length = size
        await response.prepare(request)
        for start in range(0, size, MIB):
            await response.write(block[: min(MIB, size - start)])
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_get("/{size}/{name}", file)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None, loop=uvloop.new_event_loop())


# --- peak memory (a child process, so its peak is this fetch's alone) ----------------------------------


def _max_rss_kib() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


async def _peak_child(port: int, size: int, folder: Path) -> dict[str, Any]:
    store = FileStore(folder)
    url = f"http://127.0.0.1:{port}/{size}/big.bin"
    async with archive_session(allow_private=True) as session:
        # One 1 MiB fetch first, so the imports, the pool and the threads count in the baseline.
        warm = f"http://127.0.0.1:{port}/{MIB}/warm.bin"
        await fetch_to_store(session, warm, store, "warm", max_bytes=2**40, timeout_s=60, allowed_hosts=HOSTS)
        before = _max_rss_kib()
        started = time.perf_counter()
        fetched = await fetch_to_store(
            session, url, store, "big", max_bytes=2**40, timeout_s=3600, allowed_hosts=HOSTS
        )
        seconds = time.perf_counter() - started
    await store.aclose()
    after = _max_rss_kib()
    return {
        "bytes": fetched.bytes,
        "seconds": seconds,
        "mib_per_s": fetched.bytes / MIB / seconds,
        "rss_before_mib": before / 1024,
        "rss_peak_mib": after / 1024,
        "rss_growth_mib": (after - before) / 1024,
    }


def measure_peak(port: int, big_mib: int, folder: Path) -> dict[str, Any]:
    child = subprocess.run(
        [PYTHON, __file__, "--peak-child", str(port), str(big_mib * MIB), str(folder / "files")],
        capture_output=True,
        text=True,
        check=False,
    )
    if child.returncode != 0:
        raise RuntimeError(f"the peak child failed:\n{child.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(child.stdout)
    shutil.rmtree(folder / "files", ignore_errors=True)
    return result


# --- throughput ------------------------------------------------------------------------------------------


async def _relay_fetches(urls: list[str], store: FileStore, concurrency: int) -> None:
    room = asyncio.Semaphore(concurrency)
    async with archive_session(allow_private=True, limit=concurrency) as session:

        async def one(index: int, url: str) -> None:
            async with room:
                await fetch_to_store(
                    session, url, store, f"relay/{index}", max_bytes=2**40, timeout_s=600, allowed_hosts=HOSTS
                )

        await asyncio.gather(*(one(i, url) for i, url in enumerate(urls)))


async def _httpx_fetches(urls: list[str], store: FileStore, concurrency: int) -> None:
    room = asyncio.Semaphore(concurrency)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, timeout=600) as client:

        async def one(index: int, url: str) -> None:
            async with room, client.stream("GET", url) as response:
                response.raise_for_status()
                await store.put_stream(f"httpx/{index}", response.aiter_bytes(), "application/octet-stream")

        await asyncio.gather(*(one(i, url) for i, url in enumerate(urls)))


async def measure_throughput(
    fetcher: str, port: int, files: int, file_mib: float, concurrency: int, folder: Path
) -> dict[str, float]:
    size = int(file_mib * MIB)
    urls = [f"http://127.0.0.1:{port}/{size}/f{i}.bin" for i in range(files)]
    store = FileStore(folder / fetcher)
    run = _relay_fetches if fetcher == "relay" else _httpx_fetches
    started = time.perf_counter()
    await run(urls, store, concurrency)
    seconds = time.perf_counter() - started
    await store.aclose()
    stored = sum(1 for path in (folder / fetcher).rglob("*") if path.is_file())
    if stored != files:
        raise RuntimeError(f"{fetcher}: {stored} files stored, not {files}")
    shutil.rmtree(folder / fetcher)
    return {"seconds": seconds, "files_per_s": files / seconds, "mib_per_s": files * size / MIB / seconds}


# --- the run ---------------------------------------------------------------------------------------------


async def bench(args: argparse.Namespace) -> None:
    folder = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="relay-bench-archive-"))
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    origin = Server([PYTHON, __file__, "--origin-port", str(port)], port, folder / "origin.log")
    try:
        origin.wait_ready()
        runs: list[dict[str, Any]] = []
        for run in range(args.runs):
            order = ("relay", "httpx") if run % 2 == 0 else ("httpx", "relay")
            result: dict[str, Any] = {}
            for fetcher in order:
                result[fetcher] = await measure_throughput(
                    fetcher, port, args.files, args.file_mib, args.concurrency, folder
                )
            result["peak"] = measure_peak(port, args.big_mib, folder)
            runs.append(result)
            print(
                f"run {run + 1}: relay {result['relay']['files_per_s']:.0f} files/s, httpx"
                f" {result['httpx']['files_per_s']:.0f} files/s; {args.big_mib} MiB file: peak RSS"
                f" +{result['peak']['rss_growth_mib']:.1f} MiB ({result['peak']['rss_peak_mib']:.0f} MiB"
                f" in all), {result['peak']['mib_per_s']:.0f} MiB/s"
            )
    finally:
        origin.stop()
        if not args.dir:
            shutil.rmtree(folder, ignore_errors=True)

    summary = {
        "relay_files_per_s": median([r["relay"]["files_per_s"] for r in runs]),
        "httpx_files_per_s": median([r["httpx"]["files_per_s"] for r in runs]),
        "peak_rss_growth_mib": max(r["peak"]["rss_growth_mib"] for r in runs),
        "peak_rss_mib": max(r["peak"]["rss_peak_mib"] for r in runs),
        "big_file_mib_per_s": median([r["peak"]["mib_per_s"] for r in runs]),
    }
    summary["relay_vs_httpx"] = summary["relay_files_per_s"] / summary["httpx_files_per_s"]
    print(
        f"\n{args.files} files of {args.file_mib:g} MiB, {args.concurrency} at a time"
        f" (median of {args.runs} runs):"
        f"\n  relay fetch_to_store  {summary['relay_files_per_s']:8.1f} files/s"
        f"\n  plain httpx loop      {summary['httpx_files_per_s']:8.1f} files/s"
        f"  (relay at {summary['relay_vs_httpx']:.2f}x)"
        f"\n{args.big_mib} MiB file: peak RSS growth {summary['peak_rss_growth_mib']:.1f} MiB"
        f" (limit {PEAK_LIMIT_MIB}), {summary['peak_rss_mib']:.0f} MiB in all,"
        f" {summary['big_file_mib_per_s']:.0f} MiB/s"
    )
    data = {"args": vars(args) | {"json": None}, "runs": runs, "summary": summary}
    path = write_json("archive", data, args.json)
    print(f"  (written to {path})")
    if summary["peak_rss_growth_mib"] >= PEAK_LIMIT_MIB:
        sys.exit(f"peak memory {summary['peak_rss_growth_mib']:.1f} MiB is over {PEAK_LIMIT_MIB} MiB")


def _options() -> argparse.ArgumentParser:
    parser = options(__doc__, runs=3)
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--file-mib", type=float, default=1.0)
    parser.add_argument("--big-mib", type=int, default=1024, help="the peak-memory file's size")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--dir", default=None, help="the store's folder (default: a temp folder)")
    return parser


if __name__ == "__main__":
    if sys.argv[1:2] == ["--origin-port"]:
        serve_origin(int(sys.argv[2]))
    elif sys.argv[1:2] == ["--peak-child"]:
        import uvloop

        port, size, folder = sys.argv[2:5]
        print(json.dumps(uvloop.run(_peak_child(int(port), int(size), Path(folder)))))
    else:
        main(_options(), bench)
