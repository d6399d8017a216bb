"""The docs hold together: their links stay inside the repository and reach real files, and docs/api.md names
every route the app serves and no route it does not (outside the sections marked planned)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import unquote

from starlette.routing import Route

from relay.app import create_app
from tests.conftest import make_settings

REPO = Path(__file__).resolve().parents[2]
API_DOC = REPO / "docs" / "api.md"
PLANNED = "**Planned (not in this release yet).**"

_FENCED_BLOCK = re.compile(r"^[ \t]*(```|~~~).*?^[ \t]*\1", re.MULTILINE | re.DOTALL)
_CODE_SPAN = re.compile(r"`[^`\n]*`")
_INLINE_LINK = re.compile(r"\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_REFERENCE_LINK = re.compile(r"^[ ]{0,3}\[[^\]]+\]:[ \t]*<?([^\s>]+)>?", re.MULTILINE)
_WEB = re.compile(r"^(?:https?:|mailto:)", re.IGNORECASE)
_ANY_SCHEME = re.compile(r"^[a-z][a-z0-9+.-]*:", re.IGNORECASE)
_METHODS = "GET|POST|PUT|PATCH|DELETE"
_DOCUMENTED_ROUTE = re.compile(rf"(?<![A-Za-z])({_METHODS}) (/[^\s`?)#]*)")


def documents() -> list[Path]:
    """The markdown files whose links must hold: README.md, docs/*.md and deploy/README.md when present."""
    found = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
    deploy = REPO / "deploy" / "README.md"
    return [*found, deploy] if deploy.exists() else found


def link_targets(markdown: str) -> list[str]:
    """Every inline and reference link target of `markdown`, leaving out code, where brackets mean no link."""
    prose = _CODE_SPAN.sub("", _FENCED_BLOCK.sub("", markdown))
    return _INLINE_LINK.findall(prose) + _REFERENCE_LINK.findall(prose)


def link_problems(document: Path, root: Path) -> list[str]:
    """What is wrong with each relative link of `document`: it leaves `root`, is absolute, reaches nothing."""
    problems = []
    for target in link_targets(document.read_text(encoding="utf-8")):
        if _WEB.match(target):
            continue
        where = f"{document.relative_to(root)}: link {target!r}"
        if _ANY_SCHEME.match(target):
            problems.append(f"{where} is neither a web address nor a file of the repository")
            continue
        path = unquote(target.split("#", 1)[0].split("?", 1)[0])
        if not path:  # an anchor in the same page
            continue
        if path.startswith("/"):
            problems.append(f"{where} is absolute; write it relative to the document")
            continue
        resolved = (document.parent / path).resolve()
        if not resolved.is_relative_to(root):
            problems.append(f"{where} leaves the repository")
        elif not resolved.exists():
            problems.append(f"{where} points at no file")
    return problems


def served_routes(tmp_path: Path) -> list[Route]:
    """The app's HTTP routes, as create_app builds them from test settings (nothing is opened)."""
    app = create_app(make_settings(tmp_path), background=False)
    return [route for route in app.routes if isinstance(route, Route)]


def route_names(routes: Iterable[Route]) -> list[str]:
    """`METHOD /path` of each route and method (HEAD comes with GET)."""
    return [
        f"{method} {route.path}" for route in routes for method in sorted((route.methods or set()) - {"HEAD"})
    ]


def undocumented(routes: Iterable[Route], doc: str) -> list[str]:
    """The routes `doc` never names as `METHOD /path` (a longer path that starts alike does not count)."""
    missing = []
    for name in route_names(routes):
        if re.search(rf"(?<![A-Za-z]){re.escape(name)}(?![\w/{{-])", doc) is None:
            missing.append(name)
    return missing


def current_sections(doc: str) -> str:
    """`doc` less the `## ` sections marked planned on the line under their heading: what is claimed now."""
    sections = re.split(r"^(?=## )", doc, flags=re.MULTILINE)
    return "".join(s for s in sections if s.splitlines()[1:2] != [PLANNED])


def not_served(routes: Iterable[Route], doc: str) -> list[str]:
    """`METHOD /path` mentions in `doc` that no route serves (paths with `{params}` or example values)."""
    routes = list(routes)
    claimed = []
    for method, path in _DOCUMENTED_ROUTE.findall(doc):
        served = any(method in (r.methods or ()) and r.path_regex.match(path) for r in routes)
        if not served:
            claimed.append(f"{method} {path}")
    return claimed


def test_every_link_in_the_docs_stays_in_the_repository_and_reaches_a_file() -> None:
    """README.md, docs/*.md and deploy/README.md link only files that exist inside the repository."""
    docs = documents()
    assert API_DOC in docs
    problems = [problem for document in docs for problem in link_problems(document, REPO)]
    assert problems == []


def test_the_readme_links_the_api_contract() -> None:
    """README.md points readers at docs/api.md for the contract."""
    assert "docs/api.md" in link_targets((REPO / "README.md").read_text(encoding="utf-8"))


def test_the_link_check_finds_links_that_escape_or_reach_nothing(tmp_path: Path) -> None:
    """Links out of the repository, absolute or file: links and a missing file are each reported; web links,
    anchors, existing files and bracketed code are not."""
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "there.md").write_text("# there\n")
    document = tmp_path / "README.md"
    document.write_text(
        "[contract](../shared/API.md) [deep](docs/../../x.md) [abs](/etc/passwd) [file](file:///etc/passwd)\n"
        "[gone](docs/missing.md#top)\n[ref]: ../outside.md\n"
        "[ok](docs/there.md#there) [anchor](#top) [web](https://example.com/a.md) `[code](../no.md)`\n"
        "```\n[fenced](../no.md)\n```\n"
    )
    problems = link_problems(document, tmp_path)
    assert len(problems) == 6, problems
    assert sum("leaves the repository" in p for p in problems) == 3
    assert sum("points at no file" in p for p in problems) == 1


def test_every_served_route_is_in_the_api_reference(tmp_path: Path) -> None:
    """Each METHOD and path the app routes is named in docs/api.md, so a new route without docs fails here."""
    routes = served_routes(tmp_path)
    assert "POST /v1/deliveries/{id}/retry" in route_names(routes)
    assert undocumented(routes, current_sections(API_DOC.read_text(encoding="utf-8"))) == []


def test_the_route_check_finds_a_route_left_out(tmp_path: Path) -> None:
    """Removing a route's mention from the reference is caught, even when a longer path still starts alike."""
    doc = API_DOC.read_text(encoding="utf-8")
    routes = served_routes(tmp_path)
    for name in ("GET /v1/subscriptions/{id}", "GET /v1/jobs"):
        stripped = re.sub(rf"{re.escape(name)}(?![\w/{{-])", "(removed)", doc)
        assert undocumented(routes, current_sections(stripped)) == [name]


def test_the_api_reference_claims_no_route_that_is_not_served(tmp_path: Path) -> None:
    """Outside the sections marked planned, every `METHOD /path` in docs/api.md is a route the app serves."""
    doc = API_DOC.read_text(encoding="utf-8")
    routes = served_routes(tmp_path)
    assert not_served(routes, current_sections(doc)) == []
    assert not_served(routes, "`POST /v1/jobs/{source}/{job_id}/cancel`") == []
    assert not_served(routes, "`POST /v1/jobs/{source}/{job_id}/pause`") == [
        "POST /v1/jobs/{source}/{job_id}/pause"
    ]
