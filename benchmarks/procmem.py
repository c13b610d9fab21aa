"""Memory of a running process tree, sampled from /proc (Linux): shared by the benchmark scripts."""

from __future__ import annotations

import re
import subprocess
import threading
import time
from pathlib import Path


def tree_pss_kb(root: int) -> int:
    """Proportional set size of a process and all its descendants.

    DataLoader workers are forked from the main process and share its pages (torch's libraries alone
    are ~500 MB); PSS counts a shared page once in total, where summing RSS would count it in every
    process.
    """
    total, stack = 0, [root]
    while stack:
        pid = stack.pop()
        try:
            rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
            total += int(re.search(r"^Pss:\s+(\d+)", rollup, flags=re.M).group(1))
            for task in Path(f"/proc/{pid}/task").iterdir():
                stack.extend(int(c) for c in (task / "children").read_text().split())
        except (OSError, AttributeError, ValueError):
            continue
    return total


class MemorySampler:
    """Samples a child's process-tree memory every ``interval`` seconds until it exits."""

    def __init__(self, process: subprocess.Popen, interval: float = 0.5) -> None:
        self.process = process
        self.interval = interval
        self.samples: list[tuple[float, int]] = []
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._start = time.perf_counter()

    def __enter__(self) -> MemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._thread.join()

    def _run(self) -> None:
        while self.process.poll() is None:
            self.samples.append((time.perf_counter() - self._start, tree_pss_kb(self.process.pid)))
            time.sleep(self.interval)

    @property
    def peak_mb(self) -> float:
        return round(max((kb for _, kb in self.samples), default=0) / 1024, 1)

    def late_median_mb(self) -> float | None:
        """Median over the second half of the run: near the peak when memory is flat."""
        if not self.samples:
            return None
        end = self.samples[-1][0]
        late = sorted(kb for t, kb in self.samples if t >= end / 2)
        return round(late[len(late) // 2] / 1024, 1)
