"""The flags people and the engine raise on an execution between and during its steps (`Store.set_flag`).

A flag's value is its Redis key's last part (`exec:<id>:flag:<value>`), so the names never change; the
value stored under the key is who raised it.
"""

from __future__ import annotations

from enum import StrEnum


class Flag(StrEnum):
    """One request an execution's steps look at."""

    STOP = "stop"  # stop now: the step stops as it starts, the heartbeat cancels a running attempt
    PAUSE = "pause"  # pause once the task in hand is over
    STOP_POINT_REACHED = "stop_point_reached"  # the engine paused at the stop point: a resume runs on past it
