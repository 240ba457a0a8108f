"""A cancelled job stops within seconds, even inside one long clip: every long loop of
preprocessing (probing, scene detection, decoding, VAE encoding) asks `should_stop` (the job
context's `cancelled`) as it goes and raises JobCancelled when it says so."""

from collections.abc import Callable

from avlora.stage import JobCancelled

ShouldStop = Callable[[], bool]


def stop_if_asked(should_stop: ShouldStop | None) -> None:
    if should_stop is not None and should_stop():
        raise JobCancelled()
