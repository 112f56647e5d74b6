import assert from "node:assert/strict";
import { describe, test } from "node:test";

import {
  backoffDelay,
  cleanOutbox,
  formatErrors,
  outcomeOf,
  RETRY_BASE_MS,
  RETRY_MAX_MS,
} from "../../../static/annotation/outbox.js";
import { frozen } from "./helpers.mjs";

describe("backoffDelay", () => {
  const middle = () => 0.5; // no jitter

  test("it doubles from RETRY_BASE_MS and stops at RETRY_MAX_MS", () => {
    assert.deepEqual(
      [0, 1, 2, 3, 4, 5, 6, 20].map((attempt) => backoffDelay(attempt, middle)),
      [1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000],
    );
    assert.equal(RETRY_BASE_MS, 1000);
    assert.equal(RETRY_MAX_MS, 30000);
  });

  test("the jitter stays within ±25 %", () => {
    assert.equal(backoffDelay(2, () => 0), 3000);
    assert.equal(backoffDelay(2, () => 0.999999), 5000);
    assert.equal(backoffDelay(10, () => 0.999999), 37500);
    for (let i = 0; i < 200; i += 1) {
      const delay = backoffDelay(3);
      assert.ok(delay >= 6000 && delay <= 10000, `${delay} out of range`);
    }
  });
});

describe("cleanOutbox (the outbox read back from storage)", () => {
  test("it keeps items with a url and a body, in order", () => {
    const judgement = { kind: "judgement", assignmentId: 3, url: "/api/v1/assignments/3/judgement/", body: { client_id: "x" } };
    const skip = { kind: "skip", assignmentId: 4, url: "/api/v1/assignments/4/skip/", body: { reason: "Other: blurry" } };
    const saved = frozen([judgement, null, { url: "/x/" }, { body: {} }, "junk", skip]);
    assert.deepEqual(cleanOutbox(saved), [judgement, skip]);
  });

  test("anything but a list is an empty outbox", () => {
    for (const saved of [null, undefined, {}, "[]"]) assert.deepEqual(cleanOutbox(saved), []);
  });
});

describe("outcomeOf (what a response means for an outbox item)", () => {
  test("200 and 201 are saved", () => {
    assert.deepEqual(outcomeOf(200, {}), { kind: "saved" });
    assert.deepEqual(outcomeOf(201, null), { kind: "saved" });
  });

  test("404 and 409 are gone, with the server's reason or a default", () => {
    assert.deepEqual(outcomeOf(409, { detail: "the lease expired and the task was taken" }), {
      kind: "gone",
      detail: "the lease expired and the task was taken",
    });
    assert.deepEqual(outcomeOf(404, null), { kind: "gone", detail: "This task is no longer yours" });
  });

  test("400 is invalid, with the field errors", () => {
    assert.deepEqual(outcomeOf(400, { scores: ["missing"] }), { kind: "invalid", errors: { scores: ["missing"] } });
    assert.deepEqual(outcomeOf(400, null), { kind: "invalid", errors: {} });
  });

  test("401 and 403 are a lost login; anything else is retried", () => {
    assert.deepEqual(outcomeOf(401, null), { kind: "auth" });
    assert.deepEqual(outcomeOf(403, {}), { kind: "auth" });
    for (const status of [500, 502, 503, 204, 302]) assert.deepEqual(outcomeOf(status, null), { kind: "retry" });
  });
});

describe("formatErrors", () => {
  test("it puts each field and its messages on one line", () => {
    const errors = frozen({ scores: ["missing for 12", "out of range"], ranking: "not a ranking" });
    assert.equal(formatErrors(errors), "scores: missing for 12; out of range · ranking: not a ranking");
  });

  test("it falls back to a sentence when the server said nothing usable", () => {
    assert.equal(formatErrors(null), "the server refused it");
    assert.equal(formatErrors("oops"), "the server refused it");
  });
});
