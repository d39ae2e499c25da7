"""Finding the ``templates/`` folder and the two Jinja2 environments that render it.

``templates/`` is a top-level folder of the project (DESIGN.md's layout).  In a checkout or
an editable install it sits beside the ``gaps`` package; a wheel installs it as data files
under ``<prefix>/share/wsgaps/templates``, which the distribution's file list locates for any
install scheme (venv, ``--user``, system).
"""

from __future__ import annotations

import functools
from pathlib import Path

import jinja2

from gaps.report.safe import md_code, md_fence, md_finalize, md_text
from gaps.resources import shipped_dir

DISTRIBUTION = "wsgaps"
DATA_DIR = "share/wsgaps/templates"
MARKER = "gap-report.md.j2"  # a file every templates folder of ours has


class ReportError(Exception):
    """Reports cannot be written: no input, or two targets clashing on one folder."""


class TemplatesNotFound(ReportError):
    """The templates folder is missing: a broken installation, not bad input."""


@functools.cache
def templates_dir() -> Path:
    """The templates folder: the checkout's first (so edits show at once), else the wheel's.

    Raises ``TemplatesNotFound`` when neither exists (a broken installation).
    """
    found = shipped_dir("templates", MARKER)
    if found is None:
        raise TemplatesNotFound(
            f"report templates not found (no templates/{MARKER} beside the gaps package, "
            f"nor in the {DISTRIBUTION} installation's {DATA_DIR})"
        )
    return found


def _common(env: jinja2.Environment) -> jinja2.Environment:
    env.trim_blocks = True
    env.lstrip_blocks = True
    env.keep_trailing_newline = True
    return env


@functools.cache
def html_environment() -> jinja2.Environment:
    """Jinja2 for HTML, autoescape on for every template: target text is never markup."""
    return _common(jinja2.Environment(
        loader=jinja2.FileSystemLoader(templates_dir()),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    ))


@functools.cache
def markdown_environment() -> jinja2.Environment:
    """Jinja2 for Markdown: every expression is Markdown-escaped unless a filter made it safe.

    Filters: ``code`` (inline code span), ``cell_code`` (the same inside a table cell),
    ``fence`` (fenced block, optional info string) and ``text`` (explicit escaping).
    """
    env = _common(jinja2.Environment(
        loader=jinja2.FileSystemLoader(templates_dir()),
        autoescape=False,
        finalize=md_finalize,
        undefined=jinja2.StrictUndefined,
    ))
    env.filters["code"] = md_code
    env.filters["cell_code"] = lambda value: md_code(value, table=True)
    env.filters["fence"] = md_fence
    env.filters["text"] = md_text
    return env


def preload() -> None:
    """Compile every template now (Jinja2 caches them): the CLI calls this while the probes
    run, so rendering after the run costs only the rendering.  Rendering fails as usual
    later if a template is missing or broken; here nothing is raised."""
    try:
        folder = templates_dir()
        for path in sorted(folder.glob("*.j2")):
            env = html_environment() if path.name.endswith(".html.j2") else \
                markdown_environment()
            env.get_template(path.name)
    except (ReportError, jinja2.TemplateError, OSError):
        return
