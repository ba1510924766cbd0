import threading
import time

from ganviz.widgets.coalesce import Latest


def test_burst_runs_at_most_two_and_ends_on_the_last_request():
    seen = []
    gate = threading.Event()

    def compute(v):
        if not seen:
            gate.wait(2)
        seen.append(v)

    latest = Latest()
    for v in range(100):
        latest.submit(compute, v)
    gate.set()
    assert latest.wait(5)
    assert seen[-1] == 99 and len(seen) <= 2 and latest.runs == len(seen)


def test_errors_reported_and_worker_keeps_serving():
    errors, seen = [], []

    def compute(v):
        if v == 0:
            raise ValueError("boom")
        seen.append(v)

    latest = Latest(on_error=errors.append)
    latest.submit(compute, 0)
    latest.wait(5)
    latest.submit(compute, 1)
    latest.wait(5)
    assert [str(e) for e in errors] == ["boom"] and seen == [1]


def test_foreground_mode_runs_inline():
    seen = []
    latest = Latest(background=False)
    latest.submit(seen.append, 5)
    assert seen == [5] and not latest.busy
    time.sleep(0)


def test_steady_stream_is_throttled_and_ends_on_the_last_request():
    seen = []
    latest = Latest(min_interval=0.25)
    start = time.monotonic()
    v = 0
    while time.monotonic() - start < 1.0:  # 200 events spread over one second
        latest.submit(seen.append, v)
        v += 1
        time.sleep(0.005)
    assert latest.wait(5)
    assert seen[-1] == v - 1 and len(seen) <= 6, len(seen)
    assert latest.runs == len(seen)


def test_discrete_events_are_not_delayed():
    seen = []
    latest = Latest(min_interval=0.3)
    start = time.monotonic()
    for v in range(3):  # three key presses 80 ms apart
        latest.submit(seen.append, v)
        latest.wait(5)
        time.sleep(0.08)
    assert seen == [0, 1, 2] and time.monotonic() - start < 0.5
