"""README.md, run: every fenced code block in it is classified by the HTML comment right before it
(`<!-- readme: KIND ... -->`, invisible on GitHub), and a block without one fails here, so that no new
block skips its check. The kinds, each exercised:

- `run [with=pipeline|captures]`: shell lines, each run here to exit 0, in order, from a scratch
  checkout (the repository's configs/; with `captures`, the real recordings as ../shared/captures),
  with `fh` the working tree's and `python` this one, and shared memory in a private directory
  ($FH_SHM_DIR), so that the README's prefix `fh` is this test's own. `with=pipeline`: while `fh sim`
  and `fh run` (the configuration tests/pipeline.py writes, prefix `fh`) run.
- `covered-by TEST...`: commands that need the internet, run for minutes or want a terminal; each
  named test exists, every `make` line is dry-run (`make -n`) and the `fh` commands it would start
  are parsed.
- `python with=demo:S|pipeline`: the block as a script, run while `fh demo` publishes for S seconds
  (or a pipeline runs): exit 0, nothing on stderr, and it prints what PRINTS says for its marker.
- `toml [into=CONFIG]`: loaded by feedhandler.config (merged into CONFIG, for a fragment of one), so
  every key it names is one the loader knows, with the value shown.
- `diagram`: a picture; every `fh COMMAND` it draws is a command of fh.

Whatever its kind, every `fh` command of a shell block is parsed by the real parser
(tools.cli.build_parser), so subcommands and flags stay true. The command table lists every
subcommand, and only those.
"""
from __future__ import annotations

import argparse
import ast
import os
import re
import shlex
import signal
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from dataclasses import dataclass, field
from io import StringIO
from pathlib import Path

import pytest

from conftest import REPO
from feedhandler.config import RunConfig, parse_config
from pipeline import FH, Pipeline, wait_for, warm_kernels
from shm.nbbo_reader import NbboReader
from shm.reader import VenueReader
from shm.segment import SegmentError
from tools.cli import build_parser

README = REPO / "README.md"
LANGUAGE = {"run": "sh", "covered-by": "sh", "python": "python", "toml": "toml", "diagram": ""}
OPTIONS = {"run": {"with": ("pipeline", "captures")}, "python": {"with": ("demo", "pipeline")},
           "toml": {"into": ()}, "covered-by": {}, "diagram": {}}
PRINTS = {  # what each Python example prints, by its marker comment
    "strategy-example": r"(?m)^(BTC|ETH)-USDT #\d+ valid=True  \S+@\S+.*  \|  \S+@\S+",  # a book line per change
    "numba-example": r"\A[1-9]\d*\n\Z",  # bid + ask of a valid book, in price mantissa units
    "nbbo-example": r"(?m)^BTC-USDT [\d.]+ \(\w[\w ]*\) / [\d.]+ \(\w[\w ]*\) valid=True$",
}
STARTUP_S = 600  # a cold numba cache compiles for minutes on a 2-core box


@dataclass
class Block:
    line: int  # of the opening fence, 1-based
    language: str
    code: str
    kind: str = ""  # "" when no `readme:` comment classifies it
    words: list[str] = field(default_factory=list)  # what follows the kind
    markers: list[str] = field(default_factory=list)  # the other comments right before it

    @property
    def options(self) -> dict[str, str]:
        return dict(word.split("=", 1) for word in self.words if "=" in word)

    @property
    def name(self) -> str:
        return f"README.md:{self.line}:{self.kind or 'unclassified'}"

    def shell_lines(self) -> list[str]:
        """The lines that hold a command (comments and blank lines left out)."""
        return [line for line in self.code.splitlines() if shlex.split(line, comments=True)]


