"""What every command line of the tuner shares: one-line usage errors, and knowing a Ctrl-C when it comes."""

from __future__ import annotations

import argparse


class OneLineParser(argparse.ArgumentParser):
    """Raises ValueError instead of printing usage, so each CLI reports it as one line, exit 2."""

    def error(self, message: str) -> None:
        raise ValueError(message)


def stopped_by_ctrl_c(error: BaseException | None) -> bool:
    """Whether error is Ctrl-C or came from handling one.

    A Ctrl-C that lands while Optuna stores a trial's result surfaces as the UnboundLocalError of
    Optuna's own clean-up code (5.0.0), with the KeyboardInterrupt as its context. tuner.interrupt
    keeps a first Ctrl-C out of there; a second one, which acts at once, can still land there.
    """
    while error is not None:
        if isinstance(error, KeyboardInterrupt):
            return True
        error = error.__cause__ or error.__context__
    return False
