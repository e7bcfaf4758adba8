"""The OpenAPI 3.0 document served at /api/v1/openapi.json (kept next to the views it describes)."""
from __future__ import annotations

from .inputs import MAX_REVISION

NAME_PATTERN = "^[a-z0-9][a-z0-9_.-]{0,63}$"
ROLE = {"type": "string", "enum": ["viewer", "editor", "admin"]}


def _error(description: str) -> dict:
    return {"description": description,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}


def _ok(description: str, schema: dict | None = None) -> dict:
    return {"description": description,
            "content": {"application/json": {"schema": schema or {"type": "object"}}}}


def _json_body(schema: dict) -> dict:
    return {"required": True, "content": {"application/json": {"schema": schema}}}


def _path(name: str, schema: dict | None = None) -> dict:
    return {"name": name, "in": "path", "required": True,
            "schema": schema or {"type": "string", "pattern": NAME_PATTERN}}


def _query_int(name: str, lo: int, hi: int) -> dict:
    return {"name": name, "in": "query", "required": False,
            "schema": {"type": "integer", "minimum": lo, "maximum": hi}}


NS = _path("ns")
FORCE = {"name": "force", "in": "query", "required": False,
         "description": "true: save even when an upstream is not known (no live gateway reports it, not declared)",
         "schema": {"type": "string", "enum": ["true", "false", "1", "0", "yes", "no"]}}
LIST_FILTERS = [_query_int("limit", 1, 500),
                {"name": "cursor", "in": "query", "required": False, "description": "next_cursor of the previous page",
                 "schema": {"type": "string", "pattern": NAME_PATTERN}},
                {"name": "kind", "in": "query", "required": False, "schema": {"type": "string",
                                                                             "enum": ["split", "degrade"]}},
                *({"name": name, "in": "query", "required": False, "description": text,
                   "schema": {"type": "string", "maxLength": 200}} for name, text in (
                    ("upstream", "rules naming this upstream"), ("q", "text in id, route, description or upstreams"),
                    ("route", "text in host + path")))]
RULE_ID = _path("rule_id")
USERNAME = _path("username")
TOKEN_ID = _path("token_id", {"type": "string", "pattern": "^[0-9a-f]{16}$"})
IF_MATCH = {"name": "If-Match", "in": "header", "required": False,
            "description": f'the namespace revision the client saw, as an ETag: "12" (0-{MAX_REVISION})',
            "schema": {"type": "string", "pattern": '^(W/)?"[0-9]{1,16}"$'}}
IF_MATCH_REQUIRED = {**IF_MATCH, "required": True}
IF_NONE_MATCH_REVISION = {"name": "If-None-Match", "in": "header", "required": False,
                          "description": 'the ETag of an earlier answer ("12", the revision): 304 while the '
                                         'namespace is still at that revision', "schema": {"type": "string"}}
IF_MATCH_RULE = {"name": "If-Match", "in": "header", "required": False,
                 "description": 'the rule\'s own ETag from GET (only this rule must be unchanged: "r-<sha1 of its '
                                'stored bytes>"), * (the rule exists), or the namespace revision "12" (nothing in '
                                'the namespace changed); told apart by their shape',
                 "schema": {"type": "string", "pattern": '^((W/)?"[0-9]{1,16}"|"r-[0-9a-f]{40}"|\\*)$'}}
