"""What ``GET /metrics`` reports, in Prometheus' text format: requests, images, batch sizes,
queue depth, latency. Plain counters updated from the event loop and the model thread."""

from __future__ import annotations

import threading
from collections import Counter

# Upper bounds of the latency histogram, in seconds (then +Inf).
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class Metrics:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: Counter[tuple[str, int]] = Counter()  # (endpoint, status) -> count
        self.images: Counter[str] = Counter()  # "tagged" / "error"
        self.batches = 0
        self.batched_images = 0
        self.largest_batch = 0
        self.queue_depth = 0
        self.latency_counts = [0] * (len(LATENCY_BUCKETS) + 1)
        self.latency_sum = 0.0
        self.latency_count = 0

    def request(self, endpoint: str, status: int, seconds: float) -> None:
        with self._lock:
            self.requests[(endpoint, status)] += 1
            self.latency_sum += seconds
            self.latency_count += 1
            index = next((i for i, bound in enumerate(LATENCY_BUCKETS) if seconds <= bound), len(LATENCY_BUCKETS))
            self.latency_counts[index] += 1

    def image(self, ok: bool) -> None:
        with self._lock:
            self.images["tagged" if ok else "error"] += 1

    def batch(self, size: int) -> None:
        with self._lock:
            self.batches += 1
            self.batched_images += size
            self.largest_batch = max(self.largest_batch, size)

    def text(self) -> str:
        """The exposition text."""
        with self._lock:
            lines = [
                "# HELP ramtag_requests_total HTTP requests answered, by endpoint and status code.",
                "# TYPE ramtag_requests_total counter",
                *(f'ramtag_requests_total{{endpoint="{endpoint}",code="{code}"}} {count}'
                  for (endpoint, code), count in sorted(self.requests.items())),
                "# HELP ramtag_images_total Images answered, tagged or with an error.",
                "# TYPE ramtag_images_total counter",
                *(f'ramtag_images_total{{result="{kind}"}} {self.images[kind]}' for kind in ("tagged", "error")),
                "# HELP ramtag_batches_total Model batches run.",
                "# TYPE ramtag_batches_total counter",
                f"ramtag_batches_total {self.batches}",
                "# HELP ramtag_batch_images_total Images in those batches (divided by batches: the mean batch size).",
                "# TYPE ramtag_batch_images_total counter",
                f"ramtag_batch_images_total {self.batched_images}",
                "# HELP ramtag_batch_size_max The largest batch so far.",
                "# TYPE ramtag_batch_size_max gauge",
                f"ramtag_batch_size_max {self.largest_batch}",
                "# HELP ramtag_queue_depth Images admitted and not answered yet.",
                "# TYPE ramtag_queue_depth gauge",
                f"ramtag_queue_depth {self.queue_depth}",
                "# HELP ramtag_request_seconds Time to answer a request.",
                "# TYPE ramtag_request_seconds histogram",
            ]
            total = 0
            for bound, count in zip((*map(str, LATENCY_BUCKETS), "+Inf"), self.latency_counts):
                total += count
                lines.append(f'ramtag_request_seconds_bucket{{le="{bound}"}} {total}')
            lines += [f"ramtag_request_seconds_sum {self.latency_sum:.6f}",
                      f"ramtag_request_seconds_count {self.latency_count}"]
        return "\n".join(lines) + "\n"
