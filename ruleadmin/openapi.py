"""The OpenAPI 3.0 document served at /api/v1/openapi.json (kept next to the views it describes)."""
from __future__ import annotations

NAME_PATTERN = "^[a-z0-9][a-z0-9_.-]{0,63}$"


def _error(description: str) -> dict:
    return {"description": description,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}


def _ok(description: str, schema: dict | None = None) -> dict:
    return {"description": description,
            "content": {"application/json": {"schema": schema or {"type": "object"}}}}


def _json_body(schema: dict) -> dict:
    return {"required": True, "content": {"application/json": {"schema": schema}}}


NS = {"name": "ns", "in": "path", "required": True, "schema": {"type": "string", "pattern": NAME_PATTERN}}
RULE_ID = {"name": "rule_id", "in": "path", "required": True,
           "schema": {"type": "string", "pattern": NAME_PATTERN}}
IF_MATCH = {"name": "If-Match", "in": "header", "required": False,
            "description": 'the namespace revision the client saw, as an ETag: "12"',
            "schema": {"type": "string"}}
IDEMPOTENCY_KEY = {"name": "Idempotency-Key", "in": "header", "required": False,
                   "description": "a retry with the same key (per user, kept 24 h) replays the first answer "
                                  "(status, ETag, body; header Idempotent-Replayed: true) and writes nothing",
                   "schema": {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[ -~]{1,255}$"}}
IDEMPOTENCY_ERRORS = {"409": _error("a request with the same Idempotency-Key is still running; retry later"),
                      "422": _error("the Idempotency-Key was used with a different method, path or body")}
COMMON_ERRORS = {"400": _error("invalid input; `fields` maps field paths to reasons"),
                 "401": _error("missing, invalid or revoked token"),
                 "403": _error("role too low"), "404": _error("no such namespace or rule"),
                 "413": _error("body too large"), "415": _error("body is not application/json"),
                 "503": _error("Redis unavailable")}
WRITE = {"type": "object", "properties": {
    "revision": {"type": "integer"}, "replicated": {"type": "boolean"},
    "replicas_acked": {"type": "integer"}, "replicas_wanted": {"type": "integer"}}}


def document() -> dict:
    """Return the OpenAPI document as a dict."""
    errors = dict(COMMON_ERRORS)
    idem = IDEMPOTENCY_ERRORS
    return {
        "openapi": "3.0.3",
        "info": {"title": "rulegate ruleadmin API", "version": "1",
                 "description": "Traffic-split and degrade rules. Revisions travel as ETag/If-Match."},
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Error": {"type": "object", "required": ["error", "fields"],
                          "properties": {"error": {"type": "string"},
                                         "fields": {"type": "object",
                                                    "additionalProperties": {"type": "string"}},
                                         "current_revision": {"type": "integer"}}},
                "Rule": {"type": "object", "description": "a rule; see docs/rules.md",
                         "required": ["kind", "route"],
                         "properties": {"id": {"type": "string", "pattern": NAME_PATTERN},
                                        "kind": {"type": "string", "enum": ["split", "degrade"]},
                                        "route": {"type": "object"}, "enabled": {"type": "boolean"},
                                        "description": {"type": "string"}}},
                "SimRequest": {"type": "object", "required": ["host"], "properties": {
                    "host": {"type": "string"}, "path": {"type": "string"}, "method": {"type": "string"},
                    "ip": {"type": "string"}, "headers": {"type": "object"}, "cookies": {"type": "object"},
                    "args": {"type": "object"}, "now": {"type": "number"}}},
            },
        },
        "security": [{"bearer": []}],
        "paths": {
            "/namespaces": {
                "get": {"operationId": "listNamespaces", "responses": {"200": _ok("namespaces"), **errors}},
                "post": {"operationId": "createNamespace", "description": "admin only",
                         "parameters": [IDEMPOTENCY_KEY], "requestBody": _json_body({"type": "object", "required": ["name"], "properties": {
                             "name": {"type": "string", "pattern": NAME_PATTERN}}}),
                         "responses": {"201": _ok("created"), "200": _ok("already existed"), **errors, **idem}},
            },
            "/namespaces/{ns}/rules": {
                "get": {"operationId": "listRules", "parameters": [NS],
                        "responses": {"200": _ok("rules; ETag is the revision"), **errors}},
            },
            "/namespaces/{ns}/rules/{rule_id}": {
                "get": {"operationId": "getRule", "parameters": [NS, RULE_ID],
                        "responses": {"200": _ok("the rule; ETag is the revision"), **errors}},
                "put": {"operationId": "putRule", "parameters": [NS, RULE_ID, IF_MATCH, IDEMPOTENCY_KEY],
                        "description": "without If-Match: create only; with If-Match: replace at that revision",
                        "requestBody": _json_body({"$ref": "#/components/schemas/Rule"}),
                        "responses": {"200": _ok("replaced", WRITE), "201": _ok("created", WRITE), **errors, **idem,
                                      "412": _error("stale If-Match; body has current_revision"),
                                      "428": _error("the rule exists and If-Match is missing")}},
                "delete": {"operationId": "deleteRule", "parameters": [NS, RULE_ID, IF_MATCH, IDEMPOTENCY_KEY],
                           "responses": {"200": _ok("deleted", WRITE), **errors, **idem,
                                         "412": _error("stale If-Match"), "428": _error("If-Match missing")}},
            },
            "/namespaces/{ns}/history": {
                "get": {"operationId": "history", "parameters": [
                    NS,
                    {"name": "since", "in": "query", "schema": {"type": "integer", "minimum": 0}},
                    {"name": "before", "in": "query", "schema": {"type": "integer", "minimum": 1}},
                    {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 500}}],
                    "responses": {"200": _ok("newest-first changes"), **errors}},
            },
            "/namespaces/{ns}/rollback": {
                "post": {"operationId": "rollback", "parameters": [NS, IF_MATCH, IDEMPOTENCY_KEY],
                         "requestBody": _json_body({"type": "object", "required": ["to_rev"],
                                                    "additionalProperties": False,
                                                    "properties": {"to_rev": {"type": "integer", "minimum": 0}}}),
                         "responses": {"200": _ok("rolled back", WRITE), **errors, **idem,
                                       "412": _error("stale If-Match")}},
            },
            "/namespaces/{ns}/simulate": {
                "post": {"operationId": "simulate", "parameters": [NS],
                         "requestBody": _json_body({"type": "object", "required": ["request"],
                                                    "additionalProperties": False, "properties": {
                                                        "request": {"$ref": "#/components/schemas/SimRequest"}}}),
                         "responses": {"200": _ok("the decision"), **errors}},
            },
            "/namespaces/{ns}/fleet": {
                "get": {"operationId": "fleet", "parameters": [NS],
                        "responses": {"200": _ok("gateways with applied revision and status"), **errors}},
            },
            "/audit": {
                "get": {"operationId": "audit", "description": "admin only", "parameters": [
                    {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 1000}}],
                    "responses": {"200": _ok("account events, newest first"), **errors}},
            },
            "/tokens": {
                "get": {"operationId": "listTokens", "responses": {"200": _ok("token ids"), **errors}},
                "post": {"operationId": "createToken", "parameters": [IDEMPOTENCY_KEY],
                         "description": "a replay (same Idempotency-Key) has token: null; the secret is shown once",
                         "requestBody": _json_body({"type": "object", "required": ["username"], "properties": {
                             "username": {"type": "string"}, "name": {"type": "string"}}}),
                         "responses": {"201": _ok("the new token (shown once)"), **errors, **idem}},
            },
            "/tokens/{token_id}": {
                "delete": {"operationId": "revokeToken", "parameters": [
                    {"name": "token_id", "in": "path", "required": True, "schema": {"type": "string"}},
                    IDEMPOTENCY_KEY],
                    "responses": {"200": _ok("revoked"), **errors, **idem}},
            },
        },
        "servers": [{"url": "/api/v1"}],
    }
