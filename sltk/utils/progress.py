"""Progress reporting: a tqdm bar on a terminal, periodic log lines otherwise (logs, pipes)."""

from __future__ import annotations

import logging
import sys
import time
from typing import Iterable, Iterator, Optional, TypeVar

from tqdm import tqdm

T = TypeVar("T")
log = logging.getLogger("sltk")


def progress(
    iterable: Iterable[T],
    total: Optional[int] = None,
    desc: str = "",
    unit: str = "it",
    log_every_s: float = 30.0,
) -> Iterator[T]:
    """Iterate with a tqdm bar when stderr is a terminal, else log ``desc: n/total`` now and then."""
    if total is None and hasattr(iterable, "__len__"):
        total = len(iterable)  # type: ignore[arg-type]
    if sys.stderr.isatty():
        yield from tqdm(iterable, total=total, desc=desc, unit=unit, dynamic_ncols=True)
        return
    last = time.time()
    n = 0
    for n, item in enumerate(iterable, 1):
        yield item
        now = time.time()
        if now - last >= log_every_s:
            last = now
            log.info("%s: %d%s %s", desc or "progress", n, f"/{total}" if total else "", unit)
