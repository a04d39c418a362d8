"""The ``forklift`` command line: ``forklift <verb> [group=option ...] [key=value ...]``.

Verbs live in a registry (:data:`VERBS`, :func:`register_verb`); ``run`` is the first,
``eval``, ``train``, ``export``, ``bridge`` and ``sim-robot`` plug in the same way. Every
verb gets a composed, validated, read-only :class:`agent.config.AppConfig` and an output
directory (hydra's run dir, ``hydra.run.dir=...`` overrides it).

Hydra stays at this edge: configs are composed with hydra's compose API from the
repository's ``configs/`` so that this module controls every error. Bad input prints ONE
line ``forklift: error: <field>=<value>: <what is allowed>`` on stderr and exits with code
2, before anything is written.

Examples:
    forklift run                                  # 2 episodes x 300 s, 4 robots, small warehouse
    forklift run scenario=exceptions episodes=3 video=true
    forklift run layout=medium n_robots=8 hydra.run.dir=outputs/medium
    forklift run --cfg                            # print the composed config and exit
"""

from __future__ import annotations

import dataclasses
import functools
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields, is_dataclass
from pathlib import Path
from typing import Any, NoReturn

from agent.config import AppConfig, ConfigError, build_app_config
from agent.verbs import VERB_MODULES, VERBS, Invocation, Verb, register_verb

__all__ = ["CONFIGS_DIR", "VERBS", "Invocation", "Verb", "compose_config", "main", "register_verb"]

CONFIGS_DIR: Path = Path(__file__).resolve().parents[1] / "configs"
PROG = "forklift"


# ---- errors ------------------------------------------------------------------------------

def _fail(message: str) -> NoReturn:
    line = " ".join(str(message).split())  # exactly one line
    print(f"{PROG}: error: {line}", file=sys.stderr)
    raise SystemExit(2)


def _group_options(group: str) -> list[str]:
    d = CONFIGS_DIR / group
    return sorted(p.stem for p in d.glob("*.yaml")) if d.is_dir() else []


def _groups() -> list[str]:
    return sorted(p.name for p in CONFIGS_DIR.iterdir() if p.is_dir() and any(p.glob("*.yaml")))


def _schema_keys(path: str) -> list[str] | None:
    """Allowed keys under a dotted config path, from the schemas (None if unknown)."""
    from agent.baseline import BaselineConfig

    parts = [p for p in path.split(".") if p]
    node: Any = AppConfig
    extra: list[str] = []
    drop: set[str] = set()
    if parts[:1] == ["agent"]:  # flat agent YAML: kind + the controller's own fields
        node, parts = BaselineConfig, parts[1:]
        if not parts:
            extra, drop = ["kind"], {"localization"}
    for part in parts:
        hints = dict(fields_of(node)) if is_dataclass(node) else {}
        if part not in hints:
            return None
        node = hints[part]
    if not is_dataclass(node):
        return None
    return extra + [n for n, _ in fields_of(node) if n not in drop]


def fields_of(cls: Any) -> list[tuple[str, Any]]:
    import typing

    hints = typing.get_type_hints(cls)
    return [(f.name, hints[f.name]) for f in fields(cls) if f.init]


def _hydra_error(exc: Exception) -> str:
    """One line for a hydra / omegaconf composition error."""
    msg = str(exc)
    m = re.search(r"Could not find '([^']+)/([^'/]+)'", msg)
    if m:
        group, option = m.group(1), m.group(2)
        allowed = _group_options(group)
        return f"{group}={option}: unknown option; allowed: {', '.join(allowed) or '(none)'}"
    m = re.search(r"Could not override '([^']+)'", msg) or re.search(r"Key '([^']+)' is not in struct", msg)
    if m:
        key = m.group(1)
        parent = key.rsplit(".", 1)[0] if "." in key else ""
        allowed = _schema_keys(parent)
        hint = f"; allowed: {', '.join(allowed)}" if allowed else ""
        return f"{key}: unknown key{hint}"
    first = next((ln.strip() for ln in msg.splitlines() if ln.strip()), type(exc).__name__)
    return first


