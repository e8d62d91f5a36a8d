"""An engine that fronts several others and routes each job by (kind, model)."""

from __future__ import annotations

from collections.abc import Sequence

from workerlib.engines.base import CannotServe, Engine, EngineResult, ProgressCallback
from workerlib.wire import KIND_ORDER, Task


class MultiEngine:
    """Advertises the union of its members' models; a job goes to the first member
    (in the order given) that advertises its kind and model."""

    def __init__(self, engines: Sequence[Engine]) -> None:
        if not engines:
            raise ValueError("MultiEngine needs at least one member engine")
        self._members: tuple[Engine, ...] = tuple(engines)

    @property
    def name(self) -> str:
        return "multi"

    @property
    def members(self) -> tuple[Engine, ...]:
        return self._members

    def models_per_kind(self) -> dict[str, list[str]]:
        union: dict[str, set[str]] = {}
        for member in self._members:
            for kind, models in member.models_per_kind().items():
                union.setdefault(kind, set()).update(models)
        # Kinds outside the wire's KIND_ORDER are not advertised: the studio would
        # never send them.
        return {kind: sorted(union[kind]) for kind in KIND_ORDER if kind in union}

    def route(self, kind: str, model: str) -> Engine | None:
        """The member that would run a job of this kind and model, if any."""
        for member in self._members:
            if model in member.models_per_kind().get(kind, ()):
                return member
        return None

    async def start(self) -> None:
        started: list[Engine] = []
        try:
            for member in self._members:
                await member.start()
                started.append(member)
        except BaseException:
            # Leave nothing half-started behind: release what did start.
            for member in reversed(started):
                try:
                    await member.close()
                except Exception:
                    pass
            raise

    async def close(self) -> None:
        errors: list[Exception] = []
        for member in self._members:
            try:
                await member.close()
            except Exception as exc:
                errors.append(exc)
        if errors:
            first = errors[0]
            for other in errors[1:]:
                first.add_note(f"also failed to close: {other!r}")
            raise first

    async def generate(self, model: str, task: Task, progress: ProgressCallback) -> EngineResult:
        member = self.route(task.kind, model)
        if member is None:
            raise CannotServe(self.name, task.kind, model)
        return await member.generate(model, task, progress)
