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
        # Members whose backend did not answer the last check: not advertised, not routed.
        self._down: set[int] = set()
        self._active: Engine | None = None

    @property
    def name(self) -> str:
        return "multi"

    @property
    def members(self) -> tuple[Engine, ...]:
        return self._members

    def models_per_kind(self) -> dict[str, list[str]]:
        union: dict[str, set[str]] = {}
        for index, member in enumerate(self._members):
            if index in self._down:
                continue
            for kind, models in member.models_per_kind().items():
                union.setdefault(kind, set()).update(models)
        # Kinds outside the wire's KIND_ORDER are not advertised: the studio would
        # never send them.
        return {kind: sorted(union[kind]) for kind in KIND_ORDER if kind in union}

    def route(self, kind: str, model: str) -> Engine | None:
        """The member that would run a job of this kind and model, if any."""
        for index, member in enumerate(self._members):
            if index in self._down:
                continue
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
        self._active = member
        try:
            return await member.generate(model, task, progress)
        finally:
            self._active = None

    async def check(self) -> str | None:
        """A problem only when no member answers; a down member just stops being offered."""
        problems: list[str] = []
        self._down = set()
        for index, member in enumerate(self._members):
            problem = await member.check()
            if problem is not None:
                self._down.add(index)
                problems.append(problem)
        if problems and len(problems) == len(self._members):
            return "; ".join(problems)
        return None

    async def interrupt(self) -> None:
        if self._active is not None:
            await self._active.interrupt()
