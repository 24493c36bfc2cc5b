"""One lifecycle for derived state (pipeline/derived.py): staleness decided by the fingerprint, readers never
compute, one coalescing background worker, problems kept as answers, a result kept on disk read again."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from pipeline.derived import Derived, Made
from pipeline.errors import BadInputError


class Total(Derived[int]):
    """The sum of a list, counting how often it was made; ``gate`` holds a make until set."""

    name = "total"

    def __init__(self, values: list[int]) -> None:
        super().__init__()
        self.values = values
        self.makes = 0
        self.gate = threading.Event()
        self.gate.set()

    def fingerprint(self) -> str:
        return repr(self.values)

    def make(self) -> int:
        self.gate.wait(10)
        self.makes += 1
        if not self.values:
            raise BadInputError("nothing to add up")
        if self.values == [-1]:
            raise RuntimeError("disk full")
        return sum(self.values)


def test_a_reader_never_computes_and_staleness_follows_the_inputs():
    values = [1, 2]
    total = Total(values)
    assert (total.current(), total.fresh(), total.is_stale(), total.state()) == (None, None, True, "none")
    assert total.makes == 0
    assert total.refresh() == 3 and total.refresh() == 3 and total.makes == 1  # made once per fingerprint
    values.append(3)
    assert total.is_stale() and total.current() == 3 and total.fresh() is None and total.makes == 1
    assert total.refresh(force=False) == 6 and total.refresh(force=True) == 6 and total.makes == 3


def test_requests_coalesce_into_one_background_run_and_again_if_asked_meanwhile():
    values = [1]
    total = Total(values)
    total.gate.clear()
    total.request()
    time.sleep(0.05)
    assert total.state() == "making"
    values.append(1)
    for _ in range(5):  # asked again while it runs: one more run after it, not five
        total.request()
    total.gate.set()
    total.wait(10)
    assert total.fresh() == 2 and total.makes == 2 and total.state() == "ready"


def test_a_problem_is_kept_as_the_answer_for_its_inputs_and_a_failure_is_reported():
    values: list[int] = []
    total = Total(values)
    with pytest.raises(BadInputError, match="nothing to add up"):
        total.refresh()
    assert total.problem() == "nothing to add up" and total.current() is None
    with pytest.raises(BadInputError):
        total.refresh()  # the kept answer, not made again
    assert total.makes == 1
    values.append(-1)
    total.request()
    total.wait(10)
    assert total.state() == "failed" and total.failure == "disk full" and total.problem() is None
    values[0] = 5
    total.request()
    total.wait(10)
    assert (total.state(), total.failure, total.current()) == ("ready", None, 5)


def test_settling_waits_for_the_inputs_to_stop_changing():
    values = [1]

    class Settling(Total):
        settle_s = 0.2

    total = Settling(values)
    total.request()
    time.sleep(0.1)
    values.append(1)  # still changing: the run waits for another quiet spell
    total.wait(10)
    assert total.makes == 1 and total.fresh() == 2


class Saved(Derived[int]):
    """A result kept in a JSON file that other processes may write."""

    name = "saved"
    on_disk = True

    def __init__(self, path: Path, source: list[int]) -> None:
        super().__init__()
        self.path, self.source = path, source

    def fingerprint(self) -> str:
        return str(len(self.source))

    def make(self) -> int:
        return len(self.source) * 10

    def save(self, made: Made[int]) -> None:
        self.path.write_text(json.dumps({"fingerprint": made.fingerprint, "value": made.value}))

    def load(self) -> Made[int] | None:
        try:
            saved = json.loads(self.path.read_text())
        except FileNotFoundError:
            return None
        return Made(saved["fingerprint"], saved["value"])


def test_a_result_on_disk_is_read_as_it_is_now(tmp_path):
    path, source = tmp_path / "saved.json", [1]
    first = Saved(path, source)
    assert first.refresh() == 10
    other_process = Saved(path, source)
    assert other_process.fresh() == 10 and not other_process.is_stale()  # read, not made again
    path.write_text(json.dumps({"fingerprint": "another", "value": 99}))  # rewritten elsewhere
    assert first.is_stale() and first.current() == 99 and first.fresh() is None


def test_an_expected_problem_in_the_background_is_no_failure():
    total = Total([])
    total.request()
    total.wait(10)
    assert total.state() == "none" and total.failure is None and total.problem() == "nothing to add up"


def test_a_make_stops_at_its_stop_point_when_the_process_ends():
    import pipeline.derived as derived

    class Long(Total):
        def make(self) -> int:
            for _ in range(1000):
                self.stop_point()  # where a long make may give up
                time.sleep(0.01)
            return 0

    long = Long([1])
    long.request()
    time.sleep(0.05)
    started = time.monotonic()
    derived._stop_workers()  # what the interpreter runs at exit
    try:
        assert time.monotonic() - started < 1.0 and long._worker is None  # it stopped, well before 10 s of work
        assert long.state() == "none" and long.failure is None  # stopping is no failure
        long.request()
        assert long._worker is None  # and nothing new starts once the process is ending
    finally:
        derived._EXITING.clear()  # this process goes on: the other tests' workers must run
