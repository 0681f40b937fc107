"""A Sphinx extension: `{dsdr-config-table}` renders the fields DSDRConfig adds to GRPOConfig as a table.

Written into the page at build time from `dataclasses.fields(DSDRConfig)` and each field's help text, so the
reference can never drift from the code. Columns: field, paper symbol, paper section / equation, default, help.
"""

from __future__ import annotations

import dataclasses
import re

from docutils import nodes
from docutils.parsers.rst import Directive

# Help texts name symbols in ASCII ("lambda_d"); the table shows them as the paper writes them.
SYMBOLS = {
    "lambda_d": r"\lambda_d",
    "lambda_l": r"\lambda_l",
    "sigma_d": r"\sigma_d",
    "tau": r"\tau",
    "eps": r"\epsilon",
    "f": "f",
    "r_i": "r_i",
}
LEADING_SYMBOL = re.compile(r"^(\w+) (?:\(|of )")
SOURCE = re.compile(r"Sec\. \d+(?:\.\d+)*(?:, Eq\. \d+)?|Eq\. \d+")


def dsdr_fields() -> list[dataclasses.Field]:
    """The fields of DSDRConfig that GRPOConfig does not have, in declaration order."""
    from trl import GRPOConfig

    from dsdr_trl import DSDRConfig

    inherited = {field.name for field in dataclasses.fields(GRPOConfig)}
    return [field for field in dataclasses.fields(DSDRConfig) if field.name not in inherited]


def paper_symbol(help_text: str) -> str:
    match = LEADING_SYMBOL.match(help_text)
    return SYMBOLS.get(match.group(1), "") if match else ""


def paper_source(help_text: str) -> str:
    match = SOURCE.search(help_text)
    return match.group() if match else "not in the paper"


def default_text(field: dataclasses.Field) -> str:
    if field.default is not dataclasses.MISSING:
        return repr(field.default)
    return "(required)"


class DSDRConfigTable(Directive):
    has_content = False

    def run(self) -> list[nodes.Node]:
        headers = ["Field", "Symbol", "Paper", "Default", "Meaning"]
        table = nodes.table(classes=["dsdr-config-table"])
        group = nodes.tgroup(cols=len(headers))
        table += group
        for width in (18, 8, 14, 16, 44):
            group += nodes.colspec(colwidth=width)
        head = nodes.thead()
        head += self.row([nodes.Text(header) for header in headers])
        group += head
        body = nodes.tbody()
        for field in dsdr_fields():
            help_text = field.metadata.get("help", "")
            symbol = paper_symbol(help_text)
            cells = [
                nodes.literal(text=field.name),
                nodes.math(text=symbol) if symbol else nodes.Text(""),
                nodes.Text(paper_source(help_text)),
                nodes.literal(text=default_text(field)),
                nodes.Text(help_text),
            ]
            body += self.row(cells, row_id=f"config-{field.name.replace('_', '-')}")
        group += body
        return [table]

    @staticmethod
    def row(cells: list[nodes.Node], row_id: str | None = None) -> nodes.row:
        row = nodes.row(ids=[row_id] if row_id else [])
        for cell in cells:
            entry = nodes.entry()
            entry += nodes.paragraph("", "", cell)
            row += entry
        return row


def setup(app):
    app.add_directive("dsdr-config-table", DSDRConfigTable)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
