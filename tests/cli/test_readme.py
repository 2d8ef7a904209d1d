"""The README's Python API block runs as written."""
import os
import re

from conftest import ROOT


def test_python_api_block_runs(tmp_path, monkeypatch, capsys):
    text = open(os.path.join(ROOT, 'README.md')).read()
    section = text[text.index('## Python API'):]
    block = re.search(r'```python\n(.*?)```', section, re.S).group(1)
    monkeypatch.chdir(tmp_path)
    exec(compile(block, 'README.md', 'exec'), {})
    out = capsys.readouterr().out
    assert "'videopose'" in out and '(100, 17, 3)' in out
    assert (tmp_path / 'output' / 'api_demo.pt').exists()