IDEMPOTENCY_KEY = {"name": "Idempotency-Key", "in": "header", "required": False,
                   "description": "a retry with the same key (per user, kept 24 h) replays the first answer "
                                  "(status, ETag, body; header Idempotent-Replayed: true) and writes nothing",
                   "schema": {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[ -~]{1,255}$"}}
IDEMPOTENCY_ERRORS = {"409": _error("a request with the same Idempotency-Key is still running; retry later"),
                      "422": _error("the Idempotency-Key was used with a different method, path or body")}
COMMON_ERRORS = {"400": _error("invalid input; `fields` maps field paths to reasons"),
                 "401": _error("missing, invalid, expired or revoked token"),
                 "403": _error("role too low, or the namespace is outside the token's scope"),
                 "404": _error("no such namespace, rule, user or token"),
                 "405": _error("method not allowed"), "413": _error("body too large"),
                 "415": _error("body is not application/json"), "503": _error("Redis unavailable")}
WRITE = {"type": "object", "properties": {
    "revision": {"type": "integer"}, "replicated": {"type": "boolean"}, "unchanged": {"type": "boolean"},
    "replicas_acked": {"type": "integer"}, "replicas_wanted": {"type": "integer"}}}
SCHEMAS = {
    "Error": {"type": "object", "required": ["error", "fields"],
              "properties": {"error": {"type": "string"},
                             "fields": {"type": "object", "additionalProperties": {"type": "string"}},
                             "current_revision": {"type": "integer"}}},
    "Rule": {"type": "object", "required": ["kind", "route"],
             "description": "a rule; see docs/rules.md. Bucket weights are integers in units of 0.01 % (10000 = "
                            "100 %) or a percent string such as \"12.5%\"; a degrade `percent` is a number 0-100 or "
                            "such a string. Responses carry the stored numbers",
             "properties": {"id": {"type": "string", "pattern": NAME_PATTERN},
                            "kind": {"type": "string", "enum": ["split", "degrade"]},
                            "route": {"type": "object"}, "enabled": {"type": "boolean"},
                            "description": {"type": "string"}}},
    "SimRequest": {"type": "object", "required": ["host"], "properties": {
        "host": {"type": "string"}, "path": {"type": "string"}, "method": {"type": "string"},
        "ip": {"type": "string"}, "headers": {"type": "object"}, "cookies": {"type": "object"},
        "args": {"type": "object"}, "now": {"type": "number"}}},
    "NewToken": {"type": "object", "additionalProperties": False, "properties": {
        "username": {"type": "string", "description": "default: the caller; others' need an unscoped admin token"},
        "name": {"type": "string", "maxLength": 128}, "role": ROLE,
        "namespaces": {"type": "array", "minItems": 1, "maxItems": 100,
                       "items": {"type": "string", "pattern": NAME_PATTERN}},
        "expires_in": {"type": "integer", "minimum": 60, "description": "seconds; default and maximum "
                       "RULEADMIN_TOKEN_MAX_LIFETIME_SECONDS"}}},
}


def _rule_paths(errors: dict, idem: dict) -> dict:
    return {
        "/namespaces": {
            "get": {"operationId": "listNamespaces", "responses": {"200": _ok("namespaces"), **errors}},
            "post": {"operationId": "createNamespace", "description": "admin, token without a namespace scope",
                     "parameters": [IDEMPOTENCY_KEY], "requestBody": _json_body({
                         "type": "object", "required": ["name"], "additionalProperties": False,
                         "properties": {"name": {"type": "string", "pattern": NAME_PATTERN}}}),
                     "responses": {"201": _ok("created"), "200": _ok("already existed"), **errors, **idem}},
        },
        "/namespaces/{ns}/rules": {
            "get": {"operationId": "listRules", "parameters": [NS, *LIST_FILTERS, IF_NONE_MATCH_REVISION],
                    "description": "without parameters: every rule; with any of limit/cursor/kind/upstream/q/route: "
                                   "the matching rules sorted by id, at most limit (default 100), with `matched` and "
                                   "`next_cursor` (null on the last page)",
                    "responses": {"200": _ok("rules; ETag is the revision"),
                                  "304": {"description": "If-None-Match names the current revision; no body"},
                                  **errors}},
        },
        "/namespaces/{ns}/upstreams": {
            "get": {"operationId": "getUpstreams", "parameters": [NS],
                    "responses": {"200": _ok("declared, reported (live gateway -> names), known, checked"), **errors}},
            "put": {"operationId": "putUpstreams", "description": "admin; replaces the declared names",
                    "parameters": [NS, IDEMPOTENCY_KEY], "requestBody": _json_body({
                        "type": "object", "required": ["upstreams"], "additionalProperties": False,
                        "properties": {"upstreams": {"type": "array", "maxItems": 512, "items": {
                            "type": "string", "pattern": "^[A-Za-z0-9_.:-]{1,128}$"}}}}),
                    "responses": {"200": _ok("the known upstreams"), **errors, **idem}},
        },
        "/namespaces/{ns}/rules/{rule_id}": {
            "get": {"operationId": "getRule", "parameters": [NS, RULE_ID],
                    "responses": {"200": _ok("the rule, revision and etag; ETag is the rule's (\"r-<sha1>\")"),
                                  **errors}},
            "put": {"operationId": "putRule", "parameters": [NS, RULE_ID, IF_MATCH_RULE, IDEMPOTENCY_KEY, FORCE],
                    "description": "without If-Match: create only; with If-Match: replace while the rule still has "
                                   "that ETag (or at that namespace revision); the body has the new etag",
                    "requestBody": _json_body({"$ref": "#/components/schemas/Rule"}),
                    "responses": {"200": _ok("replaced, or unchanged: true (no new revision) when the rule equals "
                                             "the stored one apart from updated_by/updated_at", WRITE),
                                  "201": _ok("created", WRITE), **errors, **idem,
                                  "412": _error("stale If-Match; body has current_revision (and current_etag)"),
                                  "413": _error("body too large, or the namespace would pass "
                                                "RULEADMIN_NAMESPACE_MAX_RULES / _MAX_BYTES"),
                                  "428": _error("the rule exists and If-Match is missing")}},
            "delete": {"operationId": "deleteRule", "parameters": [NS, RULE_ID, {**IF_MATCH_RULE, "required": True},
                                                                   IDEMPOTENCY_KEY],
                       "responses": {"200": _ok("deleted", WRITE), **errors, **idem,
                                     "412": _error("stale If-Match"), "428": _error("If-Match missing")}},
        },
        "/namespaces/{ns}/history": {
            "get": {"operationId": "history", "parameters": [
                NS, _query_int("since", 0, MAX_REVISION), _query_int("before", 1, MAX_REVISION),
                _query_int("limit", 1, 500),
                {"name": "rule", "in": "query", "required": False, "description": "only this rule's changes",
                 "schema": {"type": "string", "pattern": NAME_PATTERN}}],
                    "responses": {"200": _ok("changes, newest first with next_before (with since: oldest first "
                                             "with next_since)"), **errors}},
        },
        "/namespaces/{ns}/rollback": {
            "post": {"operationId": "rollback", "parameters": [NS, IF_MATCH_REQUIRED, IDEMPOTENCY_KEY],
                     "description": "restore the rule set of to_rev (1 or more) as a new revision; unchanged: true "
                                    "(nothing committed) when the rule set already equals it",
                     "requestBody": _json_body({"type": "object", "required": ["to_rev"], "additionalProperties": False,
                                                "properties": {"to_rev": {"type": "integer", "minimum": 1,
                                                                          "maximum": MAX_REVISION}}}),
                     "responses": {"200": _ok("rolled back (or unchanged)", WRITE), **errors, **idem,
                                   "404": _error("no such namespace, or to_rev does not exist or is older than "
                                                 "the retained log"),
                                   "412": _error("stale If-Match"), "428": _error("If-Match missing")}},
        },
        "/namespaces/{ns}/diff": {
            "get": {"operationId": "diff", "parameters": [
                NS, {**_query_int("from", 0, MAX_REVISION), "required": True}, _query_int("to", 0, MAX_REVISION)],
                    "responses": {"200": _ok("rules added, removed or changed from revision `from` to `to` "
                                             "(default: the current revision)"), **errors,
                                  "404": _error("no such namespace, or a revision that does not exist or is older "
                                                "than the retained log")}},
        },
        "/namespaces/{ns}/empty": {
            "post": {"operationId": "emptyNamespace", "parameters": [NS, IF_MATCH_REQUIRED, IDEMPOTENCY_KEY],
                     "description": "admin: delete every rule in one revision (op empty); audited",
                     "responses": {"200": _ok("emptied (unchanged: true when it held no rules)", WRITE), **errors,
                                   **idem, "412": _error("stale If-Match"), "428": _error("If-Match missing")}},
        },
        "/namespaces/{ns}/simulate": {
            "post": {"operationId": "simulate", "parameters": [NS],
                     "requestBody": _json_body({"type": "object", "required": ["request"], "additionalProperties": False,
                                                "properties": {"request": {"$ref": "#/components/schemas/SimRequest"}}}),
                     "responses": {"200": _ok("the decision"), **errors}},
        },
        "/namespaces/{ns}/fleet": {
            "get": {"operationId": "fleet", "parameters": [NS],
                    "responses": {"200": _ok("gateways with applied revision and status; `exposure`: requests/min per "
                                             "rule and upstream over the live gateways, last match times, and "
                                             "`idle` (rules no gateway matched for RULEADMIN_IDLE_RULE_SECONDS)"),
                                  **errors}},
        },
    }


SWITCH_ID = _path("switch_id", {"type": "string", "pattern": "^[a-z0-9][a-z0-9_-]{0,63}$"})
ACTION = {"type": "object", "required": ["type"], "description": "a degrade action (docs/rules.md Actions): static, "
          "redirect, upstream or reject; default: RULEADMIN_KILL_SWITCH_PRESET (static 503, Retry-After: 30)",
          "properties": {"type": {"type": "string", "enum": ["static", "redirect", "upstream", "reject"]}}}


def _kill_switch_paths(errors: dict, idem: dict) -> dict:
    return {
        "/namespaces/{ns}/kill-switches": {
            "get": {"operationId": "listKillSwitches", "parameters": [NS],
                    "responses": {"200": _ok("kill_switches: records (id, scope, route, action, engaged_by, "
                                             "engaged_at, revision_before, digest_before, rule_ids, revision, "
                                             "rules_present; record: false when known only from its rules)"),
                                  **errors}},
            "post": {"operationId": "engageKillSwitch", "parameters": [NS, IDEMPOTENCY_KEY, FORCE],
                     "description": "editor: one revision (op kill-switch) adding one degrade rule, percent 100, "
                                    "all methods: of scope namespace (tried before routing for every request of "
                                    "the namespace, whatever its routes) or on one route (scope route)",
                     "requestBody": _json_body({
                         "type": "object", "required": ["scope"], "additionalProperties": False, "properties": {
                             "scope": {"type": "string", "enum": ["namespace", "route"]},
                             "route": {"type": "object", "required": ["host", "path"], "additionalProperties": False,
                                       "properties": {"host": {"type": "string"}, "path": {"type": "string"}}},
                             "action": ACTION}}),
                     "responses": {"201": _ok("kill_switch (the record), shadowed_by, warnings", WRITE), **errors,
                                   **idem, "412": _error("the namespace kept changing; retry"),
                                   "413": _error("the namespace would pass RULEADMIN_NAMESPACE_MAX_RULES / "
                                                 "_MAX_BYTES")}},
        },
        "/namespaces/{ns}/kill-switches/{switch_id}": {
            "delete": {"operationId": "undoKillSwitch", "parameters": [NS, SWITCH_ID, IDEMPOTENCY_KEY],
                       "description": "editor: one revision (op kill-switch-undo) deleting exactly the switch's rules",
                       "responses": {"200": _ok("revision, digest, revision_before, digest_before, exact (digest "
                                                "equals the one before the switch), differences [{id, change}], "
                                                "removed_rules", WRITE), **errors, **idem,
                                     "412": _error("a kill rule changed meanwhile")}},
        },
    }


def _account_paths(errors: dict, idem: dict) -> dict:
    admin = "admin, token without a namespace scope"
    last_admin = _error("it is the last enabled admin, or a request with the same Idempotency-Key is still running")
    return {
        "/whoami": {
            "get": {"operationId": "whoami", "responses": {"200": _ok(
                "the token's user, effective role, token_id, namespaces (null: all) and expires_at"), **errors}},
        },
        "/audit": {
            "get": {"operationId": "audit", "description": admin, "parameters": [_query_int("limit", 1, 1000)],
                    "responses": {"200": _ok("account events, newest first"), **errors}},
        },
        "/tokens": {
            "get": {"operationId": "listTokens", "description": "all tokens (admin, unscoped) or your own",
                    "responses": {"200": _ok("tokens: id, username, name, role, namespaces, created_at, "
                                             "created_by, expires_at, expired, last_used_at"), **errors}},
            "post": {"operationId": "createToken", "parameters": [IDEMPOTENCY_KEY],
                     "description": "role, namespaces and expiry never beyond the caller's; a replay (same "
                                    "Idempotency-Key) has token: null; the secret is shown once",
                     "requestBody": _json_body({"$ref": "#/components/schemas/NewToken"}),
                     "responses": {"201": _ok("the new token (shown once)"), **errors, **idem}},
        },
        "/tokens/{token_id}": {
            "delete": {"operationId": "revokeToken", "description": "your own, or any (admin, unscoped)",
                       "parameters": [TOKEN_ID, IDEMPOTENCY_KEY],
                       "responses": {"200": _ok("revoked"), **errors, **idem}},
        },
        "/users": {
            "get": {"operationId": "listUsers", "description": admin,
                    "responses": {"200": _ok("users: username, role, disabled, created_at, updated_at (UNIX "
                                             "seconds), created_at_iso, updated_at_iso (ISO 8601 UTC)"), **errors}},
        },
        "/users/{username}": {
            "delete": {"operationId": "deleteUser", "description": admin + "; not yourself, not the last enabled admin",
                       "parameters": [USERNAME, IDEMPOTENCY_KEY],
                       "responses": {"200": _ok("deleted with its tokens"), **errors, **idem, "409": last_admin}},
        },
        "/users/{username}/disable": {
            "post": {"operationId": "disableUser", "description": admin + "; ends its sessions, revokes its tokens; "
                                                                          "not yourself, not the last enabled admin",
                     "parameters": [USERNAME, IDEMPOTENCY_KEY],
                     "responses": {"200": _ok("disabled"), **errors, **idem, "409": last_admin}},
        },
        "/users/{username}/password": {
            "post": {"operationId": "resetPassword", "parameters": [USERNAME],
                     "description": admin + "; not your own; ends the user's sessions, revokes its tokens; "
                                    "no Idempotency-Key (the body is a secret)",
                     "requestBody": _json_body({"type": "object", "required": ["password"],
                                                "additionalProperties": False, "properties": {
                                                    "password": {"type": "string", "minLength": 8,
                                                                 "maxLength": 1024}}}),
                     "responses": {"200": _ok("password set"), **errors}},
        },
        "/users/{username}/enable": {
            "post": {"operationId": "enableUser", "description": admin, "parameters": [USERNAME, IDEMPOTENCY_KEY],
                     "responses": {"200": _ok("enabled"), **errors, **idem}},
        },
    }


def document() -> dict:
    """Return the OpenAPI document as a dict."""
    errors, idem = dict(COMMON_ERRORS), IDEMPOTENCY_ERRORS
    return {
        "openapi": "3.0.3",
        "info": {"title": "rulegate ruleadmin API", "version": "1",
                 "description": "Traffic-split and degrade rules. Revisions travel as ETag/If-Match."},
        "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}, "schemas": SCHEMAS},
        "security": [{"bearer": []}],
        "paths": {**_rule_paths(errors, idem), **_kill_switch_paths(errors, idem), **_account_paths(errors, idem)},
        "servers": [{"url": "/api/v1"}],
    }
