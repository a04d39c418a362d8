"""The verb registry of the ``forklift`` CLI, independent of the verbs themselves.

A verb module imports :func:`register_verb` from here (never from :mod:`agent.cli`) and is
listed in :data:`VERB_MODULES`; :mod:`agent.cli` imports those modules when it starts, so
the registry does not depend on its verbs and no verb imports the CLI. Verb modules must
be cheap to import: heavy dependencies (PyBullet, Ray, torch, rclpy) are imported inside
the handler.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.config import AppConfig

__all__ = ["VERBS", "VERB_MODULES", "Invocation", "Verb", "register_verb"]

# Modules whose import registers a verb, in ``forklift --help`` order.
VERB_MODULES: tuple[str, ...] = (
    "agent.run_cmd",
    "agent.eval_cmd",
    "agent.train_cmd",
    "agent.export_cmd",
    "agent.ros_cmd",
)


@dataclass(frozen=True)
class Invocation:
    """What a verb handler receives.

    Attributes:
        verb: the verb name.
        app: the validated, frozen config.
        config: the composed config as a plain dict (saved as ``config.yaml``).
        out_dir: output directory (not yet created).
    """

    verb: str
    app: AppConfig
    config: dict
    out_dir: Path
    section: Any = None
    choices: dict = dataclasses.field(default_factory=dict)


@dataclass(frozen=True)
class Verb:
    """A ``forklift`` sub-command.

    Attributes:
        name: the verb.
        summary: one line for ``forklift --help``.
        handler: runs the verb; returns the exit code.
        config_name: primary config in ``configs/``.
        section: optional frozen dataclass of the verb's own top-level keys (e.g. ``eval``'s
            ``task``); they are validated into ``Invocation.section``.
    """

    name: str
    summary: str
    handler: Callable[[Invocation], int]
    config_name: str = "config"
    section: type | None = None


VERBS: dict[str, Verb] = {}


def register_verb(name: str, summary: str, *, config_name: str = "config", section: type | None = None
                  ) -> Callable[[Callable[[Invocation], int]], Callable[[Invocation], int]]:
    """Decorator registering ``handler`` as ``forklift <name>``."""
    def deco(handler: Callable[[Invocation], int]) -> Callable[[Invocation], int]:
        VERBS[name] = Verb(name, summary, handler, config_name, section)
        return handler
    return deco