_OVERRIDE = re.compile(r"^(\+\+|\+|~)?[A-Za-z_][\w.\-/@]*(=.*)?$")


def _check_override_syntax(arg: str) -> None:
    if not _OVERRIDE.match(arg) or ("=" not in arg and not arg.startswith("~")):
        _fail(f"{arg}: bad override; expected key=value or group=option (see `{PROG} run --help`)")


# ---- composition -------------------------------------------------------------------------

def compose_config(overrides: Sequence[str], *, config_name: str = "config") -> tuple[dict, Path]:
    """Compose ``configs/<config_name>.yaml`` with ``overrides`` (hydra compose API).

    Returns:
        (the config as a plain resolved dict without the ``hydra`` node, the run dir).

    Raises:
        ConfigError: a composition error (unknown group option or key, bad override).
    """
    plain, run_dir, _ = compose_with_choices(overrides, config_name=config_name)
    return plain, run_dir


def compose_with_choices(overrides: Sequence[str], *, config_name: str = "config"
                         ) -> tuple[dict, Path, dict[str, str]]:
    """Like :func:`compose_config`, also returning the chosen option of each config group.

    Raises:
        ConfigError: a composition error (unknown group option or key, bad override).
    """
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(CONFIGS_DIR), version_base="1.3", job_name=PROG):
            cfg = compose(config_name, overrides=list(overrides), return_hydra_config=True)
            OmegaConf.set_readonly(cfg, True)
            run_dir = str(OmegaConf.select(cfg, "hydra.run.dir"))
            choices = {str(k): str(v) for k, v in
                       (OmegaConf.to_container(cfg.hydra.runtime.choices) or {}).items()}
            raw = OmegaConf.to_container(cfg, resolve=False)
            assert isinstance(raw, dict)
            raw.pop("hydra", None)
            job = OmegaConf.create(raw)
            OmegaConf.set_readonly(job, True)
            plain = OmegaConf.to_container(job, resolve=True)
    except (OmegaConfBaseException, Exception) as e:  # hydra raises several unrelated types
        if isinstance(e, (KeyboardInterrupt, SystemExit)):
            raise
        raise ConfigError("", _hydra_error(e)) from None
    finally:
        GlobalHydra.instance().clear()
    assert isinstance(plain, dict)
    return plain, Path(run_dir), choices


def _check_run_dir(run_dir: Path) -> None:
    """The run dir must be creatable: not an existing file, under a writable folder."""
    p = Path(run_dir)
    if p.exists() and not p.is_dir():
        raise ConfigError("hydra.run.dir", "is an existing file; allowed a directory path", str(p))
    parent = next((q for q in (p, *p.parents) if q.exists()), None)
    import os

    if parent is None or not parent.is_dir() or not os.access(parent, os.W_OK):
        raise ConfigError("hydra.run.dir", "cannot be created here (no writable parent folder)", str(p))


def prepare(verb: Verb, overrides: Sequence[str]) -> Invocation:
    """Compose and validate; raises :class:`ConfigError` (one line) on bad input."""
    from agent.config import build

    plain, run_dir, choices = compose_with_choices(overrides, config_name=verb.config_name)
    section = None
    common = dict(plain)
    if verb.section is not None:
        own = {f.name for f in fields(verb.section)}
        section = build(verb.section, {k: common.pop(k) for k in list(common) if k in own})
        if hasattr(section, "check"):  # cross-field checks of the verb's own keys
            section.check()
    app = build_app_config(common, configs_dir=CONFIGS_DIR)
    _check_run_dir(run_dir)
    return Invocation(verb=verb.name, app=app, config=plain, out_dir=run_dir, section=section,
                      choices=choices)


# ---- help --------------------------------------------------------------------------------

def _usage() -> str:
    lines = [f"usage: {PROG} <verb> [group=option ...] [key=value ...] [--cfg] [-h]", "", "verbs:"]
    lines += [f"  {v.name:<10} {v.summary}" for v in VERBS.values()]
    lines += ["", f"`{PROG} <verb> --help` lists the config groups, options and top-level keys."]
    return "\n".join(lines)


