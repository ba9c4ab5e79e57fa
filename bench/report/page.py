"""A rendered page: a header and sections of sentences, tables, figures and bullet lists, written
as README.md and index.html by the jinja2 templates in bench/report/templates.

The Markdown and the HTML show the same content in the same order. A section with nothing to
show states in one sentence what is missing (``missing``). The HTML is one self-contained page:
inline CSS, relative PNGs, nothing loaded from elsewhere.
"""

import dataclasses
from pathlib import Path

import jinja2

from bench.report.table import Table

TEMPLATES = Path(__file__).resolve().parent / "templates"


@dataclasses.dataclass
class Section:
    key: str  # the HTML id
    title: str
    tables: list[Table] = dataclasses.field(default_factory=list)
    paragraphs: list[str] = dataclasses.field(default_factory=list)  # shown after the tables
    figures: list = dataclasses.field(default_factory=list)  # bench.report.figures.FigureResult
    lists: list[tuple[str, list[str]]] = dataclasses.field(default_factory=list)  # heading, lines
    missing: list[str] = dataclasses.field(
        default_factory=list
    )  # what is absent, one sentence each


@dataclasses.dataclass
class Page:
    title: str
    meta: list[str]  # lines under the title
    header_lists: list[tuple[str, list[str]]]  # e.g. ("Measured on", [...])
    sections: list[Section]
    note: str | None = None


def template_environment() -> jinja2.Environment:
    """Templates from the package folder; HTML autoescaped, Markdown not."""
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=jinja2.select_autoescape(enabled_extensions=("html.j2",), default=False),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def write_page(page: Page, out_dir: Path) -> dict[str, Path]:
    """README.md and index.html of ``page`` in ``out_dir``."""
    templates = template_environment()
    written = {}
    for template, name in (("README.md.j2", "README.md"), ("index.html.j2", "index.html")):
        path = out_dir / name
        path.write_text(templates.get_template(template).render(page=page), encoding="utf-8")
        written[name] = path
    return written
