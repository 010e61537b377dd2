"""Route policy: role-by-route matrix over every Orthanc 1.10.1 core route and the
archive's routes, the never-allowed egress routes, and fail-closed loading."""

from __future__ import annotations

import copy
import json
import tomllib

import pytest

from archive.access import (
    ROLES,
    PolicyError,
    Principal,
    decide,
    load_route_policy,
    parse_route_policy,
)
from archive.paths import POLICIES_DIR

POLICY = load_route_policy(POLICIES_DIR)
RAW = tomllib.loads((POLICIES_DIR / "access" / "routes.toml").read_text())
ORTHANC_ROUTES = [
    (r["method"], r["uri"])
    for r in json.loads((POLICIES_DIR / "access" / "orthanc-1.10.1-routes.json").read_text())[
        "routes"
    ]
]
SAMPLE = {
    "{id}": "6b9e19d9-62094390-5f9ddb01-4a191ae7-9766b715",
    "{name}": "dicom",
    "{frame}": "0",
    "{index}": "0",
    "{key}": "archive",
}


def concrete(uri: str) -> str:
    for k, v in SAMPLE.items():
        uri = uri.replace(k, v)
    return uri


def who(roles: tuple[str, ...], trained: bool = True) -> Principal:
    return Principal(user="u", roles=roles, trained=trained)


# The only Orthanc core routes any role may call directly: the specification this
# policy must keep (a test, not a mirror: the policy file is read, this list is not).
ORTHANC_ALLOWED = {
    ("personnel", "GET", "/system"),
    ("personnel", "GET", "/statistics"),
    ("personnel", "GET", "/tools/now"),
    ("personnel", "POST", "/instances"),
}

# The brief's egress list (plus the rest of Orthanc's file/pixel routes).
EGRESS = [
    ("GET", "/instances/{id}/file"),
    ("GET", "/instances/{id}/attachments/dicom/data"),
    ("GET", "/instances/{id}/attachments/dicom/compressed-data"),
    ("GET", "/studies/{id}/archive"),
    ("POST", "/studies/{id}/archive"),
    ("GET", "/studies/{id}/media"),
    ("GET", "/patients/{id}/archive"),
    ("GET", "/series/{id}/archive"),
    ("GET", "/series/{id}/media"),
    ("POST", "/tools/create-archive"),
    ("POST", "/tools/create-media"),
    ("POST", "/tools/create-media-extended"),
    ("POST", "/tools/find"),
    ("POST", "/modalities/{id}/store"),
    ("POST", "/modalities/{id}/move"),
    ("PUT", "/modalities/{id}"),
    ("POST", "/peers/{id}/store"),
    ("POST", "/tools/execute-script"),
    ("GET", "/jobs/{id}/archive"),
    ("GET", "/jobs/{id}/media"),
    ("GET", "/wado"),
    ("GET", "/dicom-web/studies/{id}"),
    ("GET", "/instances/{id}/frames/0/raw"),
    ("GET", "/instances/{id}/frames/0/rendered"),
    ("GET", "/instances/{id}/preview"),
    ("GET", "/instances/{id}/image-uint8"),
    ("GET", "/instances/{id}/numpy"),
    ("GET", "/instances/{id}/content/7fe0-0010"),
    ("POST", "/queries/{id}/retrieve"),
    ("POST", "/instances/{id}/export"),
]

# The roles of people at the HTTP API: every role of actions.toml but the unattended
# workstation account, which acts only over DICOM (routes.toml opens nothing to it).
PEOPLE = set(ROLES) - {"suite_workstation"}

# Archive routes: (method, uri) -> roles allowed when trained.
ARCHIVE = {
    ("GET", "/teaching/me"): PEOPLE,
    ("GET", "/teaching/cases"): PEOPLE - {"board_member"},
    ("GET", "/teaching/cases/NSR-2025-000001"): PEOPLE - {"board_member"},
    ("PUT", "/teaching/cases/NSR-2025-000001"): {"personnel", "trainer"},
    ("DELETE", "/teaching/cases/NSR-2025-000001"): set(),
    ("GET", "/teaching/cases/NSR-2025-000001/thumbnail"): PEOPLE - {"board_member"},
    ("GET", "/teaching/collections"): PEOPLE - {"board_member"},
    ("POST", "/teaching/collections"): {"personnel", "trainer"},
    ("POST", "/teaching/pulls"): {"personnel", "trainer", "registrar", "other_speciality"},
    ("POST", "/teaching/removals"): {"personnel", "trainer", "registrar", "other_speciality"},
    ("POST", "/teaching/removals/R1/approve"): {"head_of_school", "tpd"},
    ("GET", "/teaching/removals/R1/download"): {
        "personnel",
        "head_of_school",
        "tpd",
        "trainer",
        "registrar",
        "other_speciality",
    },
    ("POST", "/teaching/shares"): {"board_member"},
    ("POST", "/teaching/shares/S1/decide"): {"board_member"},
    ("POST", "/teaching/shares/S1/execute"): {"personnel"},
    ("GET", "/teaching/audit"): {"personnel", "head_of_school", "board_member"},
    ("POST", "/teaching/quarantine/Q1/release"): {"personnel"},
    ("GET", "/teaching/quarantine/Q1/preview"): {"personnel"},
    ("POST", "/teaching/applications/A1/approve"): {"personnel", "head_of_school"},
    ("GET", "/teaching/health"): set(ROLES),  # anonymous: everyone
    ("POST", "/teaching/health"): set(),
    ("GET", "/teaching"): set(),
    ("GET", "/teachingx/cases"): set(),
}
IMAGE_ROUTES = {
    ("GET", "/teaching/cases/NSR-2025-000001/thumbnail"),
    ("POST", "/teaching/pulls"),
    ("GET", "/teaching/removals/R1/download"),
    ("POST", "/teaching/shares/S1/execute"),
    ("GET", "/teaching/quarantine/Q1/preview"),
}


