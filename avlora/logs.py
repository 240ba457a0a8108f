"""How every service process logs (AVLORA_LOG_FORMAT): in json, each line is one JSON object
(structlog) with this process's worker name and, for a line a job causes, the job_id, tenant and
stage that the stage worker binds for the work item it runs (structlog.contextvars, carried into the
stage's thread). Our own lines, the standard library's (libraries log there), warnings, uncaught
exceptions and whatever a library prints on stdout or stderr all become such lines. console: the
same lines, readable on a terminal (what is printed passes through as it is)."""

import io
import logging
import sys
import threading

import structlog

from avlora.settings import Settings


class LinesToLog(io.TextIOBase):
    """A text stream whose every line (ended by a newline or a carriage return, as progress bars
    write them) becomes a log record: for sys.stdout and sys.stderr of a process that logs JSON."""

    def __init__(self, log, stream: str):
        self.log, self.stream, self.pending, self.lock = log, stream, "", threading.Lock()

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        with self.lock:
            *lines, self.pending = (self.pending + text).replace("\r", "\n").split("\n")
        for line in filter(str.strip, lines):
            self.log.info(line.rstrip(), logger=self.stream)
        return len(text)


def configure_logging(settings: Settings | None = None) -> None:
    settings = settings or Settings.from_env()

    def add_worker(_logger, _method, event: dict) -> dict:
        event.setdefault("worker", settings.worker_name)
        return event

    json_lines = settings.log_format == "json"
    out = sys.__stderr__
    shared = [structlog.contextvars.merge_contextvars, structlog.processors.add_log_level, add_worker,
              structlog.processors.TimeStamper(fmt="iso")]
    render = [structlog.processors.format_exc_info,
              structlog.processors.JSONRenderer() if json_lines else structlog.dev.ConsoleRenderer(colors=False)]
    handler = logging.StreamHandler(out)
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared, processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *render]))
    logging.basicConfig(level=logging.INFO, handlers=[handler], force=True)
    logging.captureWarnings(True)
    structlog.configure(processors=[*shared, *render], logger_factory=structlog.PrintLoggerFactory(out),
                        cache_logger_on_first_use=True)  # configured once per process: no per-call lookup
    log = structlog.get_logger()
    sys.excepthook = lambda kind, value, trace: log.critical("uncaught exception", exc_info=(kind, value, trace))
    threading.excepthook = lambda hook: log.critical(
        "uncaught exception", thread=getattr(hook.thread, "name", ""),
        exc_info=(hook.exc_type, hook.exc_value, hook.exc_traceback))
    if json_lines:
        sys.stdout, sys.stderr = LinesToLog(log, "stdout"), LinesToLog(log, "stderr")
