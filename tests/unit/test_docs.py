"""The documents name exactly what the code has (one source of truth): settings, format version."""

from __future__ import annotations

import re
from pathlib import Path

from gateway.settings import ENV_NAMES
from signer import FORMAT_VERSION

ROOT = Path(__file__).resolve().parents[2]


def test_the_gateway_guide_documents_every_setting_and_no_other() -> None:
    text = (ROOT / "docs" / "gateway.md").read_text()
    mentioned = set(re.findall(r"GATEWAY_[A-Z0-9_]+", text))
    assert mentioned == ENV_NAMES


def test_the_signers_say_the_format_version_the_spec_has() -> None:
    spec = re.search(r"Version \*\*([0-9.]+)\*\*", (ROOT / "docs" / "token-format.md").read_text())
    script = (ROOT / "docs" / "examples" / "edge-signer.mjs").read_text()
    in_script = re.search(r'export const FORMAT_VERSION = "([0-9.]+)"', script)
    assert spec is not None
    assert in_script is not None
    assert FORMAT_VERSION == spec.group(1) == in_script.group(1)
