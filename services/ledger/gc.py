"""`avlora gc [--dry-run]`: applies retention (services/ledger/retention.py) to the whole store,
reporting what it reclaims. The ledger contributes this command to the CLI through the
`avlora.commands` entry point (pyproject.toml), so the client never imports the ledger. Runs
where the ledger's database and the store are reachable (the same AVLORA_DATABASE_URL /
AVLORA_STORE_URL / AWS_* settings as the ledger)."""

import asyncio
from pathlib import Path
from collections import Counter

from avlora.settings import Settings
from avlora.stores import open_store
from services.ledger import retention
from services.ledger.db import make_engine
from services.ledger.ledger import Ledger


async def _plan(settings: Settings, store, days: float) -> retention.Plan:
    engine = make_engine(settings.ledger_database_url)
    try:
        return await retention.plan_for_store(Ledger(engine), store, days)
    finally:
        await engine.dispose()


def cmd_gc(args) -> int:
    settings = Settings.from_env(**({"data_dir": Path(args.data_dir)} if args.data_dir else {}))
    store = open_store(settings.store_url)
    days = settings.retention_days if args.days is None else args.days
    plan = asyncio.run(_plan(settings, store, days))
    by_reason, sizes = Counter(), Counter()
    for _, size, reason in plan.items:
        by_reason[reason] += 1
        sizes[reason] += size
    for reason in sorted(by_reason):
        print(f"{by_reason[reason]:6} files {sizes[reason] / 1e6:10.1f} MB  {reason}")
    verb = "would reclaim" if args.dry_run else "reclaimed"
    if not args.dry_run:
        plan.apply(store)
    print(f"{verb} {plan.total_bytes / 1e6:.1f} MB in {len(plan.items)} files "
          f"(retention {days:g} days)")
    return 0


def register(commands, data_dir_parent) -> None:
    gc = commands.add_parser("gc", parents=[data_dir_parent], help="delete what retention allows; report space")
    gc.add_argument("--dry-run", action="store_true", help="only report what would be deleted")
    gc.add_argument("--days", type=float, default=None, help="retention period (default AVLORA_RETENTION_DAYS or 30)")
    gc.set_defaults(run=cmd_gc)
