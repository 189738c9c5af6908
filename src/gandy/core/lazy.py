"""Required dependencies that are slow to import, loaded on first use instead of at start-up.

``gandy --help`` should not pay for POT (which imports scikit-learn: 1.4-2 s) or matplotlib's
pyplot (0.4-0.7 s) when the command computes no exact W1 and draws no figure. Each use names its
cost; an optional extra (ray, torch-fidelity) is imported inside the function that needs it.
"""

from __future__ import annotations

import importlib
from typing import Callable, Optional


class LazyModule:
    """Stands for the module ``name``: the first attribute read imports it (after ``before()``,
    and together with ``submodules``), later reads go straight to it."""

    def __init__(self, name: str, before: Optional[Callable[[], None]] = None, submodules: tuple = ()):
        self._name, self._before, self._submodules, self._module = name, before, submodules, None

    def __getattr__(self, attr: str):
        if self._module is None:
            if self._before is not None:
                self._before()
            module = importlib.import_module(self._name)
            for sub in self._submodules:
                importlib.import_module(f"{self._name}.{sub}")
            self._module = module
        return getattr(self._module, attr)
