"""Shared fixtures: a real nats-server per test, ledger databases (SQLite, and PostgreSQL when
DATABASE_URL is set), the tiny model, and a real `avlora up` stack."""

import asyncio
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

# One compute thread per process (the tests and the services they start, which inherit it): two
# test files run at once on two cores, and each with a thread per core would make the threads of
# the other's tiny-model ops wait on each other.
os.environ.setdefault("OMP_NUM_THREADS", "1")
# The stacks' previews: 4 Euler steps instead of 30 (the same code; the tiny model's pictures and
# sounds are noise at any count). A test that needs another count sets its own.
os.environ.setdefault("AVLORA_TRAIN_SAMPLING_STEPS", "4")

sys.path.insert(0, str(Path(__file__).parent))  # tests/media.py

from avlora.bus import wait_for_port  # noqa: E402
from avlora.stack import SERVICES, Stack, free_port, nats_server_binary  # noqa: E402


# The files that take longest (measured 2026-12-03), run first: pytest-xdist hands whole files to its
# workers in collection order, so a long file collected last would leave one worker running alone.
LONGEST_FIRST = ("test_cli_stack.py", "test_scale_out.py", "test_trainer_acceleration.py", "test_bench.py",
                 "test_trainer_distributed.py", "test_web_browser.py", "test_trainer_resume_stack.py",
                 "test_nats_outage.py", "test_downloads.py", "test_trainer_host_memory.py", "test_observability.py",
                 "test_supervisor.py", "test_preprocess_server.py", "test_spine.py", "test_webhooks.py",
                 "test_web.py", "test_ingest_inspect.py", "test_cancel_race.py")


def pytest_collection_modifyitems(items):
    rank = {name: index for index, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: the rest keep their order


@pytest.fixture
def nats_url(tmp_path):
    port = free_port()
    process = subprocess.Popen([nats_server_binary(), "-js", "-sd", str(tmp_path / "nats"), "-a", "127.0.0.1",
                                "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    asyncio.run(wait_for_port(f"nats://127.0.0.1:{port}"))
    yield f"nats://127.0.0.1:{port}"
    process.terminate()
    process.wait(timeout=10)


def _database_params():
    params = ["sqlite"]
    if os.environ.get("DATABASE_URL"):
        params.append("postgresql")
    return params


@pytest.fixture(params=_database_params())
def database_url(request, tmp_path):
    """A fresh, empty ledger database: SQLite in a temp dir, or a new PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'ledger.db'}"
        return
    import psycopg
    base = os.environ["DATABASE_URL"]
    name = f"avlora_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(base, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    yield base.rsplit("/", 1)[0] + "/" + name
    with psycopg.connect(base, autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    from avlora.model.tiny import write_tiny_model
    return write_tiny_model(tmp_path_factory.mktemp("model") / "ltx23-tiny")


class StackStarter:
    """Starts real stacks (`avlora up`'s Stack) under a folder, on the tiny model with the tests'
    settings; `stop_all` stops them."""

    def __init__(self, folder: Path, tiny_model_dir: Path):
        self.folder, self.tiny_model_dir, self.stacks = folder, tiny_model_dir, []

    def __call__(self, extra_env: dict | None = None, workers: dict | None = None, name: str = "stack",
                 services: tuple[str, ...] = SERVICES) -> Stack:
        env = {"AVLORA_MODEL_DIR": str(self.tiny_model_dir), "AVLORA_ACK_WAIT_S": "4",
               "AVLORA_INGEST_ALLOW_NETWORKS": "127.0.0.0/8"} | (extra_env or {})
        stack = Stack(self.folder / name, extra_env=env, workers=workers, services=services)
        self.stacks.append(stack)
        stack.start()
        return stack

    def stop_all(self) -> None:
        for stack in self.stacks:
            stack.stop()


@pytest.fixture
def make_stack(tmp_path, tiny_model_dir):
    """Starts stacks for one test; stops them after it."""
    starter = StackStarter(tmp_path, tiny_model_dir)
    yield starter
    starter.stop_all()


@pytest.fixture(scope="module")
def make_module_stack(tmp_path_factory, tiny_model_dir):
    """Starts stacks that a module's tests share; stops them after the module."""
    starter = StackStarter(tmp_path_factory.mktemp("stacks"), tiny_model_dir)
    yield starter
    starter.stop_all()


@pytest.fixture
def ledger_stack(make_stack) -> dict:
    """A stack of the ledger alone (NATS + ledger process); its stack.json information."""
    return make_stack(services=("ledger",)).info


@pytest.fixture
def authenticator(ledger_stack):
    """How a stage service authenticates callers: through the ledger's internal port, with the token."""
    from avlora.auth import LedgerAuthenticator
    return LedgerAuthenticator(ledger_stack["ledger_internal_addr"], ledger_stack["internal_token"])


@pytest.fixture
async def ledger(database_url):
    """The Ledger (no process) on a migrated database: SQLite, or PostgreSQL with DATABASE_URL."""
    from services.ledger.db import make_engine, migrate
    from services.ledger.ledger import Ledger
    engine = make_engine(database_url)
    await migrate(engine)
    yield Ledger(engine)
    await engine.dispose()


@pytest.fixture(scope="module")
def trainer_env(request):
    """The test module's TRAINER_ENV (AVLORA_TRAIN_* variables) set for the module, one torch thread."""
    from trainer_sets import trainer_environment
    with trainer_environment(request.module.TRAINER_ENV):
        yield
