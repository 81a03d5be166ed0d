"""`python tests/crashpoints.py ARGS...` runs `bridgedfast ARGS...` and SIGKILLs itself at a chosen
point, for the kill -9 tests (the hooks live here, not in the package):

  BRIDGEDFAST_TEST_KILL_AT_STEP=N        a training run's optimiser step N (1-based, `train`'s on_step)
  BRIDGEDFAST_TEST_KILL_AFTER_BATCHES=N  once a generation output has committed N batches
  BRIDGEDFAST_TEST_KILL_AFTER_SCORED=N   once a filter has saved the scores of N batches
"""
from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

KILL_AT_STEP = "BRIDGEDFAST_TEST_KILL_AT_STEP"
KILL_AFTER_BATCHES = "BRIDGEDFAST_TEST_KILL_AFTER_BATCHES"
KILL_AFTER_SCORED = "BRIDGEDFAST_TEST_KILL_AFTER_SCORED"
SCRIPT = Path(__file__).resolve()


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def _kill_at_step(step: int) -> None:
    import bridgedfast.transfer as transfer

    original = transfer.train

    def train(config, *, on_step=None):
        def hook(n: int) -> None:
            if on_step is not None:
                on_step(n)
            if n == step:
                _die()

        return original(config, on_step=hook)

    transfer.train = train


def _kill_after_batches(batches: int) -> None:
    from bridgedfast.generate import sink

    original_init = sink.StoreSink.__init__

    def init(self, *args, **kwargs):
        original_init(self, *args, **kwargs)
        writer, added = self.writer, [0]
        add_batch, commit = writer.add_batch, writer.commit

        def counted_add(*a, **k):
            add_batch(*a, **k)
            added[0] += 1

        def commit_then_maybe_die(*a, **k):
            commit(*a, **k)
            if added[0] >= batches:
                _die()

        writer.add_batch, writer.commit = counted_add, commit_then_maybe_die

    sink.StoreSink.__init__ = init


def _kill_after_scored(batches: int) -> None:
    from bridgedfast.filter import api

    original, saved = api.ScoreLog.append, [0]

    def append(self, scores):
        original(self, scores)
        saved[0] += 1
        if saved[0] >= batches:
            _die()

    api.ScoreLog.append = append


def main() -> int:
    if int(os.environ.get(KILL_AT_STEP, "0") or 0):
        _kill_at_step(int(os.environ[KILL_AT_STEP]))
    if int(os.environ.get(KILL_AFTER_BATCHES, "0") or 0):
        _kill_after_batches(int(os.environ[KILL_AFTER_BATCHES]))
    if int(os.environ.get(KILL_AFTER_SCORED, "0") or 0):
        _kill_after_scored(int(os.environ[KILL_AFTER_SCORED]))
    from bridgedfast.cli import main as cli_main

    return cli_main(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
