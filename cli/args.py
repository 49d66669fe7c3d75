"""What a subcommand is made of (Arg, Subcommand) and how it fails; subcommand modules import this, not `cli`."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

USAGE_ERROR = 2


@dataclass(frozen=True, slots=True)
class Arg:
    """One `add_argument` call: its flags or name, and its keyword arguments."""

    flags: tuple[str, ...]
    options: dict[str, Any] = field(default_factory=dict)


def arg(*flags: str, **options: Any) -> Arg:
    """Describe an argument exactly as `ArgumentParser.add_argument` takes it."""
    return Arg(flags, options)


@dataclass(frozen=True, slots=True)
class Subcommand:
    """A subcommand: the function that runs it, its one-line help and its arguments."""

    run: Callable[[argparse.Namespace], int]
    help: str
    args: tuple[Arg, ...] = ()


def fail(message: str) -> int:
    """Tell the person what to fix, on stderr, and return the usage-error status."""
    print(f"clarity: {message}", file=sys.stderr)
    return USAGE_ERROR
