"""Every Python example in the README and docs/ runs as written, on real data.

The examples name placeholder paths (a point-robot root at /tmp/pr-root or /tmp/pr-data, a
cheetah-vel family at ROOT/cheetah-vel); the test points them at a root it writes, and at its own
temporary directory for what they save. Nothing else in the code is changed.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from helpers import write_root

REPO = Path(__file__).parent.parent
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
BLOCK = re.compile(r"^```python\n(.*?)^```", re.M | re.S)


def examples() -> list[tuple[str, str]]:
    found = []
    for doc in DOCS:
        text = doc.read_text()
        for match in BLOCK.finditer(text):
            line = text[: match.start()].count("\n") + 1
            found.append((f"{doc.relative_to(REPO)}:{line}", match.group(1)))
    return found


EXAMPLES = examples()


def test_the_docs_have_python_examples() -> None:
    """The reader below finds the examples (README: tasks, data, math, training)."""
    names = [name for name, _ in EXAMPLES]
    assert sum(n.startswith("README.md") for n in names) >= 4, names
    assert any(n.startswith("docs/data-format.md") for n in names), names


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A point-robot root with every task of the default split and enough rows for the
    default batches at the default stride (256 x 7): 90 random-policy episodes of 20 steps."""
    path = tmp_path_factory.mktemp("docs") / "root"
    write_root(path, task_ids=tuple(range(40)), episodes=90, rows_per_part=2000)
    return path


@pytest.mark.timeout(300)
@pytest.mark.parametrize(("where", "code"), EXAMPLES, ids=[name for name, _ in EXAMPLES])
def test_example_runs_as_written(
    where: str, code: str, root: Path, tmp_path: Path, ray_local: None
) -> None:
    places = {
        "/tmp/pr-root": str(root),
        "/tmp/pr-data": str(root),
        "ROOT/cheetah-vel": str(root / "point-robot"),
        "/tmp/macaw-ckpt": str(tmp_path / "checkpoint"),
    }
    for placeholder, path in places.items():
        code = code.replace(placeholder, path)
    exec(compile(code, where, "exec"), {"__name__": "__docs__"})
