"""pytest-xdist glue for model-aware order: work units for xdist's own LoadScope scheduler.

Cases that share a model set go to one worker as one unit (``modelorder.scopes``), so each
worker's server loads each model once; everything else is a unit of its own and spreads like
``--dist load``. Only imported when pytest-xdist runs the session.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from xdist.scheduler import LoadScopeScheduling

from comfytest.workflows.modelorder import ModelSet, group_name, scopes


class ModelGroupScheduling(LoadScopeScheduling):  # type: ignore[misc]
    """``--dist load`` with one twist: nodeids of one model group form one work unit."""

    def __init__(self, config: Any, log: Any, models: Callable[[str], ModelSet | None]) -> None:
        super().__init__(config, log)
        self._models = models
        self._scopes: dict[str, str] = {}

    def schedule(self) -> None:
        if self.collection is None and self.registered_collections:
            ids = list(next(iter(self.registered_collections.values())))
            self._scopes = scopes([(n, group_name(n, self._models(n))) for n in ids], len(self.nodes))
        super().schedule()

    def _split_scope(self, nodeid: str) -> str:
        return self._scopes.get(nodeid, nodeid)


__all__ = ["ModelGroupScheduling"]
