"""The documentation against the code, so that neither drifts from the other.

- Every `okai ...` command shown in README.md and docs/*.md (shell code blocks, the pipeline
  diagram, inline code in tables and prose) names a real command of the typer app, and every
  option shown is an option of that command. Global options (`--json`, `--network`, ...) are
  accepted only before the command, as click parses them. A placeholder in command position,
  written `okai <command>`, is the one explicit way to show a command that is not one.
- Every relative link (and #anchor) in those files resolves.
- Every message fragment quoted in docs/troubleshooting.md still occurs in the code.

Pure parsing: no subprocess, no network.
"""

from __future__ import annotations

import ast
import re
import shlex
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import typer

from okai.cli.app import app
from okai.errors import ExitCode

REPO = Path(__file__).resolve().parent.parent
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
SHELL_BLOCKS = {"", "sh", "bash", "shell", "console"}
"""Fenced blocks whose lines are read as command lines; others (json, toml, python) are data."""

HELP_OPTIONS = {"-h", "--help"}
SHELL_OPERATORS = {"&&", "||", ";", "|", ">", ">>", "<", "2>", "&"}
COMMAND_PREFIXES = {"&&", "||", ";", "|", "-m", "sudo", "exec", "then", "do", "time", "$("}
ENV_ASSIGNMENT = re.compile(r"^[A-Z_][A-Z0-9_]*=")
PLACEHOLDER = re.compile(r"^<[^>]*>$")
ELISION = re.compile(r"^(\.\.\.|…)+$")
ARROW = re.compile(r"--okai ([a-z /]+?)-+>")
"""The pipeline diagram writes steps as `--okai data push-->`."""
SPAN = re.compile(r"(`+)(.+?)(?<!`)\1(?!`)")
FENCE = re.compile(r"^\s*(```+|~~~+)\s*([\w+-]*)")


# ---------------------------------------------------------------- reading markdown


@dataclass(frozen=True)
class Shown:
    """One command as a document shows it."""

    doc: Path
    line: int
    text: str
    tokens: tuple[str, ...]
    alternatives: tuple[tuple[str, ...], ...] = ()
    """Further subcommands of the same group, as in `okai dev up | status | down`."""
    runnable: bool = False
    """A command line in a code block, which must be complete; inline code may name a group."""

    def where(self) -> str:
        return f"{self.doc.relative_to(REPO)}:{self.line}: `{self.text}`"


def fenced(text: str) -> Iterator[tuple[str | None, int, str]]:
    """(language or None outside code blocks, line number, line) for every line."""
    language: str | None = None
    fence = ""
    for number, line in enumerate(text.splitlines(), start=1):
        match = FENCE.match(line)
        if language is None and match:
            fence, language = match[1], match[2].lower()
            continue
        if language is not None and line.strip().startswith(fence[:3]) and not line.strip()[3:]:
            language = None
            continue
        yield language, number, line


def spans(line: str) -> list[str]:
    """The inline code spans of a markdown line, with table escapes undone."""
    return [m[2].strip().replace("\\|", "|") for m in SPAN.finditer(line)]


def tokenize(text: str) -> list[str]:
    try:
        return shlex.split(text, comments=True)
    except ValueError:  # an unbalanced quote in prose: plain words are good enough
        return text.split()


def command_starts(tokens: list[str]) -> list[int]:
    """Indexes of `okai` tokens that start a command (not an argument that mentions okai)."""
    starts = []
    for index, token in enumerate(tokens):
        if token != "okai" and not token.endswith("/okai"):
            continue
        before = index - 1
        while before >= 0 and ENV_ASSIGNMENT.match(tokens[before]):
            before -= 1
        if before < 0 or tokens[before] in COMMAND_PREFIXES or tokens[before].endswith("python"):
            starts.append(index)
    return starts


def commands_in_line(text: str, *, in_span: bool) -> list[tuple[list[str], list[list[str]]]]:
    """Each command in a line: its tokens after `okai`, and alternatives (` | ` in a span)."""
    found: list[tuple[list[str], list[list[str]]]] = []
    if in_span:
        first, *others = [part.strip() for part in re.split(r"\s\|\s", text)]
        tokens = tokenize(first)
        return [
            (tokens[start + 1 :], [tokenize(o) for o in others]) for start in command_starts(tokens)
        ][:1]
    tokens = tokenize(text)
    for start in command_starts(tokens):
        rest = tokens[start + 1 :]
        end = next((i for i, t in enumerate(rest) if t in SHELL_OPERATORS), len(rest))
        found.append((rest[:end], []))
    return found