VERB_NOTES: dict[str, list[str]] = {
    "run": ["outputs go to hydra.run.dir (default outputs/<date>/<time>): config.yaml, report.json,",
            "trajectories.png, episode_0.gif (video=true)", "", "examples:", f"  {PROG} run",
            f"  {PROG} run scenario=exceptions episodes=3 video=true",
            f"  {PROG} run layout=medium n_robots=8 hydra.run.dir=outputs/medium"],
    "eval": ["outputs go to hydra.run.dir (default outputs/<date>/<time>): config.yaml, report.json,",
             "localization.png or planning.png", "", "examples:",
             f"  {PROG} eval task=localization sensors=degraded episodes=2",
             f"  {PROG} eval task=planning evaluator=network sims=[1,2,4,8,16]",
             f"  {PROG} eval task=planning 'evaluator=\"uniform,rollout\"' situations=12"],
}


def _verb_help(verb: Verb) -> str:
    import yaml

    top = yaml.safe_load((CONFIGS_DIR / f"{verb.config_name}.yaml").read_text())
    defaults = {}
    for d in top.get("defaults", []):
        if isinstance(d, dict):
            defaults.update(d)
    lines = [f"usage: {PROG} {verb.name} [group=option ...] [key=value ...] [--cfg] [-h]", "",
             verb.summary, "", "config groups (default in brackets):"]
    for g in _groups():
        opts = [f"[{o}]" if defaults.get(g) == o else o for o in _group_options(g)]
        prefix = "+" if g not in defaults else ""
        lines.append(f"  {prefix + g:<14} {', '.join(opts)}")
    lines += ["", "top-level keys:"]
    lines += [f"  {k}={str(v).lower() if isinstance(v, bool) else v}" for k, v in top.items()
              if k not in ("defaults", "hydra")]
    lines += ["", "any field can be overridden with its dotted path, e.g. agent.nav.recovery.patience_s=8"]
    lines += VERB_NOTES.get(verb.name, [])
    return "\n".join(lines)


# ---- main --------------------------------------------------------------------------------

def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``forklift`` console script.

    Returns:
        0 on success. Bad input raises ``SystemExit(2)`` after one line on stderr.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    if not args:
        print(_usage(), file=sys.stderr)
        raise SystemExit(2)
    if args[0] in ("-h", "--help"):
        print(_usage())
        return 0
    if args[0] == "--version":
        from agent.report import versions

        print(f"{PROG} {versions()['forklift']}")
        return 0
    name, rest = args[0], args[1:]
    if name not in VERBS:
        _fail(f"unknown verb {name!r}; allowed: {', '.join(VERBS)}")
    verb = VERBS[name]
    if "-h" in rest or "--help" in rest:
        print(_verb_help(verb))
        return 0
    show_cfg = "--cfg" in rest
    overrides = [a for a in rest if a != "--cfg"]
    for a in overrides:
        if a.startswith("-"):
            _fail(f"unknown option {a!r}; allowed: --cfg, -h/--help")
        _check_override_syntax(a)
    try:
        inv = prepare(verb, overrides)
    except ConfigError as e:
        _fail(str(e))
    if show_cfg:
        import yaml

        print(yaml.safe_dump(inv.config, sort_keys=False), end="")
        return 0
    if argv is None and name == "train":  # the console entry: a reproducible driver
        from agent.train_cmd import reexec_with_fixed_hash_seed

        reexec_with_fixed_hash_seed(args)
    try:
        return verb.handler(inv)
    except ConfigError as e:  # a check that needs the verb's resources (e.g. a checkpoint)
        _fail(str(e))


def _load_verbs() -> None:
    import importlib

    for mod in VERB_MODULES:
        importlib.import_module(mod)


_load_verbs()

if __name__ == "__main__":  # pragma: no cover
    # run through the package module so that verbs registered by other modules are seen
    from agent.cli import main as _main

    sys.exit(_main())
