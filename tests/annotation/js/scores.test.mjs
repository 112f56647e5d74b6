import assert from "node:assert/strict";
import { describe, test } from "node:test";

import {
  buildJudgement,
  cellIndex,
  cleanNotes,
  cleanScores,
  cursorAt,
  firstUnsetIndex,
  missingScores,
  missingSummary,
  noteOf,
  withNote,
} from "../../../static/annotation/scores.js";
import { ASPECTS, frozen } from "./helpers.mjs";

const [A, B] = [11, 12];
const IDS = frozen([A, B]);

function work(overrides = {}) {
  return frozen({
    clientId: "6f1c2b1e-8a43-4a57-9a43-0d1f3f1c2a10",
    ranking: [[A], [B]],
    unsure: false,
    scores: {
      [A]: { following: 5, preserving: 4, quality: 0 },
      [B]: { following: 1, preserving: 2, quality: 3 },
    },
    notes: {},
    rankingMs: 4000,
    ...overrides,
  });
}

describe("cleanScores (work read back from storage)", () => {
  test("it keeps integers 0–5 on known aspects; 0 is a real score", () => {
    const raw = frozen({ [A]: { following: 0, preserving: 5 }, [B]: { quality: 3 } });
    assert.deepEqual(cleanScores(raw, IDS, ASPECTS), {
      [A]: { following: 0, preserving: 5 },
      [B]: { quality: 3 },
    });
  });

  test("it drops out-of-range, fractional, string and unknown scores", () => {
    const raw = frozen({ [A]: { following: 6, preserving: -1, quality: 2.5, tone: 3 }, [B]: { quality: "4" }, 99: { following: 1 } });
    assert.deepEqual(cleanScores(raw, IDS, ASPECTS), { [A]: {}, [B]: {} });
  });

  test("every variant gets an object even with nothing saved", () => {
    for (const raw of [undefined, null, "junk"]) assert.deepEqual(cleanScores(raw, IDS, ASPECTS), { [A]: {}, [B]: {} });
  });
});

describe("cleanNotes", () => {
  test("it keeps non-empty strings on known cells and leaves out variants without notes", () => {
    const raw = frozen({ [A]: { quality: "a seam", following: "", tone: "x" }, [B]: { preserving: 7 }, 99: { quality: "y" } });
    assert.deepEqual(cleanNotes(raw, IDS, ASPECTS), { [A]: { quality: "a seam" } });
  });
});

describe("the cell grid (variant by variant, aspect by aspect)", () => {
  test("cellIndex and cursorAt are inverses", () => {
    for (let index = 0; index < IDS.length * ASPECTS.length; index += 1) {
      assert.equal(cellIndex(cursorAt(index, ASPECTS.length), ASPECTS.length), index);
    }
    assert.deepEqual(cursorAt(4, 3), { variant: 1, aspect: 1 });
  });

  test("firstUnsetIndex finds the first cell without a score, -1 when all are scored", () => {
    const scores = frozen({ [A]: { following: 0, preserving: 1, quality: 2 }, [B]: { following: 3, quality: 4 } });
    assert.equal(firstUnsetIndex(scores, IDS, ASPECTS), 4);
    assert.equal(missingScores(scores, IDS, ASPECTS), 1);
    assert.equal(firstUnsetIndex(work().scores, IDS, ASPECTS), -1);
  });
});

describe("notes", () => {
  test("withNote adds, replaces and (with blank text) removes a note, without changing its input", () => {
    const notes = frozen({});
    const one = frozen(withNote(notes, A, "quality", "a seam"));
    assert.deepEqual(one, { [A]: { quality: "a seam" } });
    const two = frozen(withNote(one, A, "following", "too dark"));
    assert.deepEqual(two, { [A]: { quality: "a seam", following: "too dark" } });
    assert.deepEqual(withNote(two, A, "quality", "  "), { [A]: { following: "too dark" } });
    assert.deepEqual(withNote(one, A, "quality", ""), {});
    assert.deepEqual(withNote(notes, B, "quality", ""), {});
    assert.equal(noteOf(two, A, "following"), "too dark");
    assert.equal(noteOf(two, B, "following"), "");
  });
});

describe("missingSummary (what the submit button says)", () => {
  test("complete work has nothing missing", () => {
    assert.equal(missingSummary(work(), IDS, ASPECTS, false), "");
  });

  test("it counts variants to rank and scores missing", () => {
    const partial = work({ ranking: [], scores: { [A]: { following: 1 }, [B]: {} } });
    assert.equal(missingSummary(partial, IDS, ASPECTS, false), "rank 2 more · 5 scores missing");
    const oneScore = work({ scores: { [A]: { following: 1, preserving: 1, quality: 1 }, [B]: { following: 1, preserving: 1 } } });
    assert.equal(missingSummary(oneScore, IDS, ASPECTS, false), "1 score missing");
  });

  test("A/B asks for the choice instead", () => {
    assert.equal(missingSummary(work({ ranking: [] }), IDS, ASPECTS, true), "choose the better one (or tie)");
  });
});

describe("buildJudgement (the POST body)", () => {
  test("it sends the work with ranking time, scoring time the rest, and the total", () => {
    assert.deepEqual(buildJudgement(work(), 10000), {
      client_id: "6f1c2b1e-8a43-4a57-9a43-0d1f3f1c2a10",
      ranking: [[A], [B]],
      unsure: false,
      scores: work().scores,
      notes: {},
      timings_ms: { ranking: 4000, scoring: 6000, total: 10000 },
    });
  });

  test("ranking time never exceeds the total, and is all of it when never completed", () => {
    assert.deepEqual(buildJudgement(work({ rankingMs: 12000 }), 10000).timings_ms, { ranking: 10000, scoring: 0, total: 10000 });
    assert.deepEqual(buildJudgement(work({ rankingMs: null }), 7000).timings_ms, { ranking: 7000, scoring: 0, total: 7000 });
  });

  test("notes are trimmed and blank ones left out", () => {
    const notes = { [A]: { quality: "  a seam along the left edge \n", following: "   " }, [B]: { preserving: "" } };
    assert.deepEqual(buildJudgement(work({ notes }), 1000).notes, { [A]: { quality: "a seam along the left edge" } });
  });

  test("unsure goes through as marked", () => {
    assert.equal(buildJudgement(work({ unsure: true }), 1000).unsure, true);
  });
});
