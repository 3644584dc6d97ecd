// The real Cohere TypeScript SDK (npm cohere-ai), unmodified, pointed at rerankd with
// `environment` / `baseUrl`: v1 rerank() (POST /v1/rerank) and v2 rerank() (POST /v2/rerank).
//   node run.js http://127.0.0.1:PORT MODEL
// Prints one line per check ("ok - ..." / "not ok - ...") and exits non-zero on a failure.
"use strict";
const assert = require("node:assert/strict");
const { CohereClient, CohereClientV2, CohereError } = require("cohere-ai");

const [url, model] = process.argv.slice(2);
if (!url || !model) {
  console.error("usage: node run.js BASE_URL MODEL");
  process.exit(2);
}
const DOCS = [
  "Carson City is the capital city of the American state of Nevada.",
  "The Commonwealth of the Northern Mariana Islands is a group of islands in the Pacific Ocean. Its capital is Saipan.",
  "Washington, D.C. is the capital of the United States. It is a federal district.",
  "Capital punishment has existed in the United States since before the United States was a country.",
];
const QUERY = "What is the capital of the United States?";
const opts = { token: "test-token", maxRetries: 0, timeoutInSeconds: 20 };

function checkResults(res, n) {
  assert.ok(Array.isArray(res.results), "results is an array");
  assert.equal(res.results.length, n);
  for (const r of res.results) {
    assert.equal(typeof r.index, "number");
    assert.equal(typeof r.relevanceScore, "number");
    assert.ok(r.index >= 0 && r.index < DOCS.length);
  }
  for (let i = 1; i < res.results.length; i++) {
    assert.ok(res.results[i - 1].relevanceScore >= res.results[i].relevanceScore, "sorted by score");
  }
  assert.equal(res.results[0].index, 2, "the Washington document ranks first");
  assert.equal(typeof res.id, "string");
  assert.ok(res.meta && res.meta.billedUnits && typeof res.meta.billedUnits.searchUnits === "number", "meta.billed_units");
}

const checks = [
  ["v1 rerank (environment)", async () => {
    const co = new CohereClient({ ...opts, environment: url });
    const res = await co.rerank({ model, query: QUERY, documents: DOCS, topN: 2 });
    checkResults(res, 2);
    assert.equal(res.meta.apiVersion.version, "1");
  }],
  ["v1 rerank (baseUrl) with object documents and rankFields", async () => {
    const co = new CohereClient({ ...opts, baseUrl: url });
    const docs = DOCS.map((text, i) => ({ title: "doc " + i, text }));
    const res = await co.rerank({ model, query: QUERY, documents: docs, rankFields: ["title", "text"], topN: 3 });
    checkResults(res, 3);
    assert.equal(res.results[0].document.text, DOCS[2], "documents come back as the client sent them");
    assert.equal(res.results[0].document.title, "doc 2");
  }],
  ["v1 rerank with maxChunksPerDoc", async () => {
    const co = new CohereClient({ ...opts, environment: url });
    const res = await co.rerank({ model, query: QUERY, documents: DOCS.map((text) => ({ text })), maxChunksPerDoc: 4 });
    checkResults(res, DOCS.length);
  }],
  ["v2 rerank (CohereClientV2, environment)", async () => {
    const co = new CohereClientV2({ ...opts, environment: url });
    const res = await co.rerank({ model, query: QUERY, documents: DOCS, topN: 3, maxTokensPerDoc: 512 });
    checkResults(res, 3);
    assert.equal(res.meta.apiVersion.version, "2");
    assert.equal(res.results[0].document, undefined, "v2: no document unless asked");
  }],
  ["v2 rerank (CohereClient().v2)", async () => {
    const co = new CohereClient({ ...opts, environment: url });
    const res = await co.v2.rerank({ model, query: QUERY, documents: DOCS });
    checkResults(res, DOCS.length);
  }],
  ["v1 and v2 under a path prefix (environment .../cohere)", async () => {
    const v1 = await new CohereClient({ ...opts, environment: url + "/cohere" }).rerank({ model, query: QUERY, documents: DOCS, topN: 1 });
    checkResults(v1, 1);
    const v2 = await new CohereClientV2({ ...opts, environment: url + "/cohere" }).rerank({ model, query: QUERY, documents: DOCS, topN: 1 });
    checkResults(v2, 1);
  }],
  ["v2 rerank with priority (0-999; 1000 is a 422)", async () => {
    const co = new CohereClientV2({ ...opts, environment: url });
    const res = await co.rerank({ model, query: QUERY, documents: DOCS, topN: 2, priority: 3 });
    checkResults(res, 2);
    await assert.rejects(co.rerank({ model, query: QUERY, documents: DOCS, priority: 1000 }), (e) => {
      assert.ok(e instanceof CohereError, "a CohereError");
      assert.equal(e.statusCode, 422);
      assert.match(JSON.stringify(e.body), /priority must be between 0 and 999/);
      return true;
    });
  }],
  ["errors arrive as the SDK's typed errors", async () => {
    const co = new CohereClientV2({ ...opts, environment: url });
    await assert.rejects(co.rerank({ model: "no-such-model", query: QUERY, documents: DOCS }), (e) => {
      assert.ok(e instanceof CohereError, "a CohereError");
      assert.equal(e.statusCode, 404);
      assert.match(JSON.stringify(e.body), /no-such-model/);
      return true;
    });
  }],
];

(async () => {
  let failed = 0;
  for (const [name, fn] of checks) {
    try {
      await fn();
      console.log("ok - " + name);
    } catch (e) {
      failed++;
      console.log("not ok - " + name + ": " + String((e && e.stack) || e).split("\n").slice(0, 3).join(" | "));
    }
  }
  console.log(`${checks.length - failed} passed, ${failed} failed`);
  process.exit(failed ? 1 : 0);
})();