def readme_blocks(text: str) -> list[Block]:
    """Every fenced block of `text` with the HTML comments on the lines right above its fence."""
    blocks, lines, n = [], text.splitlines(), 0
    while n < len(lines):
        fence = re.fullmatch(r"```(\w*)\s*", lines[n])
        if not fence:
            n += 1
            continue
        end = lines.index("```", n + 1)
        block = Block(n + 1, fence.group(1), "\n".join(lines[n + 1:end]) + "\n")
        above = n - 1
        while above >= 0 and (comment := re.fullmatch(r"<!--\s*(.*?)\s*-->", lines[above])):
            if comment.group(1).startswith("readme:"):
                assert not block.kind, f"{block.name}: two readme comments"
                block.kind, *block.words = comment.group(1).removeprefix("readme:").split()
            else:
                block.markers.append(comment.group(1))
            above -= 1
        blocks.append(block)
        n = end + 1
    return blocks


BLOCKS = readme_blocks(README.read_text())


def blocks_of(kind: str, with_: str | None = "any") -> list:
    """The blocks of `kind` as test parameters; `with_`: only those run with that environment (None:
    with none)."""
    return [pytest.param(b, id=b.name) for b in BLOCKS if b.kind == kind and
            (with_ == "any" or b.options.get("with", "").split(":")[0] == (with_ or ""))]


OPERATORS = (";", "&&", "||", "|", "&")


def tokens(line: str) -> list[str]:
    """The words and operators of a shell line, its comment left out."""
    lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    return list(lexer)


def commands(line: str) -> list[list[str]]:
    """The simple commands of a shell line (split at its operators)."""
    found, current = [], []
    for token in tokens(line):
        if token in OPERATORS:
            found.append(current)
            current = []
        else:
            current.append(token)
    return [command for command in found + [current] if command]


def parses(argv: list[str]) -> None:
    """`fh ARGV` is accepted by the real parser (`--version` prints the version and exits 0)."""
    out, err = StringIO(), StringIO()
    try:
        with redirect_stdout(out), redirect_stderr(err):
            build_parser().parse_args(argv)
    except SystemExit as exit_:
        assert exit_.code == 0, f"fh {shlex.join(argv)}: {err.getvalue().strip()}"


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


# ------------------------------------------------------------------------------------ every block

def test_the_readme_has_blocks_of_every_kind():
    assert {b.kind for b in BLOCKS} == set(LANGUAGE)


@pytest.mark.parametrize("block", [pytest.param(b, id=b.name) for b in BLOCKS])
def test_every_code_block_is_classified_with_a_kind_its_language_allows(block):
    assert block.kind in LANGUAGE, (f"{block.name}: classify it with <!-- readme: KIND --> on the line above "
                                    f"its fence, KIND one of {', '.join(LANGUAGE)} (tests/test_readme.py)")
    assert block.language == LANGUAGE[block.kind], f"{block.name}: a {block.kind} block is ```{LANGUAGE[block.kind]}"
    allowed = OPTIONS[block.kind]
    for name, value in block.options.items():
        assert name in allowed, f"{block.name}: {block.kind} takes no option {name}"
        assert not allowed[name] or value.split(":")[0] in allowed[name], f"{block.name}: {name}={value}"
    if block.kind == "covered-by":
        assert block.words and not block.options, f"{block.name}: covered-by names the tests that cover it"
    if block.kind == "python":
        assert "with" in block.options, f"{block.name}: a python block runs with=demo:SECONDS or with=pipeline"
        assert [m for m in block.markers if m in PRINTS], f"{block.name}: PRINTS says what a python example prints"
    if block.kind == "run":
        assert all("&" not in tokens(line) for line in block.shell_lines()), \
            f"{block.name}: a command run here ends; a background one belongs to covered-by"


@pytest.mark.parametrize("block", blocks_of("run") + blocks_of("covered-by"))
def test_every_fh_command_of_a_shell_block_parses(block):
    found = [argv for line in block.shell_lines() for argv in commands(line) if argv[0] == "fh"]
    for argv in found:
        parses(argv[1:])
    if block.kind == "run":
        assert found, f"{block.name}: nothing to run"