def shown_commands(doc: Path) -> list[Shown]:
    """Every command `doc` shows, in code blocks, the pipeline diagram and inline code."""
    shown: list[Shown] = []
    pending = ""
    pending_line = 0
    for language, number, line in fenced(doc.read_text(encoding="utf-8")):
        if language is None:
            for text in spans(line):
                for tokens, others in commands_in_line(text, in_span=True):
                    shown.append(
                        Shown(doc, number, text, tuple(tokens), tuple(tuple(o) for o in others))
                    )
            continue
        if language not in SHELL_BLOCKS:
            continue
        for match in ARROW.finditer(line):
            first, *others = [part.split() for part in match[1].split(" / ")]
            shown.append(
                Shown(doc, number, match[0], tuple(first), tuple(tuple(o) for o in others))
            )
        if language == "console":
            if not line.startswith("$ "):
                continue
            line = line[2:]
        if not pending:
            pending_line = number
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        logical, pending = pending + line, ""
        for tokens, _ in commands_in_line(logical, in_span=False):
            shown.append(Shown(doc, pending_line, logical.strip(), tuple(tokens), runnable=True))
    return shown


# ---------------------------------------------------------------- the real command tree


@cache
def root_command() -> Any:
    return typer.main.get_command(app)


def options_of(command: Any) -> dict[str, Any]:
    return {
        name: param
        for param in command.params
        if param.param_type_name == "option"
        for name in (*param.opts, *param.secondary_opts)
    }


def takes_value(param: Any) -> bool:
    return not (getattr(param, "is_flag", False) or getattr(param, "count", False))


def max_arguments(command: Any) -> float:
    counts = [p.nargs for p in command.params if p.param_type_name == "argument"]
    return float("inf") if -1 in counts else sum(counts)


def check(tokens: tuple[str, ...], *, runnable: bool = False) -> tuple[list[str], list[str]]:
    """Resolve `okai TOKENS` against the app: (command path, problems).

    A placeholder (`<command>`) where a subcommand is expected ends the check with the
    path so far and no problem: it is the docs' explicit way to show a command shape.
    """
    command = root_command()
    path: list[str] = []
    problems: list[str] = []
    global_options = options_of(command)
    arguments = 0
    index = 0
    while index < len(tokens):
        token = tokens[index].strip("[]")
        index += 1
        if not token or ELISION.match(token):
            continue
        subcommands = getattr(command, "commands", {})
        if token.startswith("-") and len(token) > 1:
            name, _, inline_value = token.partition("=")
            param = options_of(command).get(name)
            if param is None and name in global_options:
                param = global_options[name]
                problems.append(f"{name} is a global option: write `okai {name} ... {path[0]}`")
            elif param is None and name not in HELP_OPTIONS:
                problems.append(f"`{' '.join(['okai', *path])}` has no option {name}")
            if param is not None and takes_value(param) and not inline_value:
                index += param.nargs
            continue
        if subcommands:
            if PLACEHOLDER.match(token):
                return path, problems
            if token not in subcommands:
                problems.append(f"`okai {' '.join(path)}` has no command {token!r}")
                return path, problems
            command = subcommands[token]
            path.append(token)
            continue
        arguments += 1
        if arguments > max_arguments(command):
            problems.append(f"`okai {' '.join(path)}` takes no argument {token!r} here")
    if runnable and getattr(command, "commands", {}):
        problems.append(f"`okai {' '.join(path)}` needs a command")
    return path, problems


def check_shown(shown: Shown) -> list[str]:
    path, problems = check(shown.tokens, runnable=shown.runnable)
    for alternative in shown.alternatives:
        _, more = check((*path[:-1], *alternative), runnable=shown.runnable)
        problems += more
    return [f"{shown.where()}: {problem}" for problem in problems]


def test_every_command_shown_in_the_docs_exists_with_its_options() -> None:
    shown = [command for doc in DOCS for command in shown_commands(doc)]
    problems = [problem for command in shown for problem in check_shown(command)]
    assert not problems, "\n".join(problems)
    # The extraction itself must keep finding commands where the docs show them.
    paths = {" ".join(check(command.tokens)[0]) for command in shown}
    for expected in ("demo", "dev up", "data push", "cluster up", "record", "verify", "web"):
        assert expected in paths
    assert len(shown) > 100


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ("okai sideways", "has no command 'sideways'"),
        ("okai data push PATH --nope", "`okai data push` has no option --nope"),
        ("okai verify DIGEST --network coston2", "--network is a global option"),
        ("okai record RUN_DIR extra", "takes no argument 'extra'"),
        ("okai cluster", "`okai cluster` needs a command"),
    ],
)
def test_the_command_check_refuses_what_the_cli_refuses(line: str, problem: str) -> None:
    _, problems = check(tuple(line.split()[1:]), runnable=True)
    assert any(problem in p for p in problems), problems


