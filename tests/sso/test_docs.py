"""docs/sso.md stays true: its variables are settings, and every single sign-on setting is in its table."""

from __future__ import annotations

import re
from pathlib import Path

from faramesh.config import SETTINGS

DOC = (Path(__file__).resolve().parents[2] / "docs" / "sso.md").read_text()


def test_every_variable_in_the_guide_is_a_setting() -> None:
    known = {s.env for s in SETTINGS}
    named = set(re.findall(r"\bFARAMESH_[A-Z_]+[A-Z]\b", DOC))
    assert named and named <= known, sorted(named - known)


def test_every_single_sign_on_setting_is_in_the_guides_table() -> None:
    table = DOC.split("## Settings", 1)[1].split("\n## ", 1)[0]
    rows = set(re.findall(r"^\| `(FARAMESH_\w+)` \|", table, re.M))
    wanted = {s.env for s in SETTINGS if s.env.startswith("FARAMESH_OIDC_")}
    wanted |= {"FARAMESH_DASHBOARD_KEY_LOGIN", "FARAMESH_SESSION_LIFETIME", "FARAMESH_PUBLIC_URL"}
    assert wanted <= rows, sorted(wanted - rows)
