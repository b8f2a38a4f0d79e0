"""The tutorials under docs/tutorials/ run as written.

Each page runs top to bottom in a fresh temporary directory, in its own process, under a time limit
(the format is described in docs/guide/development.md):

- ```` ```python ```` blocks are executed, all of a page's in one namespace;
- ```` ```bash ```` blocks are run with ``bash -euo pipefail`` (``implicit-vae`` is on PATH);
- a ```` ```yaml ```` block whose first line is ``# file: some/name.yaml`` is written to that path;
- every other block (``text``, ``console``, plain yaml, ...) is only shown;
- ``<!-- tutorial: skip-if-missing PATH -->`` skips the page when PATH (relative to the repository
  root) is absent.

Only fences that start at the beginning of a line count, so a block indented inside an admonition
or a list is display only. Run one page by hand with ``python tests/test_docs_tutorials.py PAGE``.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TUTORIALS = ROOT / "docs" / "tutorials"
TIME_LIMIT_S = float(os.environ.get("IMPLICIT_VAE_TUTORIAL_TIME_LIMIT", "150"))

_FENCE = re.compile(r"^```([^\n`]*)\n(.*?)^```[ \t]*$", re.M | re.S)
_SKIP = re.compile(r"<!--\s*tutorial:\s*skip-if-missing\s+(\S+)\s*-->")
_FILE = re.compile(r"#\s*file:\s*(\S+)\s*$")


@dataclass(frozen=True)
class Block:
    kind: str  # "python", "bash", "file" or "show"
    code: str
    line: int  # line of the opening fence in the page, 1-based
    path: str | None = None  # for "file": where the block is written


def parse(text: str) -> list[Block]:
    """The page's fenced blocks, in order, with what the runner does with each."""
    blocks = []
    for match in _FENCE.finditer(text):
        info = match.group(1).strip().split()
        lang = info[0].lower() if info else ""
        code = match.group(2)
        line = text.count("\n", 0, match.start()) + 1
        first = code.split("\n", 1)[0]
        if lang in ("python", "bash"):
            blocks.append(Block(lang, code, line))
        elif lang in ("yaml", "yml") and _FILE.match(first.strip()):
            blocks.append(Block("file", code, line, _FILE.match(first.strip()).group(1)))
        else:
            blocks.append(Block("show", code, line))
    return blocks


def skip_reasons(text: str) -> list[str]:
    """A reason for each skip-if-missing path that is absent."""
    return [
        f"{path} is absent (this page needs it)"
        for path in _SKIP.findall(text)
        if not (ROOT / path).exists()
    ]


def run_page(page: Path) -> None:
    """Run ``page``'s blocks in the current directory; exit with a message naming the failing block."""
    namespace: dict = {"__name__": "__tutorial__"}
    for block in parse(page.read_text()):
        where = f"{page.name}:{block.line}"
        if block.kind == "file":
            target = Path(block.path)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(block.code)
        elif block.kind == "python":
            try:
                exec(compile(block.code, where, "exec"), namespace)
            except BaseException as err:  # noqa: BLE001 - report any failure with its block
                raise SystemExit(f"tutorial block {where} (python) failed: {err!r}") from err
        elif block.kind == "bash":
            proc = subprocess.run(["bash", "-euo", "pipefail", "-c", block.code])
            if proc.returncode != 0:
                raise SystemExit(f"tutorial block {where} (bash) exited with {proc.returncode}")


def _environment() -> dict[str, str]:
    env = dict(os.environ)
    env["MPLBACKEND"] = "Agg"
    env["OMP_NUM_THREADS"] = "1"
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in [str(ROOT / "src"), env.get("PYTHONPATH", "")] if p
    )
    return env


def _run_in(page: Path, cwd: Path, timeout: float = TIME_LIMIT_S) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), str(page)],
        cwd=cwd, env=_environment(), capture_output=True, text=True, timeout=timeout,
    )


PAGES = sorted(TUTORIALS.glob("*.md"))


def test_there_are_tutorials():
    assert PAGES, f"no tutorials under {TUTORIALS}"
    assert any(b.kind != "show" for page in PAGES for b in parse(page.read_text()))


@pytest.mark.parametrize("page", PAGES, ids=[p.stem for p in PAGES])
def test_tutorial_runs(page, tmp_path):
    reasons = skip_reasons(page.read_text())
    if reasons:
        pytest.skip("; ".join(reasons))
    try:
        proc = _run_in(page, tmp_path)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{page.name} ran past {TIME_LIMIT_S:.0f} s; tutorials must stay tiny")
    assert proc.returncode == 0, f"{page.name} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"


# The runner itself: each rule of the format, on small pages.

PAGE = textwrap.dedent(
    """\
    # A page

    ```yaml
    # file: cfg/a.yaml
    key: 3
    ```

    ```yaml
    shown: only
    ```

    ```python
    import yaml
    value = yaml.safe_load(open("cfg/a.yaml"))["key"]
    ```

    ```bash
    test -f cfg/a.yaml && echo ran > bash.txt
    ```

    ```text
    this is not run
    ```

    ```python
    assert value == 3 and open("bash.txt").read().strip() == "ran"
    open("done.txt", "w").write(str(value))
    ```
    """
)


def test_parse_sorts_blocks_by_what_is_run():
    kinds = [(b.kind, b.path) for b in parse(PAGE)]
    assert kinds == [("file", "cfg/a.yaml"), ("show", None), ("python", None), ("bash", None),
                     ("show", None), ("python", None)]
    assert parse(PAGE)[0].line == 3


def test_runner_runs_a_page_in_order(tmp_path):
    page = tmp_path / "page.md"
    page.write_text(PAGE)
    work = tmp_path / "work"
    work.mkdir()
    proc = _run_in(page, work, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert (work / "done.txt").read_text() == "3"
    assert not (tmp_path / "cfg").exists()  # files land in the page's working directory


@pytest.mark.parametrize(
    ("block", "message"),
    [("```python\nraise RuntimeError('boom')\n```\n", "page.md:3 (python) failed"),
     ("```bash\nfalse\necho not reached\n```\n", "page.md:3 (bash) exited with 1"),
     ("```bash\nset +e; echo x | false | cat\n```\n", "page.md:3 (bash) exited with 1")],
)
def test_runner_reports_the_failing_block(tmp_path, block, message):
    page = tmp_path / "page.md"
    page.write_text("# Page\n\n" + block)
    proc = _run_in(page, tmp_path, timeout=60)
    assert proc.returncode != 0 and message in proc.stderr, proc.stderr


def test_skip_if_missing_names_the_absent_path():
    text = "<!-- tutorial: skip-if-missing ../shared/no/such/dir -->\n# Page\n"
    assert skip_reasons(text) == ["../shared/no/such/dir is absent (this page needs it)"]
    assert skip_reasons("<!-- tutorial: skip-if-missing src -->\n") == []


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit("usage: python tests/test_docs_tutorials.py PAGE.md")
    run_page(Path(sys.argv[1]).resolve())
