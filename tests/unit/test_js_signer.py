"""The JavaScript signer (docs/examples/edge-signer.mjs) against every signer-side vector.

It is written from docs/token-format.md alone, on Node's built-in crypto: each vector it
reproduces is a rule the document states well enough for another language. Node runs the
checker (docs/examples/check-vectors.mjs) once; each vector is one test here.
"""

from __future__ import annotations

import ipaddress
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from signer import Keyring, verify_url

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "docs" / "examples"
VECTORS = ROOT / "docs" / "vectors"
NODE = shutil.which("node")
NO_NODE = "node is not installed (Debian package nodejs; scripts/bootstrap.sh installs it as root)"

#: The vector files a signer is checked against, and what names each entry there.
SIGNER_FILES = {
    "valid.json": "name",
    "unsignable.json": "name",
    "content-disposition.json": "filename",
    "keyrings.json": "name",
    "window.json": "name",
}
CASES = [
    (filename, entry[key])
    for filename, key in SIGNER_FILES.items()
    for entry in json.loads((VECTORS / filename).read_text(encoding="utf-8"))
]


@pytest.fixture(scope="module")
def outcomes() -> dict[str, dict[str, str | None]]:
    if NODE is None:
        pytest.skip(NO_NODE)
    finished = subprocess.run(
        [NODE, str(EXAMPLES / "check-vectors.mjs"), str(VECTORS), "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert finished.returncode in (0, 1), finished.stderr
    results: dict[str, dict[str, str | None]] = json.loads(finished.stdout)
    return results


@pytest.mark.parametrize(("filename", "name"), CASES, ids=[f"{f}:{n!r}" for f, n in CASES])
def test_the_javascript_signer_meets_the_vector(
    outcomes: dict[str, dict[str, str | None]], filename: str, name: str
) -> None:
    assert name in outcomes[filename], "the checker skipped this vector"
    assert outcomes[filename][name] is None


def test_the_checker_checks_exactly_the_published_vectors(
    outcomes: dict[str, dict[str, Any]],
) -> None:
    published = {(f, n) for f, n in CASES}
    checked = {(f, n) for f, names in outcomes.items() for n in names}
    assert checked == published


def test_the_checker_fails_on_a_vector_the_signer_does_not_meet(tmp_path: Path) -> None:
    """The check can fail: one changed byte in a published URL is one failure."""
    if NODE is None:
        pytest.skip(NO_NODE)
    for path in VECTORS.glob("*.json"):
        (tmp_path / path.name).write_text(path.read_text(encoding="utf-8"), encoding="utf-8")
    valid = json.loads((tmp_path / "valid.json").read_text(encoding="utf-8"))
    valid[0]["signed_target"] = valid[0]["signed_target"].replace("Expires=1", "Expires=2")
    (tmp_path / "valid.json").write_text(json.dumps(valid), encoding="utf-8")
    finished = subprocess.run(
        [NODE, str(EXAMPLES / "check-vectors.mjs"), str(tmp_path), "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert finished.returncode == 1
    failures = [
        (f, n) for f, names in json.loads(finished.stdout).items() for n, v in names.items() if v
    ]
    assert failures == [("valid.json", valid[0]["name"])]


def test_the_readme_example_signs_links_that_verify(tmp_path: Path) -> None:
    """The README's JavaScript example, run as written, against the vector keyring."""
    if NODE is None:
        pytest.skip(NO_NODE)
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    example = readme.split("**From JavaScript**", 1)[1].split("```js\n", 1)[1].split("```", 1)[0]
    shutil.copy(EXAMPLES / "edge-signer.mjs", tmp_path / "edge-signer.mjs")
    shutil.copy(VECTORS / "PUBLIC-test-vector-keyring.json", tmp_path / "keys.json")
    script = tmp_path / "example.mjs"
    script.write_text(example + "console.log(JSON.stringify([url, hls]));\n", encoding="utf-8")
    finished = subprocess.run(
        [NODE, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=60, check=True
    )
    url, hls = json.loads(finished.stdout)
    keyring = Keyring.load(tmp_path / "keys.json")
    client = ipaddress.ip_address("203.0.113.9")
    assert verify_url(url, keyring, client_ip=client).claims.sub == "user-42"
    segment = hls.replace("/hls/ep1/master.m3u8", "/hls/ep1/720p/seg001.ts")
    assert verify_url(segment, keyring).path == "/hls/ep1/720p/seg001.ts"
