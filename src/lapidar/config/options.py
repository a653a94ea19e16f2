"""Command-line flags generated from `TrainConfig`: one `--field-name` per field, help from the field's description,
default, bounds and allowed values, grouped into the field's help panel.

Every generated flag defaults to None, which `load_config` reads as "not given", so a flag overrides a YAML value
only when it is on the command line.
"""

from __future__ import annotations

import functools
import inspect
import types
import typing
from collections.abc import Callable, Sequence
from typing import Annotated, Any, Literal, TypeVar

import typer
from pydantic.fields import FieldInfo

from lapidar.config.schema import GROUPS, TrainConfig, field_group

__all__ = ["config_options", "describe_bounds", "describe_default", "flag_name", "value_type"]

F = TypeVar("F", bound=Callable[..., Any])


def flag_name(name: str) -> str:
    """`batch_size` -> `--batch-size`."""
    return "--" + name.replace("_", "-")


def value_type(info: FieldInfo) -> Any:
    """The field's type without `None`: int, float, str, bool, list[str] or a Literal."""
    annotation = info.annotation
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        assert len(args) == 1, f"unsupported config type {annotation}"
        return args[0]
    return annotation


def describe_default(info: FieldInfo) -> str:
    """The default as a YAML user would write it: null, true, 0.0002, a, b."""
    value = info.get_default(call_default_factory=True)
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ", ".join(map(str, value)) if value else "[]"
    return str(value)


def describe_bounds(info: FieldInfo) -> str:
    """`>= 1`, `>= 0, < 1`... from the field's constraints ("" when unbounded)."""
    parts = []
    for meta in info.metadata:  # annotated_types.Ge(ge=1), Lt(lt=1)...
        for attr, symbol in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<")):
            if getattr(meta, attr, None) is not None:
                parts.append(f"{symbol} {getattr(meta, attr)}")
    return ", ".join(parts)


def _help(info: FieldInfo) -> str:
    """The description, then what it does not already say: the default, the bounds, the list form."""
    description = info.description or ""
    notes = []
    if info.get_default(call_default_factory=True) is not None or "default" not in description:
        notes.append(f"default: {describe_default(info)}")
    if bounds := describe_bounds(info):
        notes.append(bounds)
    if typing.get_origin(value_type(info)) is list and "comma-separated" not in description:
        notes.append("comma-separated")
    return f"{description} ({'; '.join(notes)})" if notes else description


def _annotation(name: str) -> Any:
    """`Annotated[T | None, typer.Option(...)]` for one field: bool -> --x/--no-x, Literal -> a choice, lists -> one
    comma-separated string (TrainConfig splits it), numbers -> click's INTEGER / FLOAT."""
    info = TrainConfig.model_fields[name]
    base = value_type(info)
    flag = flag_name(name)
    kwargs: dict[str, Any] = {"help": _help(info), "rich_help_panel": GROUPS[field_group(name)]}
    if base is bool:
        return Annotated[bool | None, typer.Option(f"{flag}/--no-{flag[2:]}", **kwargs)]
    if typing.get_origin(base) is list:
        return Annotated[str | None, typer.Option(flag, metavar="A,B,...", **kwargs)]
    if typing.get_origin(base) is Literal or base in (int, float, str):
        return Annotated[base | None, typer.Option(flag, **kwargs)]
    raise TypeError(f"TrainConfig.{name}: no command-line form for {base}; add one in lapidar/config/options.py")


def config_options(fields: Sequence[str] | None = None) -> Callable[[F], F]:
    """Decorate a typer command that takes `**overrides`: it gains one option per TrainConfig field (or per name in
    `fields`), after its own parameters, and receives them all in `overrides` (None = not given)."""
    names = list(TrainConfig.model_fields) if fields is None else list(fields)
    unknown = [n for n in names if n not in TrainConfig.model_fields]
    if unknown:
        raise ValueError(f"not TrainConfig fields: {', '.join(unknown)}")
    generated = [
        inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=_annotation(n)) for n in names
    ]

    def decorate(func: F) -> F:
        signature = inspect.signature(func, eval_str=True)
        own = [p for p in signature.parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]
        clash = {p.name for p in own} & set(names)
        assert not clash, f"{func.__name__} declares config fields itself: {clash}"

        @functools.wraps(func)
        def command(*args: Any, **kwargs: Any) -> Any:
            return func(*args, **kwargs)

        params = own + generated
        command.__signature__ = signature.replace(parameters=params)  # type: ignore[attr-defined]
        command.__annotations__ = {p.name: p.annotation for p in params} | {"return": signature.return_annotation}
        return command  # type: ignore[return-value]

    return decorate
