"""Web UI fuzzing: hypothesis posts random and hostile values, with a valid CSRF token, to every form (and
hostile query parameters and path segments to the pages). No answer is a 5xx, a refused post writes nothing,
and login/logout only ever redirect to a path on this site. RULEGATE_FUZZ_LONG=1 runs 20 times more."""
from __future__ import annotations

import re
import uuid
from urllib.parse import quote, urlsplit

import pytest
from hypothesis import given
from hypothesis import strategies as st

from .conftest import PASSWORD, KeyspaceWatch, split_rule
from .test_fuzz import fuzz_settings, numeric_text

pytestmark = pytest.mark.integration

hostile = st.one_of(
    st.text(alphabet=st.characters(exclude_categories=("Cs",)), max_size=40),
    numeric_text,
    st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-._", min_size=1, max_size=20),
    st.sampled_from(["", " ", "²", "9" * 26, "-1", "nan", "inf", "1e999", "<script>x</script>", "\x00", "a\r\nb",
                     "../..", "a" * 5000, "percent", "header", "ip", "static", "redirect", "reject", "upstream",
                     "2030-01-01T00:00", "9999-12-31T23:59", "0001-01-01T00:00", "10.0.0.0/8", "::/0", "GET, POST",
                     "canary 10000", "canary 0\nbeta -5", "canary 12.5%", "canary 100.001%", "a 60%\nb 45%", "1-99999999999999999999", "admin", "viewer"]),
)
SPLIT = {"id": "web", "host": "shop.example.com", "path": "/", "enabled": "y", "key_source": "header",
         "key_name": "x-uid", "default": "stable", "policies-0-type": "percent",
         "policies-0-buckets": "canary 10%", "action": "save"}
SPLIT_FIELDS = [*SPLIT, "description", "methods", "policies-0-name", "policies-0-values", "policies-0-upstream",
                "policies-0-salt", "policies-1-type", "policies-1-values", "policies-31-type", "policies-99-type", "force"]
DEGRADE = {"id": "shed", "host": "shop.example.com", "path": "/checkout", "enabled": "y", "action_type": "static",
           "status": "503", "headers": "Cache-Control: no-store", "body": "later", "percent": "100"}
DEGRADE_FIELDS = [*DEGRADE, "description", "methods", "key_source", "key_name", "content_type", "location",
                  "upstream", "retry_after", "window_start", "window_end", "salt", "force"]
SIMULATE = {"host": "shop.example.com", "path": "/", "method": "GET"}
# form -> (url, valid base data, fields the fuzzer may replace)
FORMS = {
    "create-namespace": ("/namespaces", {"name": "x"}, ["name"]),
    "new-split": ("/ns/{ns}/rules/new?kind=split", SPLIT, SPLIT_FIELDS),
    "new-degrade": ("/ns/{ns}/rules/new?kind=degrade", DEGRADE, DEGRADE_FIELDS),
    "edit": ("/ns/{ns}/rules/web/edit", {**SPLIT, "expected_rev": "1"}, [*SPLIT_FIELDS, "expected_rev"]),
    "toggle": ("/ns/{ns}/rules/web/toggle", {"expected_rev": "1"}, ["expected_rev"]),
    "delete": ("/ns/{ns}/rules/web/delete", {"expected_rev": "1"}, ["expected_rev"]),
    "rollback": ("/ns/{ns}/rollback/1", {"expected_rev": "2"}, ["expected_rev"]),
    "upstreams": ("/ns/{ns}/upstreams", {"names": "stable\ncanary"}, ["names"]),
    "simulate": ("/ns/{ns}/simulate", SIMULATE, [*SIMULATE, "ip", "headers", "cookies", "args"]),
    "save-user": ("/admin/users", {"username": "x", "role": "viewer", "password": "long-enough-1"},
                  ["username", "role", "password"]),
    "create-token": ("/admin/tokens", {"username": "x", "name": "fz"},
                     ["username", "name", "role", "namespaces", "expires_days"]),
}
ACTIONS = st.one_of(st.sampled_from(["save", "refresh", "add", "remove-0", "remove-1", "up-1", "down-0", "up-0", "down-31"]),
                    hostile)


def _csrf(html: bytes) -> str:
    return re.search(rb'name="csrf_token" type="hidden" value="([^"]+)"', html).group(1).decode()


@pytest.fixture(scope="module")
def web_admin(app, backend):
    """(test client logged in as an admin of its own, its CSRF token, its username)."""
    name = "fzw-" + uuid.uuid4().hex[:8]
    backend.accounts.create_user(name, "admin", PASSWORD)
    client = app.test_client()
    page = client.get("/login")
    assert client.post("/login", data={"username": name, "password": PASSWORD,
                                       "csrf_token": _csrf(page.data)}).status_code == 302
    return client, _csrf(client.get("/").data), name


@pytest.fixture()
def seeded(backend) -> str:
    """A namespace holding rule `web` (revision 1)."""
    name = "fw" + uuid.uuid4().hex[:10]
    backend.rules.create_namespace(name)
    backend.rules.put_rule(name, split_rule("web"), None, "seed")
    return name


def _reseed(backend, ns: str, watch: KeyspaceWatch) -> None:
    """Put rule `web` back when a successful post removed it (so later examples reach the edit paths)."""
    if not any(r["id"] == "web" for r in backend.rules.list_rules(ns)[1]):
        backend.rules.put_rule(ns, split_rule("web"), None, "seed")
    watch.reset()