@pytest.mark.parametrize("block", blocks_of("diagram"))
def test_every_command_a_diagram_draws_is_an_fh_command(block):
    drawn = set(re.findall(r"\bfh ([a-z]+)", block.code))
    assert drawn and drawn <= set(subcommands(build_parser())), drawn - set(subcommands(build_parser()))


def test_the_command_table_lists_every_fh_command_and_only_those():
    text = README.read_text()
    assert "\n## Commands\n" in text, "the README lost its command table (## Commands)"
    table = text[text.index("\n## Commands\n"):]
    table = table[:table.index("\n## ", 1)]
    parser = build_parser()
    listed = set()
    for row in re.findall(r"^\| `fh ([^`]*)` \|(.*)\|$", table, re.M):
        path, current = [], parser
        for word in row[0].split():
            if word not in subcommands(current):
                break
            path.append(word)
            current = subcommands(current)[word]
        if not path:
            parses(row[0].split())  # an option of fh itself: --version
            continue
        for name in subcommands(current):  # a group on one row names each of its commands
            assert f"`{name}`" in row[1], f"the fh {' '.join(path)} row does not name {name}"
        listed.add(path[0])
    assert listed == set(subcommands(parser))


# ------------------------------------------------------------------------------------ covered-by

def functions_in(path: Path) -> set[str]:
    """`name` and `Class::name` of every test function in the file."""
    tree = ast.parse(path.read_text())
    names = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            names.add(node.name)
        elif isinstance(node, ast.ClassDef):
            names |= {f"{node.name}::{f.name}" for f in node.body if isinstance(f, ast.FunctionDef)}
    return names


@pytest.mark.parametrize("block", blocks_of("covered-by"))
def test_what_is_not_run_here_names_tests_that_exist(block):
    for test in block.words:
        path, _, name = test.partition("::")
        assert name and (REPO / path).is_file(), f"{block.name}: {test} is not tests/FILE.py::TEST"
        assert name.split("[")[0] in functions_in(REPO / path), f"{block.name}: no test {test}"


@pytest.mark.parametrize("block", blocks_of("covered-by"))
def test_every_make_line_is_a_target_whose_fh_commands_parse(block):
    makefile = (REPO / "Makefile").read_text()
    for line in block.shell_lines():
        for argv in commands(line):
            assignments = [word for word in argv if re.fullmatch(r"[A-Z_]+=\S*", word)]
            argv = argv[len(assignments):]
            if argv[0] != "make":
                continue
            for target in argv[1:]:
                assert re.search(rf"^{re.escape(target)}:", makefile, re.M), f"{line}: no rule {target} in Makefile"
            for name in (a.split("=")[0] for a in assignments):
                assert re.search(rf"^{name} *[?:]?=", makefile, re.M), f"{line}: the Makefile has no {name}"
            dry = subprocess.run(["make", "-n", *argv[1:], *assignments], cwd=REPO, capture_output=True, text=True,
                                 timeout=60)
            assert dry.returncode == 0, f"{line}: {dry.stderr}"
            for started in re.findall(r"bin/fh((?: +[^\s;&|<>]+)*)", dry.stdout):
                parses(shlex.split(started))


# ------------------------------------------------------------------------------------ toml

def merged(base: dict, fragment: dict) -> dict:
    out = dict(base)
    for key, value in fragment.items():
        out[key] = merged(base.get(key, {}), value) if isinstance(value, dict) else value
    return out


def shown(fragment: dict) -> Iterator[tuple[str, str | None, str, object]]:
    """(table, name, key, value) of every key of a TOML configuration: `name` the NAME of [venues.NAME]
    and [sinks.NAME], None for [run] and [aggregator]."""
    for table, content in fragment.items():
        for name, values in content.items() if table in ("venues", "sinks") else [(None, content)]:
            for key, value in values.items():
                yield table, name, key, value


