"""`/clarity help`: the Markdown help, generated from the same table the parser reads (as Prow's plugin help).

Pure; `help_text(grammar)` is cached per table, since every problem reply ends with it.
"""

from __future__ import annotations

from functools import cache

from github_app.command_spec import PREFIX, OptionSpec, VerbSpec

_INTRO = (
    "**Clarity commands.** Write each command at the start of its own line; a comment may hold"
    " several. Case does not matter. Lines in code blocks, `>` quotes, HTML comments, `<details>` and"
    " `<pre>` are ignored."
)


def usage(spec: VerbSpec, name: tuple[str, ...]) -> str:
    """The usage line of a verb under one of its spellings."""
    parts = [PREFIX, *name]
    if spec.argument is not None:
        placeholder = spec.argument.placeholder
        parts.append(placeholder if spec.argument_required else f"[{placeholder}]")
    if spec.second is not None:
        parts.append(spec.second.placeholder)
    parts += [f"[{' '.join(option.names[0])} {option.value.placeholder}]" for option in spec.options]
    return " ".join(parts)


def _option_help(spec: VerbSpec, option: OptionSpec) -> str:
    """One bullet of a verb's option list, with aliases and conflicts."""
    placeholder = option.value.placeholder
    forms = [f"`{' '.join(name)} {placeholder}`" for name in option.names]
    text = f"- {forms[0]}: {option.summary}"
    if len(forms) > 1:
        text += "; also written " + " or ".join(forms[1:])
    for first, second, _ in spec.conflicts:
        if option.field in (first, second):
            other = second if option.field == first else first
            text += f"; cannot be combined with `{other}`"
    return text + "."


@cache
def help_text(grammar: tuple[VerbSpec, ...]) -> str:
    """Markdown help for a grammar table: one row per verb, then each verb's options."""
    lines = [
        _INTRO,
        "",
        "| command | what it does |",
        "| --- | --- |",
    ]
    for spec in grammar:
        summary = spec.summary
        if len(spec.names) > 1:
            summary += " Also " + ", ".join(f"`{usage(spec, name)}`" for name in spec.names[1:]) + "."
        lines.append(f"| `{usage(spec, spec.names[0])}` | {summary} |")
    for spec in grammar:
        if spec.options:
            lines += [
                "",
                f"Options of `{PREFIX} {' '.join(spec.names[0])}`, in any order, each at most once:",
            ]
            lines += [_option_help(spec, option) for option in spec.options]
    lines += ["", "Task ids are dotted numbers like `2.3.1.4`; `1.` and `1.0` both mean task `1`."]
    return "\n".join(lines)
