"""A load test of ``ramtag serve`` on loopback: bounded in requests and time, it stops by itself.

It starts the real server (the tiny fixture model unless ``--checkpoint`` names another), then for
each scenario runs N concurrent clients that each send R requests of one image (a real photo from
the fixture), and reports throughput, p50/p99 latency, the mean batch size the batching reached
(from ``/metrics``), the server's peak RSS (``VmHWM``), and how many requests failed. The last
scenario sends more concurrent images than ``--queue`` admits: those over it must get 503 with
``Retry-After`` (never a timeout or a crash).

    python benchmarks/serve_load.py --clients 1 4 16 --requests 20 --queue 64 --overload 48
"""

from __future__ import annotations

import argparse
import json
import statistics
import os
import sys
import threading
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
# The project's tiny official-code fixture, beside the checkout; RAMTAG_FIXTURE names another folder.
FIXTURE = Path(os.environ.get("RAMTAG_FIXTURE") or REPO.parent / "shared" / "fixtures" / "official_ramplus_tiny")

from serving import Server  # noqa: E402


def _metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return 0.0


def _peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def scenario(url: str, image: bytes, clients: int, requests: int, deadline_s: float) -> dict:
    latencies: list[float] = []
    codes: dict[int, int] = {}
    failures: list[str] = []
    lock = threading.Lock()
    stop_at = time.monotonic() + deadline_s
    before = httpx.get(url + "/metrics").text

    def client() -> None:
        with httpx.Client(timeout=120) as session:
            for _ in range(requests):
                if time.monotonic() > stop_at:
                    return
                started = time.perf_counter()
                try:
                    response = session.post(url + "/v1/tag", files=[("files", ("photo.jpg", image))])
                except httpx.HTTPError as error:
                    with lock:
                        failures.append(type(error).__name__)
                    continue
                with lock:
                    codes[response.status_code] = codes.get(response.status_code, 0) + 1
                    if response.status_code == 200:
                        latencies.append(time.perf_counter() - started)
                    elif response.status_code == 503 and response.headers.get("retry-after") is None:
                        failures.append("503 without Retry-After")

    started = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    after = httpx.get(url + "/metrics").text
    batches = _metric(after, "ramtag_batches_total") - _metric(before, "ramtag_batches_total")
    images = _metric(after, "ramtag_batch_images_total") - _metric(before, "ramtag_batch_images_total")
    latencies.sort()
    return {
        "clients": clients, "requests": sum(codes.values()), "codes": codes, "failures": failures,
        "images_per_s": round(codes.get(200, 0) / wall, 2),
        "p50_ms": round(1000 * statistics.median(latencies)) if latencies else None,
        "p99_ms": round(1000 * latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))]) if latencies else None,
        "mean_batch": round(images / batches, 2) if batches else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--requests", type=int, default=20, help="per client")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-wait-ms", type=float, default=20)
    parser.add_argument("--queue", type=int, default=64)
    parser.add_argument("--overload", type=int, default=0, help="clients of a last scenario against a queue of 4 (batches of 4)")
    parser.add_argument("--image", type=Path, default=FIXTURE / "images" / "demo4.jpg")
    parser.add_argument("--deadline", type=float, default=300, help="seconds per scenario at most")
    parser.add_argument("server_args", nargs="*", help="model options for ramtag serve (default: the tiny fixture)")
    args = parser.parse_args()
    model = args.server_args or ["--checkpoint", str(FIXTURE / "checkpoint.pth"), "--tag-list", str(FIXTURE / "tags.txt"),
                                 "--thresholds", str(FIXTURE / "thresholds.txt")]
    image = args.image.read_bytes()
    common = ["--batch-size", str(args.batch_size), "--max-wait-ms", str(args.max_wait_ms)]
    server = Server([*model, *common, "--queue", str(args.queue)])
    try:
        for clients in args.clients:
            found = scenario(server.url, image, clients, args.requests, args.deadline)
            found["peak_rss_mib"] = round(_peak_rss_mib(server.process.pid))
            print(json.dumps(found), flush=True)
    finally:
        server.stop()
    if args.overload:
        small = Server([*model, "--batch-size", "4", "--max-wait-ms", str(args.max_wait_ms), "--queue", "4"])
        try:
            found = scenario(small.url, image, args.overload, args.requests, args.deadline)
            found["queue"] = 4
            found["peak_rss_mib"] = round(_peak_rss_mib(small.process.pid))
            print(json.dumps(found), flush=True)
        finally:
            small.stop()


if __name__ == "__main__":
    main()
