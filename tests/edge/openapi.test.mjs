// headyapi.com's API reference through the edge: `/` is the HTML reference the origin renders
// from its OpenAPI document (no scripts, the pages' CSP), `/openapi.json` the document itself;
// another origin-served property's `/` is unaffected.

import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { edgeAndOrigin } from "./harness.mjs";

const live = edgeAndOrigin();

async function get(url, { method = "GET", accept = "text/html" } = {}) {
  const res = await live.edge.dispatchFetch(url, {
    method,
    headers: { accept, "cf-connecting-ip": "198.51.100.91" },
  });
  const text = await res.text();
  return { status: res.status, headers: res.headers, text };
}

describe("the API reference on headyapi.com", () => {
  test("/ is the static HTML reference, served by the origin through the tunnel", async () => {
    const page = await get("https://headyapi.com/");
    assert.equal(page.status, 200, page.text.slice(0, 300));
    assert.equal(page.headers.get("content-type"), "text/html; charset=utf-8");
    assert.equal(page.headers.get("x-heady-served-by"), "origin");
    const csp = page.headers.get("content-security-policy") ?? "";
    assert.match(csp, /default-src 'none'/);
    assert.doesNotMatch(csp, /script-src|unsafe-inline/);
    assert.equal(page.headers.get("x-frame-options"), "DENY");
    assert.doesNotMatch(page.text, /<script/i, "no scripts at all");
    assert.doesNotMatch(page.text, /(src|href)="https?:\/\//i, "nothing loaded from another origin");
    assert.match(page.text, /<link rel="stylesheet" href="\/reference.css">/);
    assert.match(page.text, /href="\/openapi.json"/);
    // Grouped by tag, each operation linked, with its class and a curl example.
    for (const tag of ["openai", "memory", "admin", "mcp"]) assert.match(page.text, new RegExp(`id="tag-${tag}"`));
    assert.match(page.text, /href="#op-createChatCompletion"/);
    assert.match(page.text, /id="op-createChatCompletion"/);
    assert.match(page.text, /<dt>class<\/dt><dd>RESTRICTED<\/dd>/);
    assert.match(page.text, /curl -s https:\/\/headyapi.com\/v1\/chat\/completions/);

    const css = await get("https://headyapi.com/reference.css");
    assert.equal(css.status, 200);
    assert.match(css.headers.get("content-type") ?? "", /^text\/css/);

    const head = await get("https://headyapi.com/", { method: "HEAD" });
    assert.equal(head.status, 200);
    assert.equal(head.text, "");
  });

  test("/openapi.json is the OpenAPI 3.1 document of every route", async () => {
    const res = await get("https://headyapi.com/openapi.json", { accept: "application/json" });
    assert.equal(res.status, 200, res.text.slice(0, 300));
    assert.equal(res.headers.get("content-type"), "application/json");
    assert.match(res.headers.get("cache-control") ?? "", /^public/);
    const doc = JSON.parse(res.text);
    assert.equal(doc.openapi, "3.1.0");
    assert.equal(doc.servers[0].url, "https://headyapi.com");
    for (const [path, method] of [
      ["/v1/chat/completions", "post"],
      ["/api/memory/search", "post"],
      ["/api/admin/accounts", "get"],
      ["/mcp", "post"],
      ["/", "get"],
    ]) {
      assert.ok(doc.paths[path]?.[method], `${method} ${path}`);
    }
    assert.equal(doc.paths["/api/admin/accounts"].get["x-heady-class"], "RESTRICTED");
    assert.deepEqual(doc.paths["/api/admin/accounts"].get.security, [{ apiKey: [] }]);

    const post = await get("https://headyapi.com/openapi.json", { method: "POST", accept: "application/json" });
    assert.equal(post.status, 405);
    assert.equal(JSON.parse(post.text).error.code, "method_not_allowed");
  });

  test("another origin-served property's / is unaffected", async () => {
    const admin = await get("https://admin.headysystems.com/");
    assert.equal(admin.status, 404, admin.text.slice(0, 300));
    assert.doesNotMatch(admin.text, /openapi/i);
    // A static property still gets its landing page from the edge's assets.
    const landing = await get("https://headyme.com/");
    assert.equal(landing.status, 200);
    assert.equal(landing.headers.get("x-heady-served-by"), null);
    assert.doesNotMatch(landing.text, /openapi/i);
  });
});