def test_the_command_check_reads_doc_notation() -> None:
    doc = REPO / "README.md"
    span = "okai cluster up JOB --provider local|fluence | status | logs | down"
    (tokens, others), *_ = commands_in_line(span, in_span=True)
    shown = Shown(doc, 1, span, tuple(tokens), tuple(tuple(o) for o in others))
    assert check_shown(shown) == []
    assert check(("--json", "--network", "coston2", "verify", "[--deep]", "M", "..."))[1] == []
    assert check(("<command>", "--anything"))[1] == []
    bad = Shown(doc, 1, "okai dev up | sideways", ("dev", "up"), (("sideways",),))
    assert "has no command 'sideways'" in check_shown(bad)[0]
    assert commands_in_line("OKAI_RPC_URL=x okai verify m  # okai nope", in_span=False) == [
        (["verify", "m"], [])
    ]
    assert commands_in_line("cat /etc/okai/image.json okai", in_span=False) == []


# ---------------------------------------------------------------- links


def anchors(doc: Path) -> set[str]:
    """GitHub's heading anchors: lowercase, punctuation dropped, spaces to dashes."""
    found = set()
    for language, _, line in fenced(doc.read_text(encoding="utf-8")):
        if language is None and (match := re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)):
            title = re.sub(r"[`*_]|\[([^\]]*)\]\([^)]*\)", r"\1", match[1]).lower()
            found.add(re.sub(r"[^\w\- ]", "", title).replace(" ", "-"))
    return found


def links(doc: Path) -> Iterator[tuple[int, str]]:
    for language, number, line in fenced(doc.read_text(encoding="utf-8")):
        if language is None:
            for match in re.finditer(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)", line):
                yield number, match[1]


def test_every_relative_link_resolves() -> None:
    problems = []
    count = 0
    for doc in DOCS:
        for number, target in links(doc):
            if re.match(r"^[a-z]+:", target):
                continue
            count += 1
            file_part, _, anchor = target.partition("#")
            path = (doc.parent / file_part).resolve() if file_part else doc
            where = f"{doc.relative_to(REPO)}:{number}: {target}"
            if not path.exists():
                problems.append(f"{where}: {file_part} does not exist")
            elif anchor and path.suffix == ".md" and anchor not in anchors(path):
                problems.append(f"{where}: no heading #{anchor} in {path.name}")
    assert not problems, "\n".join(problems)
    assert count > 20


# ---------------------------------------------------------------- troubleshooting


TROUBLESHOOTING = REPO / "docs" / "troubleshooting.md"


@cache
def code_strings() -> tuple[str, ...]:
    """Every string literal in src/okai (f-strings by their fixed parts), without docstrings."""
    found: list[str] = []
    for path in sorted((REPO / "src" / "okai").rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        docstrings = {
            id(node.value)
            for node in ast.walk(tree)
            if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
        }
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Constant)
                and isinstance(node.value, str)
                and id(node) not in docstrings
            ):
                found.append(node.value)
    return tuple(found)


def table_rows(doc: Path) -> Iterator[tuple[int, dict[str, str]]]:
    """Rows of every markdown table, as {lowercased header: cell}."""
    header: list[str] | None = None
    for language, number, line in fenced(doc.read_text(encoding="utf-8")):
        if language is not None or not line.startswith("|"):
            header = None
            continue
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]
        if header is None:
            header = [c.lower() for c in cells]
        elif not all(re.fullmatch(r":?-+:?", c) for c in cells):
            yield number, dict(zip(header, cells, strict=True))


def quoted_messages() -> list[tuple[int, str, str | None]]:
    """(line, fragment, file it comes from if not src/okai) for each quoted message."""
    found = []
    for number, row in table_rows(TROUBLESHOOTING):
        if "message" not in row:
            continue
        fragments = spans(row["message"])
        assert fragments, f"troubleshooting.md:{number}: a message row quotes no message"
        source = spans(row["from"])[0] if "from" in row else None
        found += [(number, fragment, source) for fragment in fragments]
    return found