def test_orthanc_route_list_is_complete() -> None:
    assert len(ORTHANC_ROUTES) == 274
    assert ("GET", "/instances/{id}/file") in ORTHANC_ROUTES


@pytest.mark.parametrize("role", ROLES)
def test_every_orthanc_core_route_for_every_role(role: str) -> None:
    opened = {
        (m, u) for m, u in ORTHANC_ROUTES if decide(POLICY, who((role,)), m, concrete(u)).allowed
    }
    assert opened == {(m, u) for r, m, u in ORTHANC_ALLOWED if r == role}


def test_all_roles_together_open_only_the_allowed_orthanc_routes() -> None:
    everyone = who(ROLES)
    opened = {(m, u) for m, u in ORTHANC_ROUTES if decide(POLICY, everyone, m, concrete(u)).allowed}
    assert opened == {(m, u) for _, m, u in ORTHANC_ALLOWED}


def test_no_orthanc_core_route_for_anonymous() -> None:
    for method, uri in ORTHANC_ROUTES:
        assert not decide(POLICY, None, method, concrete(uri)).allowed, (method, uri)


@pytest.mark.parametrize(("method", "uri"), EGRESS)
def test_egress_routes_denied_to_everyone(method: str, uri: str) -> None:
    for principal in [None, who(ROLES), *[who((r,)) for r in ROLES]]:
        d = decide(POLICY, principal, method, concrete(uri))
        assert not d.allowed
        assert d.reason.startswith("image-egress"), (method, uri, d)


def test_every_orthanc_file_or_pixel_route_is_in_the_never_list() -> None:
    markers = (
        "/file",
        "archive",
        "media",
        "attachments",
        "frames",
        "preview",
        "rendered",
        "image-",
        "numpy",
        "matlab",
        "/pdf",
        "content",
        "/modalities",
        "/peers",
        "execute-script",
        "create-archive",
        "/tools/find",
        "/queries",
        "{id}/export",
    )
    for method, uri in ORTHANC_ROUTES:
        if any(m in uri for m in markers):
            d = decide(POLICY, who(ROLES), method, concrete(uri))
            assert d.reason.startswith("image-egress"), (method, uri)


@pytest.mark.parametrize(("method", "uri"), sorted(ARCHIVE))
def test_archive_routes_role_matrix(method: str, uri: str) -> None:
    expected = ARCHIVE[(method, uri)]
    for role in ROLES:
        d = decide(POLICY, who((role,)), method, uri)
        assert d.allowed == (role in expected), (role, method, uri, d)
        if d.allowed:
            assert d.rule and d.rule.split(":")[0] in (role, "anonymous")


@pytest.mark.parametrize(("method", "uri"), sorted(ARCHIVE))
def test_untrained_users_get_no_images(method: str, uri: str) -> None:
    for role in ROLES:
        d = decide(POLICY, who((role,), trained=False), method, uri)
        if (method, uri) in IMAGE_ROUTES or role in POLICY.roles_requiring_training:
            if uri != "/teaching/health":
                assert not d.allowed, (role, method, uri)
        else:
            assert d.allowed == (role in ARCHIVE[(method, uri)]), (role, method, uri)


def test_untrained_denial_says_why() -> None:
    d = decide(POLICY, who(("registrar",), trained=False), "GET", "/teaching/cases")
    assert not d.allowed and "training" in d.reason
    d = decide(POLICY, who(("personnel",), trained=False), "GET", "/teaching/cases/X/thumbnail")
    assert not d.allowed and "training" in d.reason
    assert decide(POLICY, who(("personnel",), trained=False), "GET", "/teaching/cases").allowed