def loaded(config: RunConfig, table: str, name: str | None, key: str):
    """What the loaded `config` holds for `key` of [table] or [table.name], as TOML would show it."""
    where = {"run": config, "aggregator": config.aggregator}.get(table) or getattr(config, table)[name]
    value = getattr(where, key)
    return list(value) if isinstance(value, tuple) else value


@pytest.mark.parametrize("block", blocks_of("toml"))
def test_every_toml_block_loads_with_the_values_it_shows(block):
    fragment = tomllib.loads(block.code)
    into = block.options.get("into")
    data = merged(tomllib.loads((REPO / into).read_text()), fragment) if into else fragment
    config = parse_config(data, f"{block.name} into {into}")
    for table, name, key, value in shown(fragment):
        assert loaded(config, table, name, key) == value, f"{block.name}: [{table}{'.' + name if name else ''}] {key}"


# ------------------------------------------------------------------------------------ run and python

class Sandbox:
    """A scratch checkout to run README commands from: configs/ of the repository, `fh` this working
    tree's, `python` this interpreter, shared memory in a private directory (set as $FH_SHM_DIR here
    too, so that this test's readers and writers see it)."""

    def __init__(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, captures: Path | None = None):
        self.home = tmp_path / "checkout"
        self.home.mkdir()
        (self.home / "configs").symlink_to(REPO / "configs")
        if captures is not None:
            (tmp_path / "shared").mkdir()
            (tmp_path / "shared" / "captures").symlink_to(captures)
        bin_dir = tmp_path / "bin"
        bin_dir.mkdir()
        for name, command in (("fh", f"{sys.executable} -m tools.cli"), ("python", sys.executable)):
            (bin_dir / name).write_text(f'#!/bin/sh\nexec {command} "$@"\n')
            (bin_dir / name).chmod(0o755)
        (tmp_path / "shm").mkdir()
        monkeypatch.setenv("FH_SHM_DIR", str(tmp_path / "shm"))
        monkeypatch.setenv("PYTHONPATH", str(REPO))
        monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")

    def sh(self, line: str) -> subprocess.CompletedProcess:
        return subprocess.run(["bash", "-c", line], cwd=self.home, capture_output=True, text=True, timeout=STARTUP_S)

    def run_block(self, block: Block) -> None:
        for line in block.shell_lines():
            done = self.sh(line)
            assert done.returncode == 0, f"{block.name}: {line}\nexit {done.returncode}\n{done.stderr}{done.stdout}"

    def python(self, block: Block) -> subprocess.CompletedProcess:
        script = self.home / "example.py"
        script.write_text(block.code)
        return subprocess.run(["python", script.name], cwd=self.home, capture_output=True, text=True, timeout=300)

    @contextmanager
    def demo(self, seconds: float) -> Iterator[None]:
        """`fh demo` publishing under the README's prefix `fh` for `seconds`, from once its segment can be
        read; stopped afterwards if it still runs."""
        demo = subprocess.Popen([*FH, "demo", "--duration", str(seconds), "--rate", "100"], cwd=self.home,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            def attached() -> bool:
                assert demo.poll() is None, f"fh demo ended: {demo.stderr.read()}"
                try:
                    VenueReader("demo", prefix="fh").close()
                    return True
                except SegmentError:
                    return False
            wait_for(attached, STARTUP_S, "fh demo's segment", every_s=0.1)
            yield
        finally:
            if demo.poll() is None:
                demo.send_signal(signal.SIGINT)
            demo.communicate(timeout=60)

    @contextmanager
    def pipeline(self, workdir: Path) -> Iterator[None]:
        """`fh sim` and `fh run` under the README's prefix `fh`, once the NBBO of every symbol is valid."""
        running = Pipeline(workdir, "fh")
        warm_kernels()
        running.start()
        try:
            wait_for(lambda: nbbo_valid(), STARTUP_S, "every NBBO valid", every_s=0.5)
            yield
        except AssertionError:
            print(running.logs())
            raise
        finally:
            running.stop(unlink=False)  # the segments are in this test's own directory, not /dev/shm


def nbbo_valid() -> bool:
    try:
        with NbboReader(prefix="fh") as nbbo:
            return len(nbbo.instruments) > 0 and all(nbbo.quote(i.index).valid for i in nbbo.instruments)
    except SegmentError:
        return False


def check_python(block: Block, run: subprocess.CompletedProcess) -> None:
    assert run.returncode == 0 and run.stderr == "", f"{block.name}: exit {run.returncode}\n{run.stderr}"
    (marker,) = [m for m in block.markers if m in PRINTS]
    assert re.search(PRINTS[marker], run.stdout), f"{block.name} printed:\n{run.stdout[-3000:]}"


@pytest.mark.parametrize("block", blocks_of("run", with_=None))
def test_a_shell_block_runs_offline(block, tmp_path, monkeypatch):
    Sandbox(tmp_path, monkeypatch).run_block(block)


@pytest.mark.parametrize("block", blocks_of("run", with_="captures"))
def test_a_shell_block_runs_on_the_real_recordings(block, captures, tmp_path, monkeypatch):
    Sandbox(tmp_path, monkeypatch, captures).run_block(block)


@pytest.mark.parametrize("block", blocks_of("python", with_="demo"))
def test_python_example_runs_and_prints_what_it_says(block, tmp_path, monkeypatch):
    sandbox = Sandbox(tmp_path, monkeypatch)
    with sandbox.demo(float(block.options["with"].split(":")[1])):
        run = sandbox.python(block)
    check_python(block, run)


def test_the_numba_example_exits_silently_even_when_its_reader_is_collected_last(tmp_path, monkeypatch):
    """Interpreter shutdown empties modules' globals in an order no script controls; the worst case for
    the reader is to go last, with shm.segment's own globals."""
    (block,) = [b for b in BLOCKS if "numba-example" in b.markers]
    late = Block(block.line, block.language, block.code + "import shm.segment\nshm.segment.held = reader\n",
                 block.kind, block.words, block.markers)
    sandbox = Sandbox(tmp_path, monkeypatch)
    with sandbox.demo(60):
        run = sandbox.python(late)
    check_python(late, run)


@pytest.mark.slow
def test_the_blocks_that_watch_a_pipeline_run_against_one(tmp_path, monkeypatch):
    """One pipeline, under the README's prefix in a private shared-memory directory; every block that
    needs one, in README order."""
    blocks = [b for b in BLOCKS if b.options.get("with") == "pipeline"]
    assert blocks
    sandbox = Sandbox(tmp_path, monkeypatch)
    with sandbox.pipeline(tmp_path):
        for block in blocks:
            if block.kind == "run":
                sandbox.run_block(block)
            else:
                check_python(block, sandbox.python(block))


# ------------------------------------------------------------------------------------ links

def slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces as hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


@pytest.mark.parametrize("page", ["README.md", *sorted(str(p.relative_to(REPO)) for p in (REPO / "docs").glob("*.md"))])
def test_every_relative_link_reaches_a_file_and_heading_that_exist(page):
    text = (REPO / page).read_text()
    prose = re.sub(r"`[^`\n]*`", "", re.sub(r"^```.*?^```", "", text, flags=re.M | re.S))  # code is no link
    links = re.findall(r"\]\(([^)\s]+)\)", prose)
    for link in (link for link in links if not re.match(r"\w+:", link)):
        path, _, anchor = link.partition("#")
        target = (REPO / page).parent / path if path else REPO / page
        assert target.is_file(), f"{page}: {link}: no {target.relative_to(REPO)}"
        if anchor:
            headings = re.findall(r"^#+ (.*)$", target.read_text(), re.M)
            assert anchor in {slug(h) for h in headings}, f"{page}: {link}: no heading #{anchor}"