def test_troubleshooting_quotes_messages_the_code_still_prints() -> None:
    messages = quoted_messages()
    assert len(messages) > 40
    problems = []
    for number, fragment, source in messages:
        if source is None:
            present = any(fragment in text for text in code_strings())
        else:
            present = fragment in (REPO / source).read_text(encoding="utf-8")
        if not present:
            problems.append(
                f"troubleshooting.md:{number}: {fragment!r} not in {source or 'src/okai'}"
            )
    assert not problems, "\n".join(problems)


def test_troubleshooting_exit_codes_are_real_ones() -> None:
    codes = {str(int(code)) for code in ExitCode}
    rows = [(number, row) for number, row in table_rows(TROUBLESHOOTING) if "exit" in row]
    assert len(rows) > 40
    for number, row in rows:
        given = set(row["exit"].split(", "))
        assert given <= codes, f"troubleshooting.md:{number}: exit {row['exit']}"


# ---------------------------------------------------------------- architecture


ARCHITECTURE = REPO / "docs" / "architecture.md"
SRC = REPO / "src" / "okai"
NETWORK_MODULES = {
    "httpx", "requests", "web3", "socket", "ssl", "http.client", "http.server",
    "urllib.request", "socketserver", "aiohttp",
}  # fmt: skip
"""Imports that mean a package talks to the network (or listens on it)."""


def unit_of_file(path: Path) -> str:
    """The architecture table's name for the unit a source file belongs to."""
    parts = path.relative_to(SRC).parts
    return f"{parts[0]}/" if len(parts) > 1 else parts[0]


def unit_of_module(name: str) -> str:
    parts = name.split(".")
    if len(parts) == 1:
        return "__init__.py"
    return f"{parts[1]}/" if (SRC / parts[1]).is_dir() else f"{parts[1]}.py"


