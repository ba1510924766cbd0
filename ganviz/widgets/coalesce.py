"""Run only the latest request: at most one computation in flight, stale requests are dropped."""
from __future__ import annotations

import threading
import time
from typing import Any, Callable

__all__ = ["Latest"]


class Latest:
    """Coalesce a burst of requests (slider drags, mouse moves) into at most one running computation.

    ``submit(fn, *args)`` records a request.  If nothing is running, a worker thread starts and runs it; requests
    arriving meanwhile replace each other, and when the running one ends only the most recent is run.  So a
    burst of N events runs at most two computations, and the last one always matches the last event.
    ``min_interval`` (seconds) spaces the starts of consecutive computations while events stream in (requests
    less than ``stream_gap`` apart, as from a dragged slider), so at most about ``1 / min_interval`` run per
    second; discrete events (a click, a key press, a drag's last value after a pause) run at once.  Exceptions go
    to ``on_error`` (default: re-raised in the worker); the worker keeps serving.  A KeyboardInterrupt drops the
    queued request, leaves the runner idle (the next request computes) and goes to ``on_error`` too; in the
    foreground it is then re-raised.
    """

    def __init__(self, on_error: Callable[[BaseException], Any] | None = None, background: bool = True,
                 min_interval: float = 0.0, stream_gap: float = 0.05) -> None:
        self._lock = threading.Lock()
        self._pending: tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any]] | None = None
        self._thread: threading.Thread | None = None
        self._idle = threading.Event()
        self._idle.set()
        self.on_error = on_error
        self.background = background
        self.min_interval = min_interval
        self.stream_gap = stream_gap
        self.runs = 0
        self._last_start = float("-inf")
        self._last_submit = float("-inf")
        self._streaming = False

    def submit(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        with self._lock:
            now = time.monotonic()
            self._streaming = now - self._last_submit < self.stream_gap
            self._last_submit = now
            self._pending = (fn, args, kwargs)
            if self._thread is not None:
                return
            self._idle.clear()
            if self.background:
                self._thread = threading.Thread(target=self._work, daemon=True)
                self._thread.start()
                return
            self._thread = threading.current_thread()
        self._work()

    def _work(self) -> None:
        while True:
            wait = self._last_start + self.min_interval - time.monotonic()
            if wait > 0 and self.background and self._streaming:
                time.sleep(wait)  # newer requests replace the pending one meanwhile
            with self._lock:
                job, self._pending = self._pending, None
                if job is None:
                    self._thread = None
                    self._idle.set()
                    return
            fn, args, kwargs = job
            try:
                self._last_start = time.monotonic()
                self.runs += 1
                fn(*args, **kwargs)
            except KeyboardInterrupt as err:  # Ctrl+C: drop what is queued, go idle, the next request runs
                with self._lock:
                    self._pending, self._thread = None, None
                    self._idle.set()
                if self.on_error is not None:
                    self.on_error(err)
                if not self.background:
                    raise  # the interrupted cell stops as the user asked
                return
            except Exception as err:  # noqa: BLE001 - reported, the worker goes on
                if self.on_error is None:
                    raise
                self.on_error(err)

    def wait(self, timeout: float | None = None) -> bool:
        """Block until no request is pending or running; True if idle."""
        return self._idle.wait(timeout)

    @property
    def busy(self) -> bool:
        """True while a request is pending or running."""
        return not self._idle.is_set()
