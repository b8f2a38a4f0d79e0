"""MkDocs hooks: publish the benchmark figures that the results pages show.

The figures live in ``benchmarks/results/`` (the benchmarks write them there), outside ``docs/``.
Pages link them by their path in the repository (``../../benchmarks/results/x.png`` from
``docs/results/``), so the links also work when the Markdown is read on GitHub. At build time each
figure is added to the site as ``figures/x.png`` and the links are rewritten to it; a link to a
figure that does not exist is left alone, so ``mkdocs build --strict`` reports it.
"""

from __future__ import annotations

import posixpath
import re
from pathlib import Path

from mkdocs.structure.files import File

FIGURES = Path(__file__).resolve().parents[1] / "benchmarks" / "results"
_LINK = re.compile(r"(?:\.\./)+benchmarks/results/([\w.-]+\.png)")


def on_files(files, config):
    for png in sorted(FIGURES.glob("*.png")):
        files.append(File.generated(config, f"figures/{png.name}", abs_src_path=str(png)))
    return files


def on_page_markdown(markdown, page, config, files):
    here = posixpath.dirname(page.file.src_uri)

    def to_site(match: re.Match) -> str:
        target = f"figures/{match.group(1)}"
        if files.get_file_from_path(target) is None:
            return match.group(0)
        return posixpath.relpath(target, here or ".")

    return _LINK.sub(to_site, markdown)
