"""Refresh the console's zh-CN catalogue: extract the messages, keep the .po's translations, compile the .mo.

Run from the repository root: ``python scripts/console_zh.py``.  Translate in
``src/suanwang/web/locale/zh_CN/LC_MESSAGES/messages.po``; a message without a translation there fails the
run (and the test that runs it), so no English slips into the Chinese console unnoticed.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

from babel.messages.catalog import Catalog
from babel.messages.mofile import read_mo, write_mo
from babel.messages.pofile import read_po, write_po

OUT = Path("src/suanwang/web/locale/zh_CN/LC_MESSAGES")


def main() -> int:
    pot = Path(tempfile.mkdtemp()) / "messages.pot"
    subprocess.run([sys.executable, "-m", "babel.messages.frontend", "extract", "-F", "babel.cfg", "-k", "N_",
                    "-k", "_", "--no-location", "--sort-output", "--omit-header", "-o", str(pot), "."],
                   check=True, capture_output=True)
    with pot.open("rb") as f:
        template = read_po(f)
    with (OUT / "messages.po").open("rb") as f:
        zh = {str(m.id): str(m.string) for m in read_po(f) if m.id and m.string}
    catalog = Catalog(locale="zh_CN", project="suanwang", charset="utf-8")
    missing = [m.id for m in template if m.id and m.id not in zh]
    for m in missing:
        print(f"untranslated: {m!r}", file=sys.stderr)
    for m in template:
        if m.id:
            catalog.add(m.id, zh.get(str(m.id), ""))
    if "--check" in sys.argv:  # the test's mode: compare with the shipped .mo, write nothing
        with (OUT / "messages.mo").open("rb") as f:
            shipped = {str(m.id): str(m.string) for m in read_mo(f) if m.id}
        stale = shipped != {str(m.id): str(m.string) for m in catalog if m.id}
        if stale:
            print("the shipped messages.mo differs from the .po: run scripts/console_zh.py", file=sys.stderr)
        return 1 if missing or stale else 0
    OUT.mkdir(parents=True, exist_ok=True)
    with (OUT / "messages.po").open("wb") as f:
        write_po(f, catalog, omit_header=False, sort_output=True, width=120)
    with (OUT / "messages.mo").open("wb") as f:
        write_mo(f, catalog)
    return 1 if missing else 0


if __name__ == "__main__":
    raise SystemExit(main())
