"""The processes the service offers, found as plugins through an entry-point group.

Each service exports one :class:`~gdmio.process.ProcessSpec` as ``PROCESS`` from its own
``process.py`` and names it in the ``gdm_service.processes`` entry-point group of its
distribution (``pyproject.toml``), as pygeoapi and HyP3 plugins are declared::

    [project.entry-points."gdm_service.processes"]
    gdm-opt = "gdm_opt.process:PROCESS"

:data:`PROCESSES` loads the group the first time it is read (importing a module never
registers anything); the entry-point name must be the process identifier. Another
distribution installed beside this one adds its processes the same way. Nothing here
knows about HTTP or Celery.
"""

from __future__ import annotations

from collections.abc import Iterator, MutableMapping
from importlib.metadata import entry_points

from gdmio.process import ProcessSpec

__all__ = ["ENTRY_POINT_GROUP", "PROCESSES", "ProcessRegistry", "get_process"]

ENTRY_POINT_GROUP = "gdm_service.processes"
"""The entry-point group that names the processes (``id = "module:PROCESS"``)."""


class ProcessRegistry(MutableMapping[str, ProcessSpec]):
    """Processes by identifier, loaded from :data:`ENTRY_POINT_GROUP` on first use.

    Mutable so that tests may add a process (``monkeypatch.setitem``).
    """

    def __init__(self, group: str = ENTRY_POINT_GROUP) -> None:
        self.group = group
        self._specs: dict[str, ProcessSpec] | None = None

    def _load(self) -> dict[str, ProcessSpec]:
        if self._specs is None:
            specs: dict[str, ProcessSpec] = {}
            for ep in entry_points(group=self.group):
                spec = ep.load()
                if not isinstance(spec, ProcessSpec):
                    raise TypeError(f"entry point {ep.name} = {ep.value!r} of group "
                                    f"{self.group!r} is not a ProcessSpec")
                if spec.id != ep.name:
                    raise ValueError(f"entry point {ep.name} = {ep.value!r}: the process "
                                     f"it names has id {spec.id!r}")
                specs.setdefault(spec.id, spec)
            if not specs:
                raise RuntimeError(f"no process found in the entry-point group "
                                   f"{self.group!r}: is gdm-service installed (make install)?")
            self._specs = specs
        return self._specs

    def __getitem__(self, process_id: str) -> ProcessSpec:
        return self._load()[process_id]

    def __setitem__(self, process_id: str, spec: ProcessSpec) -> None:
        self._load()[process_id] = spec

    def __delitem__(self, process_id: str) -> None:
        del self._load()[process_id]

    def __iter__(self) -> Iterator[str]:
        return iter(self._load())

    def __len__(self) -> int:
        return len(self._load())

    def __repr__(self) -> str:
        return f"ProcessRegistry({list(self._load())})"


PROCESSES = ProcessRegistry()
"""Every process of this installation, by identifier (loaded on first use)."""


def get_process(process_id: str) -> ProcessSpec:
    """A process by identifier (KeyError naming the known ones otherwise)."""
    try:
        return PROCESSES[process_id]
    except KeyError:
        raise KeyError(f"unknown process {process_id!r}; known: {', '.join(PROCESSES)}") from None
