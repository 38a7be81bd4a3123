"""The example programs (examples/*.py, typical multiprocessing programs)
give the same output with multiprocessing and, after changing only the
import line marked `# shmprim: ...`, with shmprim."""
import pathlib
import re
import subprocess
import sys

import pytest

EXAMPLES = sorted((pathlib.Path(__file__).parent.parent / "examples").glob("*.py"))
MARK = re.compile(r"^(?P<code>.*?)\s*# shmprim: (?P<alt>.*)$")


def with_shmprim(src):
    out, changed = [], 0
    for line in src.splitlines():
        m = MARK.match(line)
        if m:
            out.append(m["alt"])
            changed += 1
        else:
            out.append(line)
    assert changed == 1, "exactly one import line changes"
    return "\n".join(out) + "\n"


def run(src, tmp_path, name):
    path = tmp_path / name
    path.write_text(src)
    r = subprocess.run([sys.executable, str(path)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return r.stdout


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.stem)
def test_example_same_output(example, tmp_path):
    src = example.read_text()
    expected = run(src, tmp_path, "mp_" + example.name)
    got = run(with_shmprim(src), tmp_path, "shm_" + example.name)
    assert expected and got == expected
