"""The package declares Apache-2.0; the repository carries that licence's full text."""

from __future__ import annotations

import hashlib
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

SECTIONS = ("1. Definitions.", "2. Grant of Copyright License.", "3. Grant of Patent License.",
            "4. Redistribution.", "5. Submission of Contributions.", "6. Trademarks.",
            "7. Disclaimer of Warranty.", "8. Limitation of Liability.",
            "9. Accepting Warranty or Additional Liability.")


def test_the_license_file_is_the_full_apache_2_0_text() -> None:
    text = (ROOT / "LICENSE").read_text()
    assert text.split()[:5] == ["Apache", "License", "Version", "2.0,", "January"]
    for heading in SECTIONS:
        assert heading in text
    assert "END OF TERMS AND CONDITIONS" in text
    assert "APPENDIX: How to apply the Apache License to your work." in text
    # The canonical https://www.apache.org/licenses/LICENSE-2.0.txt, byte for byte.
    digest = hashlib.md5((ROOT / "LICENSE").read_bytes(), usedforsecurity=False).hexdigest()
    assert digest == "3b83ef96387f14655fc854ddc3c6bd57"


def test_the_package_declares_the_same_license() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["license"] == "Apache-2.0"
