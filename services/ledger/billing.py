"""What a finished job costs: the seeds' rule, in one place."""

from collections.abc import Iterable
from dataclasses import dataclass

from avlora.modes import MODES
from avlora.params import billable_units
from avlora.v1.jobs_pb2 import SUCCEEDED


@dataclass(frozen=True)
class Bill:
    units: int
    unit_price: float

    @property
    def cost(self) -> float:
        return round(self.units * self.unit_price, 6)


def bill_for(mode: str, final_state: int, number_of_steps: int) -> Bill:
    """A successful job: max(100, steps) units at the mode's price; anything else: 0 units."""
    units = billable_units(number_of_steps) if final_state == SUCCEEDED else 0
    return Bill(units=units, unit_price=MODES[mode].unit_price)


def total_cost(bills: Iterable[Bill]) -> float:
    return round(sum(bill.cost for bill in bills), 6)
