"""Checks a running origin against its own OpenAPI document, with other people's validators.

usage: openapi_check.py BASE_URL ACCOUNT_KEY OPERATOR_KEY

1. GET BASE_URL/openapi.json and validate it against the OpenAPI 3.1 schema
   (openapi-spec-validator).
2. For a set of key operations, send the request the document shows (its example body and
   example path parameters) and check that the answer's status is documented for the
   operation and that its JSON body validates against the documented schema (jsonschema,
   draft 2020-12, the dialect of OpenAPI 3.1).

Prints a JSON summary on stdout; exits 1 naming every mismatch.
"""

import json
import sys
import urllib.error
import urllib.request

import jsonschema
from openapi_spec_validator import OpenAPIV31SpecValidator, validate

BASE, ACCOUNT_KEY, OPERATOR_KEY = sys.argv[1], sys.argv[2], sys.argv[3]


def request(method, path, key=None, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(BASE + path, data=data, method=method)
    if key:
        req.add_header("authorization", f"Bearer {key}")
    if data is not None:
        req.add_header("content-type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.headers.get("content-type", ""), r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("content-type", ""), e.read()


status, ctype, raw = request("GET", "/openapi.json")
assert status == 200 and ctype.startswith("application/json"), (status, ctype)
doc = json.loads(raw)
validate(doc, cls=OpenAPIV31SpecValidator)


def node_ref(ref):
    return [p.replace("~1", "/").replace("~0", "~") for p in ref.lstrip("#/").split("/")]


def deref(node):
    while isinstance(node, dict) and "$ref" in node:
        target = doc
        for part in node_ref(node["$ref"]):
            target = target[part]
        node = target
    return node


def operation(method, path):
    op = doc["paths"].get(path, {}).get(method.lower())
    if op is None:
        raise SystemExit(f"{method} {path} is not in the document")
    return op


def example_body(op):
    body = op.get("requestBody")
    if body is None:
        return None
    return body["content"]["application/json"]["example"]


def concrete(op, path, params):
    for p in op.get("parameters", []):
        if p["in"] == "path":
            value = params.get(p["name"], p.get("example"))
            path = path.replace("{" + p["name"] + "}", str(value))
    return path


def answer_schema(op, status):
    responses = op["responses"]
    key = str(status) if str(status) in responses else f"{str(status)[0]}XX"
    if key not in responses:
        return None, key
    response = deref(responses[key])
    content = response.get("content", {})
    media = content.get("application/json")
    return (media or {}).get("schema", {}), key


failures = []
checked = []


def check(method, path, key=None, want=200, params=None, body="example", query=""):
    op = operation(method, path)
    url = concrete(op, path, params or {}) + query
    sent = example_body(op) if body == "example" else body
    status, ctype, raw = request(method, url, key, sent)
    schema, documented = answer_schema(op, status)
    where = f"{method} {url} -> {status}"
    if status != want:
        failures.append(f"{where}: expected {want}: {raw[:300]!r}")
        return None
    if schema is None:
        failures.append(f"{where}: status not documented ({sorted(op['responses'])})")
        return None
    value = json.loads(raw) if ctype.startswith("application/json") else None
    if value is not None:
        root = {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "components": doc["components"],
            "allOf": [schema],
        }
        errors = sorted(
            jsonschema.Draft202012Validator(root).iter_errors(value), key=lambda e: list(e.path)
        )
        if errors:
            failures.append(f"{where}: {errors[0].message} at {list(errors[0].path)}")
            return None
    checked.append(f"{method} {path} {status}")
    return value


check("GET", "/health")
check("GET", "/ready")
check("GET", "/openapi.json")
check("GET", "/v1/models")
check("POST", "/v1/chat/completions", ACCOUNT_KEY)
check("POST", "/v1/embeddings", ACCOUNT_KEY)
check("POST", "/api/brain/chat", ACCOUNT_KEY)
check("POST", "/api/{action}", ACCOUNT_KEY)
check("POST", "/api/memory/vectors", ACCOUNT_KEY)
check("POST", "/api/memory/search", ACCOUNT_KEY)
check("POST", "/api/memory/zone")
check("GET", "/api/memory/stats", ACCOUNT_KEY)
check("GET", "/api/memory/sessions", ACCOUNT_KEY)
check("DELETE", "/api/memory/sessions/{id}", ACCOUNT_KEY)
check("GET", "/api/conductor/groups")
check("POST", "/api/conductor/route")
check("GET", "/api/identity", ACCOUNT_KEY)
check("GET", "/api/account", ACCOUNT_KEY)
check("PATCH", "/api/account", ACCOUNT_KEY)
check("GET", "/api/account/usage", ACCOUNT_KEY)
created = check("POST", "/api/admin/accounts", OPERATOR_KEY, want=201)
account = {"id": (created or {}).get("id", "acct_missing")}
check("GET", "/api/admin/accounts", OPERATOR_KEY)
check("GET", "/api/admin/accounts/{id}", OPERATOR_KEY, params=account)
check("PATCH", "/api/admin/accounts/{id}", OPERATOR_KEY, params=account)
key = check("POST", "/api/admin/accounts/{id}/keys", OPERATOR_KEY, want=201, params=account)
check("GET", "/api/admin/accounts/{id}/keys", OPERATOR_KEY, params=account)
check("DELETE", "/api/admin/keys/{id}", OPERATOR_KEY, params={"id": (key or {}).get("id", "0")})
# Refusals carry the documented error body.
check("POST", "/api/conductor/route", want=400, body={"action": ""})
check("GET", "/api/admin/accounts", ACCOUNT_KEY, want=403)
check("GET", "/api/account", want=401)
check("DELETE", "/api/memory", ACCOUNT_KEY, want=400)
check("POST", "/api/billing/checkout", ACCOUNT_KEY, want=503)
check("POST", "/api/{action}", ACCOUNT_KEY, want=404, params={"action": "no_such_action"})

print(json.dumps({"valid": True, "openapi": doc["openapi"], "checked": checked, "failures": failures}))
sys.exit(1 if failures else 0)
