"""Role names live in policies/ only (issue 21): code speaks of actions.

Every decision about who may do what is `archive.core.authorise(policy, principal,
action, resource)` reading policies/access/actions.toml (and the HTTP gate reading
policies/access/routes.toml). No module of archive/ or plugins/ may hold a role name as a
value: not in a set, a comparison, a default or a table. (The words may appear in prose,
"ask school personnel", which decides nothing.)
"""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ALLOWED = {"archive/core/authorise.py"}


def _roles() -> set[str]:
    data = tomllib.loads((ROOT / "policies" / "access" / "actions.toml").read_text())
    return set(data["roles"])


def test_the_policy_names_the_roles():
    assert {"trainer", "registrar", "board_member"} <= _roles()


def test_no_role_name_as_a_value_in_code():
    roles = _roles()
    found = []
    for base in ("archive", "plugins"):
        for path in sorted((ROOT / base).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            if rel in ALLOWED:
                continue
            tree = ast.parse(path.read_text(encoding="utf-8"), filename=rel)
            for node in ast.walk(tree):
                if isinstance(node, ast.Constant) and isinstance(node.value, str):
                    if node.value.strip().lower() in roles:
                        found.append(f"{rel}:{node.lineno}: {node.value!r}")
    assert found == [], "role names in code (use an action of actions.toml):\n" + "\n".join(found)
