"""moto's clock reads, routed to one function so that the journal can record and replay them.

moto reads the time through its helper `moto.core.utils.utcnow` (which `unix_time`, `unix_time_millis`
and the `iso_8601_*` helpers call, and which most models import by name) and, in a few models, directly
(`datetime.now()`, `time.time()`: the facade's `CLOCK_READS`, found with grep in moto 5.2.6 and checked
against moto's source by test_motoapi). `install(read)` makes all of them ask `read(kind)` for
microseconds since the epoch (persistence/clock.py: recorded, replayed or live) and build what the
original returned from it: a naive UTC datetime, a local or aware datetime, float seconds.

`utcnow` is replaced in `moto.core.utils` and in every moto module already bound to it (a module imported
later binds the replacement). A listed module that is not imported yet (moto imports a service when it
is first called: API Gateway's models take seconds) is patched as it is imported.
"""

from __future__ import annotations

import datetime as _dt
import importlib.abc
import importlib.machinery
import sys
import threading
import time as _time
import types
from typing import Any, Callable, Sequence

from localcloud import motoapi

Read = Callable[[str], int]  # kind ("u" utcnow, "n" now, "t" time) -> microseconds since the epoch
_EPOCH = _dt.datetime(1970, 1, 1)
_EPOCH_UTC = _dt.datetime(1970, 1, 1, tzinfo=_dt.timezone.utc)


def utcnow_from(read: Read) -> Callable[[], _dt.datetime]:
    def utcnow() -> _dt.datetime:
        """moto's utcnow (a naive UTC datetime), from the journal's clock."""
        return _EPOCH + _dt.timedelta(microseconds=read("u"))
    return utcnow


class _DatetimeClass(type):
    """The type of a stand-in for `datetime.datetime` whose now/utcnow/today read the journal's clock;
    everything else (construction, isinstance, strptime, min...) is the real class's, so moto's state
    only ever holds real datetimes."""

    def __call__(cls, *args: Any, **kwargs: Any) -> _dt.datetime:
        return _dt.datetime(*args, **kwargs)

    def __instancecheck__(cls, instance: Any) -> bool:
        return isinstance(instance, _dt.datetime)

    def __subclasscheck__(cls, subclass: type) -> bool:
        return issubclass(subclass, _dt.datetime)

    def __getattr__(cls, name: str) -> Any:
        return getattr(_dt.datetime, name)


def datetime_class(read: Read) -> Any:
    def now(tz: _dt.tzinfo | None = None) -> _dt.datetime:
        moment = _EPOCH_UTC + _dt.timedelta(microseconds=read("n"))
        return moment.astimezone(tz) if tz is not None else moment.astimezone().replace(tzinfo=None)

    def utcnow() -> _dt.datetime:
        return _EPOCH + _dt.timedelta(microseconds=read("u"))

    def today() -> _dt.datetime:
        return now()

    return _DatetimeClass("datetime", (), {"now": staticmethod(now), "utcnow": staticmethod(utcnow),
                                           "today": staticmethod(today), "__localcloud_patch__": True})


class _Module(types.ModuleType):
    """A stand-in for a module (`datetime`, `time`) with a few names replaced; the rest are the real one's."""

    def __init__(self, real: types.ModuleType, **replaced: Any):
        super().__init__(real.__name__)
        self.__dict__.update(replaced, __localcloud_patch__=True)
        self._real = real

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


def time_from(read: Read) -> Callable[[], float]:
    def time() -> float:
        """time.time() (float seconds), from the journal's clock."""
        return read("t") / 1_000_000
    return time


def stand_in(holds: str, read: Read) -> Any:
    """What replaces a CLOCK_READS global holding `holds`."""
    if holds == "datetime class":
        return datetime_class(read)
    if holds == "datetime module":
        return _Module(_dt, datetime=datetime_class(read))
    if holds == "time module":
        return _Module(_time, time=time_from(read))
    if holds == "time function":
        function = time_from(read)
        function.__localcloud_patch__ = True  # type: ignore[attr-defined]
        return function
    raise ValueError(f"no stand-in for a global holding {holds!r}")


class _PatchOnImport(importlib.abc.MetaPathFinder):
    """Runs `patch(module)` right after one of `names` is imported (before anything can call it)."""

    def __init__(self, names: set[str], patch: Callable[[types.ModuleType], None]):
        self.names, self.patch = names, patch

    def find_spec(self, fullname: str, path: Sequence[str] | None, target: Any = None) -> Any:
        if fullname not in self.names:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or spec.loader is None:
            return None
        spec.loader = _PatchingLoader(spec.loader, self.patch)
        return spec


class _PatchingLoader(importlib.abc.Loader):
    def __init__(self, inner: Any, patch: Callable[[types.ModuleType], None]):
        self.inner, self.patch = inner, patch

    def create_module(self, spec: Any) -> Any:
        return self.inner.create_module(spec)

    def exec_module(self, module: types.ModuleType) -> None:
        self.inner.exec_module(module)
        self.patch(module)

    def __getattr__(self, name: str) -> Any:  # get_source, get_filename...: the real loader's
        return getattr(self.inner, name)


def install(read: Read) -> Callable[[], None]:
    """Route moto's clock reads to `read`; returns the undo."""
    core_utils = motoapi.core_utils
    original = core_utils.utcnow
    replacement = utcnow_from(read)
    undo_core = motoapi.replace("clock.utcnow", lambda _original: replacement)
    replaced: list[tuple[types.ModuleType, str, Any, Any]] = []  # module, name, original, stand-in
    lock = threading.Lock()
    for module in _moto_modules_bound_to(original):
        if module is not core_utils:
            module.utcnow = replacement  # type: ignore[attr-defined]
            replaced.append((module, "utcnow", original, replacement))
    sites: dict[str, list[motoapi.ClockRead]] = {}
    for site in motoapi.CLOCK_READS:
        sites.setdefault(site.module, []).append(site)

    def patch(module: types.ModuleType) -> None:
        with lock:
            for site in sites.get(module.__name__, ()):
                current = site.check(module)  # MotoVersionError if the global is not what the site says
                new = stand_in(site.holds, read)
                setattr(module, site.name, new)
                replaced.append((module, site.name, current, new))

    pending = set()
    for module_name in sites:
        module = sys.modules.get(module_name)
        if module is not None:
            patch(module)
        else:
            pending.add(module_name)
    finder = _PatchOnImport(pending, patch)
    sys.meta_path.insert(0, finder)

    def undo() -> None:
        if finder in sys.meta_path:
            sys.meta_path.remove(finder)
        with lock:
            for module, name, before, new in reversed(replaced):
                if module.__dict__.get(name) is new:
                    setattr(module, name, before)
            replaced.clear()
        for module in _moto_modules_bound_to(replacement):  # imported while installed
            module.utcnow = original  # type: ignore[attr-defined]
        undo_core()
    return undo


def _moto_modules_bound_to(utcnow: Any) -> list[types.ModuleType]:
    """The imported moto modules whose global `utcnow` is `utcnow`."""
    return [module for name, module in list(sys.modules.items())
            if name.startswith("moto.") and module is not None and vars(module).get("utcnow") is utcnow]
