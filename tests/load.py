"""Time limits for a machine that is busy: the suite must pass with other work beside it."""

from __future__ import annotations

import os


def loaded(seconds: float) -> float:
    """A time limit scaled by how busy the machine is: with two CPU-bound processes beside the
    suite on two cores, everything takes about twice as long, and a bound that holds on an idle
    machine must not cry wolf there. Never less than ``seconds``; a hang still fails."""
    return seconds * max(1.0, os.getloadavg()[0] / (os.cpu_count() or 1))
