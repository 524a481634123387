"""Read command-line flags from environment variables.

Every option ``--some-flag`` of a parser can also be set as
``ALQUERY_SOME_FLAG``; a flag given on the command line wins. Values go
through the flag's own type and choices, so a bad value is refused naming
the variable, the way a bad flag is refused naming the flag.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator, Mapping

PREFIX = "ALQUERY_"
FROM_ENVIRONMENT = "from_environment"
"""The parsed namespace's record of the values variables set: a dict of
dest to (variable, value)."""
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off", "")


def variable_name(flag: str) -> str:
    """Name the variable of ``flag``: --metrics-port is ALQUERY_METRICS_PORT."""
    return PREFIX + flag.lstrip("-").replace("-", "_").upper()


def settable_flags(
    parser: argparse.ArgumentParser,
) -> Iterator[tuple[str, str, argparse.Action]]:
    """Yield (flag, variable, action) for each long option but --help."""
    for action in parser._actions:
        flags = [s for s in action.option_strings if s.startswith("--")]
        if flags and not isinstance(action, argparse._HelpAction):
            yield flags[0], variable_name(flags[0]), action


def apply_environment(
    parser: argparse.ArgumentParser, environ: Mapping[str, str]
) -> None:
    """Make each ``ALQUERY_*`` variable in ``environ`` the default of its flag.

    Exits through ``parser.error`` (status 2) on a value the flag refuses.
    The namespace ``parser`` returns records them (``given_by``).
    """
    taken: dict[str, tuple[str, object]] = {}
    for _, variable, action in settable_flags(parser):
        if variable not in environ:
            continue
        text = environ[variable]
        try:
            value = _convert(action, text)
        except (argparse.ArgumentTypeError, ValueError, TypeError) as error:
            parser.error(f"{variable}={text!r}: {error}")
        parser.set_defaults(**{action.dest: value})
        taken[action.dest] = (variable, value)
    parser.set_defaults(**{FROM_ENVIRONMENT: taken})


def given_by(args: argparse.Namespace, flag: str) -> str:
    """Name what set a string flag's value in ``args``: ``flag``, or the
    variable whose value it kept, so that a message can name the one the
    operator wrote.

    A value typed on the command line is a new string object, so a value
    that is the very object a variable gave came from the variable.
    """
    dest = flag.lstrip("-").replace("-", "_")
    taken = getattr(args, FROM_ENVIRONMENT, {})
    if dest in taken and getattr(args, dest) is taken[dest][1]:
        return taken[dest][0]
    return flag


def _convert(action: argparse.Action, text: str) -> object:
    if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)):
        if text.lower() not in _TRUE + _FALSE:
            raise ValueError("expected true or false")
        value = text.lower() in _TRUE
        return value if isinstance(action, argparse._StoreTrueAction) else not value
    value = action.type(text) if action.type is not None else text
    if action.choices is not None and value not in action.choices:
        choices = ", ".join(map(str, action.choices))
        raise ValueError(f"expected one of {choices}")
    return value