def test_anonymous_only_health() -> None:
    assert decide(POLICY, None, "GET", "/teaching/health").allowed
    d = decide(POLICY, None, "GET", "/teaching/cases")
    assert not d.allowed and d.reason == "authentication required"


@pytest.mark.parametrize(
    "uri",
    [
        "/instances/abc/%66ile",
        "/teaching/../instances/x/file",
        "/teaching/cases/../../system",
        "//instances/x/file",
        "/teaching/cases/./x",
        "/teaching\\cases",
        "/teaching/cases\x00",
        "teaching/cases",
    ],
)
def test_unplain_uris_are_refused(uri: str) -> None:
    d = decide(POLICY, who(ROLES), "GET", uri)
    assert not d.allowed and "malformed" in d.reason


def test_case_variants_of_egress_routes_are_denied() -> None:
    d = decide(POLICY, who(ROLES), "GET", "/Instances/x/FILE")
    assert not d.allowed and d.reason.startswith("image-egress")


def test_query_string_and_trailing_slash() -> None:
    p = who(("personnel",))
    assert decide(POLICY, p, "GET", "/system/").allowed
    assert decide(POLICY, p, "GET", "/teaching/cases?q=pneumothorax&page=2").allowed
    assert not decide(POLICY, p, "GET", "/instances/x/file?x=/system").allowed


@pytest.mark.parametrize(
    "rule",
    [
        "GET /instances/*/file",
        "GET /instances/**",
        "* /studies/*/*",
        "GET /**",
        "POST /tools/find",
        "GET,POST /modalities/*/store",
        "GET /dicom-web/studies",
        "GET /wado",
    ],
)
def test_policy_opening_an_egress_route_fails_to_load(rule: str) -> None:
    raw = copy.deepcopy(RAW)
    raw["roles"]["trainer"]["allow"].append(rule)
    with pytest.raises(PolicyError, match="never-allowed"):
        parse_route_policy(raw)


def test_harmless_extra_rule_loads() -> None:
    raw = copy.deepcopy(RAW)
    raw["roles"]["trainer"]["allow"].append("GET /instances/*/statistics")
    policy = parse_route_policy(raw)
    assert decide(policy, who(("trainer",)), "GET", "/instances/x/statistics").allowed


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda r: r.pop("version"), "version"),
        (lambda r: r["roles"].__setitem__("janitor", {"allow": []}), "unknown role"),
        (lambda r: r["never"].__setitem__("routes", []), "never"),
        (lambda r: r["roles"]["trainer"]["allow"].append("FETCH /teaching/x"), "method"),
        (lambda r: r["roles"]["trainer"]["allow"].append("GET teaching/x"), "start with"),
        (lambda r: r["roles"]["trainer"]["allow"].append("GET /a/**/b"), "only end"),
        (lambda r: r["anonymous"]["allow"].append("GET /teaching/pulls"), "touches images"),
    ],
)
def test_malformed_policy_fails_closed(change, message: str) -> None:
    raw = copy.deepcopy(RAW)
    change(raw)
    with pytest.raises(PolicyError, match=message):
        parse_route_policy(raw)


def test_missing_policy_file(tmp_path) -> None:
    with pytest.raises(PolicyError, match="missing"):
        load_route_policy(tmp_path)


def test_roles_come_from_the_action_policy(tmp_path) -> None:
    """Issue 21: the role list is policies/access/actions.toml's; routes.toml is checked
    against the action policy beside it (no role names in code)."""
    import shutil

    from archive.access import load_route_policy
    from archive.core import load_action_policy

    assert tuple(ROLES) == load_action_policy(POLICIES_DIR).roles
    access = tmp_path / "access"
    shutil.copytree(POLICIES_DIR / "access", access)
    actions = (access / "actions.toml").read_text()
    # an action policy without the tpd role: routes.toml's [roles.tpd] is now unknown
    trimmed = actions.replace('  "tpd",\n', "", 1).replace('"tpd", ', "").replace(', "tpd"', "")
    (access / "actions.toml").write_text(trimmed)
    with pytest.raises(PolicyError, match="unknown role"):
        load_route_policy(tmp_path)


def test_the_application_role_and_its_approvers_come_from_the_action_policy(tmp_path) -> None:
    """Issue 21: which role an approved application grants, and who approves, is data."""
    import shutil

    from archive.access.policy import application_approvers, application_role

    assert application_role() == "other_speciality"
    assert application_approvers() == {"personnel", "head_of_school"}
    shutil.copytree(POLICIES_DIR / "access", tmp_path / "access")
    actions = tmp_path / "access" / "actions.toml"
    text = actions.read_text()
    actions.write_text(text.replace('grants = "other_speciality"', 'grants = "registrar"'))
    assert application_role(tmp_path) == "registrar"
    actions.write_text(text.replace('grants = "other_speciality"', 'grants = "wizard"'))
    with pytest.raises(PolicyError, match="grants"):
        application_role(tmp_path)
