"""The documents name exactly the settings the code has (one source of truth)."""

from __future__ import annotations

import re
from pathlib import Path

from gateway.settings import ENV_NAMES

ROOT = Path(__file__).resolve().parents[2]


def test_the_gateway_guide_documents_every_setting_and_no_other() -> None:
    text = (ROOT / "docs" / "gateway.md").read_text()
    mentioned = set(re.findall(r"GATEWAY_[A-Z0-9_]+", text))
    assert mentioned == ENV_NAMES
