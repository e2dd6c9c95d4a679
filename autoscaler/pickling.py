"""Pickling of frozen dataclasses by their fields: what the compiled replay modules need to cross process borders.

The modules that mypyc compiles (autoscaler/native.py) register their frozen dataclasses here at import; this module
is part of the core, so registering costs them no import of the build machinery.
"""

from __future__ import annotations

import copyreg
import dataclasses
import functools


def picklable_by_fields(*classes: type) -> None:
    """Pickle (and deep-copy) these frozen dataclasses by their fields, through their constructor.

    A compiled frozen dataclass has no `__dict__`, so the default protocol restores it attribute by attribute,
    which its frozen `__setattr__` refuses. Plans send profiles to Ray tasks, so the compiled modules register
    their frozen dataclasses here (cloudpickle and `copy` read the same registry). The reduction names the class
    by its module and the fields by name, so a compiled process and a source one read each other's pickles."""
    for cls in classes:
        names = tuple(f.name for f in dataclasses.fields(cls) if f.init)
        copyreg.pickle(cls, functools.partial(_by_fields, names))


def _by_fields(names: tuple[str, ...], obj: object) -> tuple[type, tuple[object, ...]]:
    return type(obj), tuple(getattr(obj, name) for name in names)