@pytest.mark.parametrize("form", sorted(FORMS))
@given(data=st.data())
@fuzz_settings(30)
def test_forms_never_500(web_admin, seeded, backend, watch, form, data):
    """Random and hostile values (and unknown fields) in any form: never a 5xx; a refused post writes nothing."""
    client, csrf, _name = web_admin
    url, base, fields = FORMS[form]
    changes = data.draw(st.dictionaries(st.sampled_from(fields), hostile, max_size=4), label="changes")
    extra = data.draw(st.dictionaries(st.text(min_size=1, max_size=12), hostile, max_size=2), label="extra")
    body = {**extra, **base, **changes, "csrf_token": csrf}
    if "action" in fields:
        body["action"] = data.draw(ACTIONS, label="action")
    before = watch.before()
    r = client.post(url.format(ns=seeded), data=body)
    assert r.status_code < 500, r.data[:500]
    assert r.status_code != 302 or not r.location.startswith("/login"), "the fuzzer's session ended"
    unchanged = watch.unchanged_since(before)
    assert r.status_code < 400 or unchanged, f"a refused post ({r.status_code}) changed Redis"
    if r.status_code == 302:
        _reseed(backend, seeded, watch)


@given(segment=hostile, verb=st.one_of(st.sampled_from(["delete", "disable", "enable"]), hostile),
       kind=st.sampled_from(["user", "token"]))
@fuzz_settings(60)
def test_path_actions_never_500(web_admin, watch, segment, verb, kind):
    """User and token buttons with any name in the URL: never a 5xx, and a refusal writes nothing."""
    client, csrf, _name = web_admin
    seg = quote(segment, safe="") or "x"
    url = f"/admin/users/{seg}/{quote(verb, safe='') or 'x'}" if kind == "user" else f"/admin/tokens/{seg}/revoke"
    before = watch.before()
    r = client.post(url, data={"csrf_token": csrf})
    assert r.status_code < 500, r.data[:500]
    assert watch.unchanged_since(before) or r.status_code < 400


@given(value=hostile, page=st.sampled_from(["history?before=", "?q=", "rules/new?kind=", "rollback/", "fleet?x=",
                                            "simulate?x=", "rules/", "?kind=", "?upstream=", "?cursor=", "?route=",
                                            "upstreams?x="]))
@fuzz_settings(80)
def test_pages_never_500(web_admin, seeded, value, page):
    """Hostile query parameters and path segments on the UI's pages: never a 5xx."""
    client, _csrf_token, _name = web_admin
    r = client.get(f"/ns/{seeded}/{page}{quote(value, safe='')}")
    assert r.status_code < 500, r.data[:500]


def _same_site(location: str) -> bool:
    parts = urlsplit(location)
    return (location.startswith("/") and not location.startswith("//") and "\\" not in location
            and not parts.scheme and not parts.netloc)


NEXT = st.one_of(hostile, st.sampled_from(["//evil.example", "https://evil.example", "/\\evil.example", "/\r\n/x",
                                             "/ns/x/", "javascript:x", "/\t/evil.example", "/%0d%0a", "\\\\x"]))


def _client(app):
    return app.test_client(), {"REMOTE_ADDR": f"192.0.2.{uuid.uuid4().int % 250 + 1}"}


@pytest.fixture(scope="module")
def login_user(backend) -> str:
    """A viewer the login fuzzer logs in and out."""
    name = "fzl-" + uuid.uuid4().hex[:8]
    backend.accounts.create_user(name, "viewer", PASSWORD)
    return name


@given(next_url=NEXT)
@fuzz_settings(20)
def test_login_and_logout_redirect_only_on_site(app, login_user, next_url):
    """With any `next`, a successful login and the logout redirect to a path on this site, never a 5xx."""
    client, env = _client(app)
    page = client.get("/login", environ_base=env)
    r = client.post(f"/login?next={quote(next_url, safe='')}", environ_base=env,
                    data={"username": login_user, "password": PASSWORD, "csrf_token": _csrf(page.data)})
    assert r.status_code == 302 and _same_site(r.location), (r.status_code, r.location)
    r = client.post(f"/logout?next={quote(next_url, safe='')}", environ_base=env,
                    data={"csrf_token": _csrf(client.get("/", environ_base=env).data)})
    assert r.status_code == 302 and _same_site(r.location), (r.status_code, r.location)


@given(username=hostile, password=hostile, next_url=NEXT)
@fuzz_settings(20)
def test_failed_logins_never_500(app, backend, keyspace, username, password, next_url):
    """Hostile credentials: never a 5xx, and nothing written but the throttle counters and the audit trail
    (the form fuzzer may have created a user with exactly these credentials: then it logs in)."""
    client, env = _client(app)
    page = client.get("/login", environ_base=env)
    before = keyspace(also_skip=(b"rg:audit",))
    r = client.post(f"/login?next={quote(next_url, safe='')}", environ_base=env,
                    data={"username": username, "password": password, "csrf_token": _csrf(page.data)})
    if r.status_code == 302:
        assert backend.accounts.authenticate(username, password)[1] == "ok" and _same_site(r.location)
        return
    assert r.status_code in (400, 401, 429), r.data[:500]
    assert keyspace(also_skip=(b"rg:audit",)) == before


@pytest.fixture(scope="module", autouse=True)
def _forget_fuzz_login_failures(backend):
    """The login fuzzer fails many logins: drop the global failure counter afterwards (other tests log in)."""
    yield
    backend.store.client.delete("rg:login:fail:all")