def imports_of(path: Path) -> Iterator[str]:
    """Modules `path` imports: statements anywhere, and `import_module("okai....")` calls."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            if node.module == "okai":
                yield from (f"okai.{alias.name}" for alias in node.names)
            else:
                yield node.module
        elif isinstance(node, ast.Call) and node.args:
            first = node.args[0]
            function = ast.unparse(node.func)
            if (
                "module" in function
                and isinstance(first, ast.Constant)
                and isinstance(first.value, str)
                and re.fullmatch(r"okai(\.\w+)+", first.value)
            ):
                yield first.value


def actual_dependencies() -> dict[str, tuple[set[str], set[str]]]:
    """Per unit: the okai units and the network modules it imports."""
    found: dict[str, tuple[set[str], set[str]]] = {}
    for path in sorted(SRC.rglob("*.py")):
        unit = unit_of_file(path)
        okai, network = found.setdefault(unit, (set(), set()))
        for name in imports_of(path):
            if name == "okai" or name.startswith("okai."):
                target = unit_of_module(name)
                if not (SRC / target).exists():  # `from okai import __version__`
                    target = "__init__.py"
                if target != unit:
                    okai.add(target)
            network |= {m for m in NETWORK_MODULES if name == m or name.startswith(m + ".")}
    return found


def documented_dependencies() -> dict[str, tuple[set[str], set[str]]]:
    rows: dict[str, tuple[set[str], set[str]]] = {}
    for _, row in table_rows(ARCHITECTURE):
        if "imports (okai)" not in row:
            continue
        (unit,) = spans(row["package"])
        okai = set(spans(row["imports (okai)"]))
        if row["imports (okai)"] == "every package above":
            okai = set(rows) - {"__main__.py"}
        rows[unit] = (okai, set(spans(row["network"])))
    return rows


def test_the_architecture_table_matches_the_imports() -> None:
    documented = documented_dependencies()
    actual = actual_dependencies()
    problems = [
        f"{unit} has no row in the package table" for unit in actual if unit not in documented
    ]
    for unit, (okai, network) in actual.items():
        allowed_okai, allowed_network = documented.get(unit, (set(), set()))
        problems += [f"{unit} imports {target}, not in its row" for target in okai - allowed_okai]
        problems += [
            f"{unit} uses {m}, not in its row's network column" for m in network - allowed_network
        ]
    assert not problems, "\n".join(problems)
    users = {unit for unit, (okai, _) in actual.items() if "cli/" in okai}
    assert users == {"__main__.py"}, f"only __main__ may import cli: {users}"


LISTED_WHOLE = ("server", "fluence", "node", "models")


def test_the_code_layout_names_every_package_and_module() -> None:
    text = ARCHITECTURE.read_text(encoding="utf-8")
    layout = text.split("## Code layout", 1)[1].split("##", 1)[0]
    words = set(re.findall(r"[\w.]+/?", layout))
    missing = []
    for path in sorted(SRC.rglob("*.py")):
        relative = path.relative_to(SRC)
        if relative.parts[0] == "cli" or relative.parent.name in LISTED_WHOLE:
            continue  # cli/ is one module per group; these subpackages are listed as a whole
        if relative.name not in words and relative.name != "__init__.py":
            missing.append(str(relative))
        if len(relative.parts) > 1 and f"{relative.parts[0]}/" not in words:
            missing.append(f"{relative.parts[0]}/")
    assert not missing, f"not in the code layout of architecture.md: {sorted(set(missing))}"


# ---------------------------------------------------------------- paths and Python names

REPOSITORY_PATH = re.compile(r"^(src|tests|docs|benchmarks|scripts|contracts|nix|web|examples)/\S*")
PYTHON_NAME = re.compile(r"^okai(\.\w+)+(?![\w/])")
BUILD_OUTPUTS = ("web/dist",)
"""Paths the docs name that a build makes: not in a fresh checkout."""
NOT_PYTHON = ("okai.image.identity.",)
"""Dotted names that are not Python: NixOS options of nix/identity.nix."""


def code_words() -> Iterator[tuple[Path, int, str]]:
    """Every word of inline code outside code blocks, with its document and line."""
    for doc in DOCS:
        for language, number, line in fenced(doc.read_text(encoding="utf-8")):
            if language is None:
                for text in spans(line):
                    for word in text.split():
                        yield doc, number, word.strip("`,;:()[]")


def test_every_repository_path_named_in_the_docs_exists() -> None:
    problems = []
    for doc, number, word in code_words():
        if not REPOSITORY_PATH.match(word) or word.startswith(BUILD_OUTPUTS):
            continue
        if any(mark in word for mark in "<*{…"):  # a pattern, such as benchmarks/train_*.py
            assert list(REPO.glob(re.sub(r"<[^>]*>|\{[^}]*\}|…", "*", word))), word
        elif not (REPO / word).exists():
            problems.append(f"{doc.relative_to(REPO)}:{number}: {word} does not exist")
    assert not problems, "\n".join(problems)


def top_level_names(path: Path) -> set[str]:
    names = set()
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.FunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names |= {t.id for t in targets if isinstance(t, ast.Name)}
        elif isinstance(node, ast.Import | ast.ImportFrom):
            names |= {(a.asname or a.name).split(".")[0] for a in node.names}
    return names


def resolves(name: str) -> bool:
    """Whether `okai.a.b.C` is a module of src/okai, or a name defined at its top level."""
    parts = name.split(".")[1:]
    for cut in range(len(parts), 0, -1):
        base = SRC.joinpath(*parts[:cut])
        module = base / "__init__.py" if base.is_dir() else base.with_suffix(".py")
        if module.is_file():
            rest = parts[cut:]
            return not rest or rest[0] in top_level_names(module) or (base / rest[0]).exists()
    return False


def test_every_python_name_in_the_docs_resolves() -> None:
    problems = []
    checked = 0
    for doc, number, word in code_words():
        match = PYTHON_NAME.match(word)
        if not match or word.startswith(NOT_PYTHON):
            continue
        first = match[0].split(".")[1]
        if not ((SRC / first).is_dir() or (SRC / f"{first}.py").is_file()):
            continue  # okai.toml, or a schema name such as okai.job/v1
        checked += 1
        if not resolves(match[0]):
            problems.append(f"{doc.relative_to(REPO)}:{number}: {match[0]} is not in src/okai")
    assert not problems, "\n".join(problems)
    assert checked > 30


INTERNAL_VARIABLES = {"OKAI_PROVIDER", "OKAI_RUN_STARTED_AT"}
"""Set by the launcher for the workers it starts, never by a user."""


def test_every_environment_variable_the_code_reads_is_documented() -> None:
    in_code = {name for text in code_strings() for name in re.findall(r"\bOKAI_[A-Z0-9_]+", text)}
    in_docs = {name for doc in DOCS for name in re.findall(r"\bOKAI_[A-Z0-9_]+", doc.read_text())}
    assert in_code - INTERNAL_VARIABLES - in_docs == set()
    assert in_code >= INTERNAL_VARIABLES, "an internal variable is gone: drop it from the list"
