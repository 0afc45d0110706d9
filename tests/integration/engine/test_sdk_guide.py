"""The complete example of docs/sdk.md runs as written."""

from __future__ import annotations

import re
import runpy
import sys
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[3] / "docs" / "sdk.md"


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_sdk_guide_example_runs(db_url: str, tmp_path, capsys, monkeypatch) -> None:
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text("utf-8"), re.S)
    (tmp_path / "orders.py").write_text(blocks[1])
    main = blocks[2].replace('"sqlite:///orders.db"', repr(db_url))
    (tmp_path / "main.py").write_text(main)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    try:
        runpy.run_path(str(tmp_path / "main.py"), run_name="__main__")
    finally:
        sys.modules.pop("orders", None)
    out = capsys.readouterr().out
    assert "'reservation': 'reservation-o-1'" in out
    assert "'parcel': 'parcel-o-1'" in out
    assert "charge-order-o-1/" in out
