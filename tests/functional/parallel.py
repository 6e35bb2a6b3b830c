"""One of several worker processes sharing the functional tests and the fault sweep.

``scripts/test`` starts a few of these at once (``python -m
tests.functional.parallel WORK_DIR``). Each discovers the same work, in the
same order: every fault-sweep test method first (the longest), then every
functional test class. A worker takes an item by creating a claim file for
it in ``WORK_DIR`` (``O_EXCL``, so exactly one worker gets each) and runs it
with unittest; so a worker that finishes early takes the next item instead
of waiting for a fixed share. The exit status is unittest's: 0 when every
test it ran passed. An item still running after ``ITEM_LIMIT`` seconds is
taken to hang: faulthandler prints every thread's stack and the worker exits 1.

Nova's test base keeps its state per test (each test builds its own stack on
its own xapisim), so tests of one module can run in different processes.
"""

from __future__ import annotations

import faulthandler
import os
import resource
import sys
import time
import unittest
from collections.abc import Iterator
from pathlib import Path

FUNCTIONAL = Path(__file__).resolve().parent
TOP = FUNCTIONAL.parent.parent
#: an item still running after this long is taken to hang: every thread's stack is
#: printed and the worker exits, so the run fails with the place it hung, not a CI timeout
ITEM_LIMIT = float(os.environ.get("XENAPI_ITEM_LIMIT", 1800))


def _flatten(suite: unittest.TestSuite) -> Iterator[unittest.TestCase]:
    for item in suite:
        if isinstance(item, unittest.TestSuite):
            yield from _flatten(item)
        else:
            yield item


def work() -> list[unittest.TestSuite]:
    """The items, in the order workers take them: sweep methods (the costliest first, so that
    none of them is left running alone at the end), then functional classes."""
    from tests.functional import fault_sweep
    loader = unittest.TestLoader()
    sweep = loader.loadTestsFromModule(fault_sweep)
    items = [unittest.TestSuite([t]) for t in sorted(
        _flatten(sweep), key=lambda t: type(t).__name__ not in fault_sweep.COSTLIEST)]
    by_class: dict[str, unittest.TestSuite] = {}
    for test in _flatten(loader.discover(str(FUNCTIONAL), top_level_dir=str(TOP))):
        if isinstance(test, unittest.loader._FailedTest):  # an import error is a failure too
            by_class[test.id()] = unittest.TestSuite([test])
            continue
        name = f"{type(test).__module__}.{type(test).__qualname__}"
        by_class.setdefault(name, unittest.TestSuite()).addTest(test)
    return items + [by_class[k] for k in sorted(by_class)]


def _name(suite: unittest.TestSuite) -> str:
    tests = list(_flatten(suite))
    return tests[0].id() if len(tests) == 1 else tests[0].id().rsplit(".", 1)[0]


def _cpu() -> float:
    """CPU seconds of this process and the children it waited for (plugins, qemu-img, ssh):
    an item's own cost, which its wall time on a busy machine is not."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(
        resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _claim(work_dir: Path, index: int) -> bool:
    try:
        os.close(os.open(work_dir / f"{index}.claimed", os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return False
    return True


class Claimed(unittest.TestSuite):
    """The items this worker claims, each claimed only when the previous one has run."""

    def __init__(self, items: list[unittest.TestSuite], work_dir: Path) -> None:
        super().__init__()
        self._items = items
        self._dir = work_dir

    def run(self, result: unittest.TestResult, debug: bool = False) -> unittest.TestResult:
        for index, suite in enumerate(self._items):
            if result.shouldStop:
                break
            if _claim(self._dir, index):
                name, started, cpu = _name(suite), time.monotonic(), _cpu()  # a suite drops tests it ran
                faulthandler.dump_traceback_later(ITEM_LIMIT, exit=True)
                suite.run(result)  # each item is a top-level suite: its class fixtures end with it
                faulthandler.cancel_dump_traceback_later()
                print(f"\n[{time.monotonic() - started:6.1f} s] {name} ({_cpu() - cpu:.0f} CPU s)",
                      file=sys.stderr)
        return result


def main(argv: list[str]) -> int:
    work_dir = Path(argv[0])
    work_dir.mkdir(parents=True, exist_ok=True)
    result = unittest.TextTestRunner(stream=sys.stderr).run(Claimed(work(), work_dir))
    return 0 if result.wasSuccessful() else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
