"""One small registry class; ``EXTRACTORS`` and ``MODELS`` are its instances.

Register a factory by name, create by name (as timm's ``create_model``)::

    @MODELS.register("viper_small")
    def viper_small(**kw): ...

    MODELS.create("viper_small", task=..., input_dims=...)
    MODELS.names("viper*")
"""

from __future__ import annotations

import fnmatch
from typing import Any, Callable


class Registry:
    """Maps names to factories."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._factories: dict[str, Callable[..., Any]] = {}

    def register(self, name: str | None = None) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        def deco(fn: Callable[..., Any]) -> Callable[..., Any]:
            key = name or fn.__name__
            if key in self._factories and self._factories[key] is not fn:
                raise ValueError(f"{self.kind} {key!r} is registered twice")
            self._factories[key] = fn
            return fn

        return deco

    def get(self, name: str) -> Callable[..., Any]:
        try:
            return self._factories[name]
        except KeyError:
            close = fnmatch.filter(self._factories, f"*{name.split('-')[0].split('_')[0]}*")
            hint = f"; similar: {', '.join(sorted(close))}" if close else ""
            raise KeyError(
                f"unknown {self.kind} {name!r}; known {self.kind}s: {', '.join(sorted(self._factories))}{hint}"
            ) from None

    def create(self, name: str, **kwargs: Any) -> Any:
        """Call the factory registered as ``name``; an unexpected keyword names the accepted ones."""
        factory = self.get(name)
        try:
            return factory(**kwargs)
        except TypeError as e:
            if "unexpected keyword argument" not in str(e):
                raise
            import inspect

            target = factory.__init__ if inspect.isclass(factory) else factory
            accepted = [p.name for p in inspect.signature(target).parameters.values()
                        if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD) and p.name != "self"]
            raise TypeError(f"{self.kind} {name!r}: {e}; accepted parameters: {', '.join(accepted)}") from None

    def names(self, pattern: str = "*") -> list[str]:
        return sorted(fnmatch.filter(self._factories, pattern))

    def __contains__(self, name: str) -> bool:
        return name in self._factories


EXTRACTORS = Registry("extractor")
MODELS = Registry("model")
