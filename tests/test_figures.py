"""Every measured figure that README.md and docs/*.md quote comes from BENCHMARKS.md.

What is a figure. A number written in digits and followed by a unit of measurement: time (ms,
s, seconds, minutes, hours), memory (KB, MB, GB, KiB, MiB, GiB, TiB), a share (%), a ratio
(``2.3x``, ``2.3 times faster``), a rate (``/s``, ``complexes/s``, ``... a second``, ``... per
second``) or training steps (``6 steps``, ``5 training steps``). In a list or a range (``23 to 31
training steps``, ``0.2 to 0.26 s``, ``5 or 6 steps``, ``2, 4 and 8 s``) every number takes the
unit written after the last one.

The rule. Each figure in the prose of README.md and docs/*.md must be

1. in BENCHMARKS.md: the same quantity, units converted (``0.24 s`` quotes ``236.8 ms``), as
   precise as the docs write it (the BENCHMARKS value rounded to the docs' decimals: ``153 MiB``
   quotes ``153.3``, ``66 s`` does not quote ``67 s`` or ``72 s``); a sign is not compared (an
   error of ``-6.9 %`` is quoted as ``6.9 %`` fast). In BENCHMARKS.md a table cell that is a bare
   number has the unit its column's heading names (``peak MiB``);
2. in a BENCHMARKS.md section (a ``##`` or ``###`` heading; a ``###`` one without a command or a
   date of its own reads its parent's) that has the command which produced it (a code span that
   starts with ``python bench/`` or ``stagetune``, after any ``VAR=value`` and ``time`` or
   ``/usr/bin/time -v``) and a date (YYYY-MM-DD). A figure whose every source lacks either fails;
3. or a setting, not a measurement, and then only these: the stage rules of configs/stages.yaml,
   read from that file (each stage's target and window minutes; ``memory_fraction`` as the share
   it allows and the share it leaves, 90 % and 10 %; ``throughput_tie``, 2 %), and SETTINGS below:
   a figure one document states, the file that sets it and the text that sets it there, which the
   test finds (a changed setting fails the test as a changed measurement does, and an entry no
   document states any more fails as stale).

Not figures, by rule rather than by list: code (fenced and indented blocks and inline code
spans: commands, options such as ``--memory-budget 8GiB``, log lines, example output), though a
comment in a code block (``# 5 epochs took 210 s here``) is prose and checked; quotations in
double quotes (a program's messages, such as Ray's "within the last 60 seconds"); link targets;
hyphenated adjectives and numbers glued to letters (``a 40-step cycle``, ``2-core``, ``p99``,
``16ch``, ``1400x1000``); counts without a unit of measurement (atoms, complexes, epochs,
parameters) and numbers in words (``a sixth``).

Figures are compared as numbers, not meanings: a figure BENCHMARKS.md has in another context
passes. What fails is a figure BENCHMARKS.md does not have at all: typed by hand, or left behind
when a benchmark was run again and its table changed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import pytest
import yaml

from tests.conftest import REPO

# (document, figure as it writes it, the file that sets it, the text that sets it there)
SETTINGS = [
    ("docs/tuner.md", "5 %", "tuner/_probe.py", "< guess * 1.05"),  # the probe's refit stop
    ("docs/tuner.md", "256 MiB", "configs/presets/quick.yaml", "memory_budget: 256MiB"),
    ("docs/service.md", "1 MiB", "service/settings.py", "default=2**20"),  # max_body_bytes
    ("docs/service.md", "2, 4 and 8 s", "service/follower.py", "time.monotonic() + 2.0**tries"),
    ("docs/cluster.md", "10 minutes", "deploy/kuberay/rayjob.yaml", "ttlSecondsAfterFinished: 600"),
    ("docs/cluster.md", "24 GB", "deploy/cluster.yaml", "One A10G (24 GB)"),  # the GPU's size
    ("docs/cluster.md", "40 GB", "deploy/cluster.yaml", "Eight A100s (40 GB)"),
    ("docs/model.md", "32 KiB", "tests/model/test_train.py", "< 32 * 1024"),  # a test's bound
    # how far apart an epoch's last step may leave its ranks' atoms and still be run
    ("docs/model.md", "5 %", "model/_balance.py", "TAIL_IMBALANCE = 0.05"),
    # how often a running search's status line comes at least
    ("docs/cluster.md", "30 s", "tuner/_progress.py", "STATUS_EVERY = 30.0"),
]

UNITS = {  # unit -> (dimension, size in the dimension's base unit)
    "ms": ("time", 1e-3),
    **{u: ("time", 1.0) for u in ("s", "sec", "secs", "second", "seconds")},
    **{u: ("time", 60.0) for u in ("min", "minute", "minutes")},
    **{u: ("time", 3600.0) for u in ("hour", "hours")},
    **{f"{p}B": ("memory", 1000.0**i) for i, p in enumerate("KMGT", 1)},
    **{f"{p}iB": ("memory", 1024.0**i) for i, p in enumerate("KMGT", 1)},
    **{u: ("share", 1.0) for u in ("%", "percent")},
    **{u: ("ratio", 1.0) for u in ("x", "times")},
    **{u: ("rate", 1.0) for u in ("/s", "complexes/s", "samples/s", "a second", "per second")},
    **{u: ("steps", 1.0) for u in ("step", "steps", "training steps", "probe steps")},
}
NUM = r"(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?"
UNIT = r"""(?:
    (?P<x>x)(?!\w)                                                  # 2.3x, attached
  | (?P<slash>/s)\b                                                # 1971/s, attached
  | [ \n]?(?P<unit>%|percent\b|[KMGT]i?B\b|ms\b|s\b|secs?\b|seconds?\b|min\b|minutes?\b
            |(?:complexes|samples)/s\b
            |hours?\b|(?:training[ \n]|probe[ \n])?steps?\b
            |times(?=[ \n](?:faster|slower|larger|smaller|more|fewer|less|higher|lower)\b))
  | [ \n]+(?:\w+[ \n]+)?(?P<second>(?:a|per)[ \n]second)\b          # 2,500 answers a second
)"""
SEP = r"(?:,?[ \n](?:to|or|and|against)[ \n]|,[ \n]|[-\u2013])"  # in a list or range: 2, 4 and 8 s
FIGURE = re.compile(
    rf"(?<![\w.^/=:])(?<![A-Za-z]-)(?P<nums>{NUM}(?:{SEP}{NUM})*){UNIT}", re.VERBOSE
)
COMMAND = re.compile(
    r"^(?:\w+=\S+\s+)*(?:(?:/usr/bin/)?time(?:\s+-v)?\s+)?(?:python\s+bench/|stagetune\s)"
)
DATE = re.compile(r"\b20\d\d-[01]\d-[0-3]\d\b")
CODE_SPAN = re.compile(r"(?<!`)(`+)(?!`)(.+?)(?<!`)\1(?!`)", re.DOTALL)


@dataclass(frozen=True)
class Figure:
    text: str  # as written, with its unit
    value: float  # in the base unit of its dimension (seconds, bytes, 1)
    dimension: str
    tolerance: float  # half of the last digit written, in the base unit
    line: int = 0

    def quotes(self, other: Figure) -> bool:
        """Whether this figure, as precise as it is written, is ``other``."""
        return self.dimension == other.dimension and abs(
            abs(self.value) - abs(other.value)
        ) <= self.tolerance * (1 + 1e-9)


def unit_of(match: re.Match) -> str:
    name = next(g for g in ("x", "slash", "unit", "second") if match.group(g))
    return re.sub(r"\s+", " ", match.group(name))


def figures(text: str, first_line: int = 1) -> list[Figure]:
    """The figures of prose whose code and quotations are already blanked out."""
    found = []
    for m in FIGURE.finditer(text):
        dimension, size = UNITS[unit_of(m)]
        line = first_line + text.count("\n", 0, m.start())
        for num in re.findall(NUM, m.group("nums")):
            places = len(num.partition(".")[2])
            value = float(num.replace(",", ""))
            tolerance = 0.5 * 10.0**-places * size
            found.append(Figure(f"{num} {unit_of(m)}", value * size, dimension, tolerance, line))
    return found


def blank(match: re.Match) -> str:
    """What replaces code or a quotation: its line breaks, so that line numbers stay right."""
    return " " + "\n" * match.group(0).count("\n") + " "


def prose(markdown: str) -> list[tuple[int, str]]:
    """Each paragraph, list item, table row or run of code comments with its first line: code
    blocks left out but for their comments (``# ...``); code spans, quotations and link targets
    blanked."""
    blocks: list[tuple[int, list[str]]] = []
    fence, code, after_blank, comment_line = "", False, True, 0
    for number, line in enumerate(markdown.splitlines(), 1):
        code = line.startswith(("    ", "\t")) and (after_blank or code)
        if fence and line.strip().startswith(fence):
            fence = ""
        elif fence or code:
            comment = re.search(r"(?:^|\s)#\s(.*)", line)
            whole = line.lstrip().startswith("#")  # a comment line, not a comment after code
            if comment and whole and comment_line == number - 1:
                blocks[-1][1].append(comment.group(1))
            elif comment:
                blocks.append((number, [comment.group(1)]))
            comment_line = number if comment and whole else 0
        elif line.lstrip().startswith(("```", "~~~")):
            fence = line.strip()[:3]
        elif not line.strip():
            after_blank = True
            continue
        elif after_blank or re.match(r"\s*(?:[#|]|[-*] |\d+\. )", line):  # heading, row, item
            blocks.append((number, [line]))
        else:
            blocks[-1][1].append(line)
        after_blank = False
    out = []
    for start, lines in blocks:
        text = "\n".join(lines)
        text = CODE_SPAN.sub(blank, text)
        text = re.sub(r'"[^"]*"|\u201c[^\u201d]*\u201d', blank, text)
        text = re.sub(r"\]\([^)]*\)", "]", text)
        out.append((start, text))
    return out


@dataclass
class Section:
    title: str
    level: int
    text: str = ""
    parent: Section | None = None

    def _own(self) -> tuple[list[str], list[str]]:
        spans = [m.group(2).strip() for m in CODE_SPAN.finditer(self.text)]
        return [s for s in spans if COMMAND.match(s)], DATE.findall(self.text)

    @property
    def commands(self) -> list[str]:
        own = self._own()[0]
        return own or (self.parent.commands if self.parent else [])

    @property
    def dates(self) -> list[str]:
        own = self._own()[1]
        return own or (self.parent.dates if self.parent else [])

    def figures(self) -> list[Figure]:
        """Its figures; a table cell that is a bare number takes the unit of its heading."""
        found: list[Figure] = []
        header: list[str] | None = None
        for start, text in prose(self.text):
            cells = [c.strip() for c in text.strip().strip("|").split("|")]
            if not text.startswith("|"):
                found += figures(text, start)
                header = None
            elif header is None:
                header = [table_unit(c) for c in cells]
            elif not all(set(c) <= set(":-") for c in cells):  # not the |---| row
                for cell, unit in zip(cells, header, strict=False):
                    bare = unit and re.fullmatch(NUM, cell)
                    found += figures(f"{cell} {unit}" if bare else cell, start)
        return found


def table_unit(heading: str) -> str:
    """The unit a table column's heading names, for cells that are bare numbers."""
    m = re.search(r"(?<!\w)(%|[KMGT]i?B|complexes/s|samples/s|steps)(?!\w)", heading)
    return m.group(1) if m else ""


def sections(markdown: str) -> list[Section]:
    out = [Section("(before the first heading)", 1)]
    fence = False
    for line in markdown.splitlines(keepends=True):
        fence ^= line.lstrip().startswith(("```", "~~~"))
        heading = None if fence else re.match(r"(#{2,3}) (.*)", line)
        if heading:
            level = len(heading.group(1))
            parent = next((s for s in reversed(out) if s.level < level), None)
            out.append(Section(heading.group(2).strip(), level, line, parent))
        else:
            out[-1].text += line
    return out


def stage_rules() -> list[Figure]:
    """The figures configs/stages.yaml sets: minutes per stage, the memory share, the tie."""
    rules = yaml.safe_load((REPO / "configs/stages.yaml").read_text())
    texts = [f"{rules['throughput_tie'] * 100:g} %"]
    texts += [
        f"{rules['memory_fraction'] * 100:g} %",
        f"{100 - rules['memory_fraction'] * 100:g} %",
    ]
    for stage in rules["stages"].values():
        texts += [f"{stage[k]} minutes" for k in ("target_minutes", "window_minutes") if k in stage]
    return [f for t in texts for f in figures(t)]


def settings() -> dict[str, list[tuple[Figure, str]]]:
    """SETTINGS by document, each figure with where it is set; an entry its file does not set
    is an error."""
    out: dict[str, list[tuple[Figure, str]]] = {}
    for doc, text, source, evidence in SETTINGS:
        if evidence not in (REPO / source).read_text():
            raise AssertionError(f"SETTINGS: {source} no longer has {evidence!r}")
        out.setdefault(doc, []).extend((f, f"{source}: {evidence}") for f in figures(text))
    return out


def unsourced(docs: dict[str, str], benchmarks: str) -> list[str]:
    """What breaks the rule, one line each: figures of ``docs`` (name -> Markdown) that no dated
    BENCHMARKS.md section with its command has, nor a setting; and stale SETTINGS entries."""
    sources = [(s, s.figures()) for s in sections(benchmarks)]
    defaults, known = stage_rules(), settings()
    problems, used = [], set()
    for name, markdown in docs.items():
        for start, text in prose(markdown):
            for fig in figures(text, start):
                setting = next((w for s, w in known.get(name, []) if fig.quotes(s)), None)
                if setting or any(fig.quotes(d) for d in defaults):
                    used.add((name, setting))
                    continue
                homes = [s for s, found in sources if any(fig.quotes(f) for f in found)]
                if any(s.commands and s.dates for s in homes):
                    continue
                why = "; ".join(
                    f"'{s.title}' has no {'command' if not s.commands else 'date'}" for s in homes
                )
                problems.append(f"{name}:{fig.line}: {fig.text}: {why or 'not in BENCHMARKS.md'}")
    for name, entries in known.items():
        problems += [
            f"SETTINGS: {name} no longer states {f.text} ({where})"
            for f, where in entries
            if name in docs and (name, where) not in used
        ]
    return problems


def documents() -> dict[str, str]:
    paths = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
    return {p.relative_to(REPO).as_posix(): p.read_text() for p in paths}


def test_every_figure_in_readme_and_docs_is_in_benchmarks():
    problems = unsourced(documents(), (REPO / "BENCHMARKS.md").read_text())
    assert not problems, "figures without a source in BENCHMARKS.md:\n" + "\n".join(problems)


def test_a_made_up_figure_in_the_readme_fails():
    docs = documents()
    docs["README.md"] += "\nOn this machine it takes 13.37 seconds and 987.65 MiB.\n"
    problems = unsourced(docs, (REPO / "BENCHMARKS.md").read_text())
    end = docs["README.md"].count("\n")
    assert problems == [
        f"README.md:{end}: 13.37 seconds: not in BENCHMARKS.md",
        f"README.md:{end}: 987.65 MiB: not in BENCHMARKS.md",
    ]


BENCH = """## Whole jobs

`python bench/optimize.py` (2026-11-25)

| run | wall | peak MiB |
|---|---:|---:|
| quick preset | 72 s | 229.0 |

64 complexes in 236.8 ms; the service answered 1971/s.
"""


@pytest.mark.parametrize(
    ("sentence", "sourced"),
    [
        ("The quick preset took 66 seconds here.", False),  # BENCH has 72 s
        ("The quick preset took 72 seconds here.", True),
        ("A training run takes 12 seconds.", False),
        ("The radius graph takes 0.25 s for 64 complexes.", False),  # 236.8 ms is 0.24 s
        ("The radius graph takes 0.24 s for 64 complexes.", True),
        ("Peak memory: 230 MiB.", False),  # 229.0 MiB, in a column headed MiB
        ("Peak memory: 229 MiB.", True),
        ("About 2,000 `GET /jobs/{id}` a second.", False),
        ("It answers 1,971 `GET /jobs/{id}` a second.", True),
        ("```bash\nstagetune train  # 12 seconds here\n```", False),
        ("```bash\nstagetune train --memory-budget 12GiB\n```", True),  # an option
        ("A prototyping cycle of 20 minutes.", True),  # configs/stages.yaml
    ],
)
def test_a_figure_is_sourced_only_by_a_benchmark_or_a_setting(sentence, sourced):
    assert (unsourced({"README.md": sentence}, BENCH) == []) is sourced


def test_a_figure_from_a_section_without_a_date_or_command_fails():
    bench = (
        "## Dated\n\n`python bench/x.py` (2026-12-01)\n\n| run | wall |\n|---|---:|\n| a | 7 s |\n"
    )
    assert unsourced({"README.md": "It took 7 seconds."}, bench) == []
    undated = bench.replace(" (2026-12-01)", "")
    assert unsourced({"README.md": "It took 7 seconds."}, undated) == [
        "README.md:1: 7 seconds: 'Dated' has no date"
    ]
    no_command = bench.replace("`python bench/x.py`", "by hand")
    assert unsourced({"README.md": "It took 7 seconds."}, no_command) == [
        "README.md:1: 7 seconds: 'Dated' has no command"
    ]
    sub = "## Parent\n\n`stagetune train` (2026-12-01)\n\n### Child\n\nIt took 9 s.\n"
    assert unsourced({"README.md": "It took 9 s."}, sub) == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("took 0.2 to 0.26 s", ["0.2 s", "0.26 s"]),
        ("5 or 6 training steps; 3 for one", ["5 training steps", "6 training steps"]),
        ("after 2, 4 and 8 s", ["2 s", "4 s", "8 s"]),
        ("1.11-1.28 s, 85.4%, 39.4x", ["1.11 s", "1.28 s", "85.4 %", "39.4 x"]),
        ("2.3 times faster, 1.40x larger", ["2.3 times", "1.40 x"]),
        (
            "1,971 `GET /jobs/{id}` a second, 64.6 complexes/s",
            ["1,971 a second", "64.6 complexes/s"],
        ),
        ("`--memory-budget 8GiB` and `stagetune probe` in 3 ms", ["3 ms"]),
        ('a 40-step cycle, 2-core, p99, 16ch, 1400x1000, "in the last 60 seconds"', []),
        ("16 x 1.68 GiB = 27 GiB, 7,098.0 MiB", ["1.68 GiB", "27 GiB", "7,098.0 MiB"]),
        ("text\n\n    $ stagetune probe --memory-budget 8 GiB\n\nafter", []),
        ("```bash\nstagetune train --epochs 5  # 12 seconds here\n```", ["12 seconds"]),
    ],
)
def test_what_is_a_figure(text, expected):
    assert [f.text for start, part in prose(text) for f in figures(part, start)] == expected


@pytest.mark.parametrize(
    ("quoted", "source", "same"),
    [
        ("0.24 s", "236.8 ms", True),
        ("6.9 GiB", "7,098.0 MiB", True),
        ("7.1 GB", "7,098.0 MiB", False),  # 7.4 GB
        ("66 s", "67 s", False),
        ("3.5 minutes", "210 s", True),
        ("6.9 %", "-6.9 %", True),
        ("2 MiB", "2 s", False),
    ],
)
def test_a_quote_is_the_source_rounded(quoted, source, same):
    (q,), (s,) = figures(quoted), figures(source)
    assert q.quotes(s) is same
