/*
 * Scores and notes: one 0–5 score and an optional note per variant and aspect; the cells
 * run variant by variant, aspect by aspect (cell index = variant * aspects + aspect).
 *
 * Pure functions only (no DOM, no shared state), tested under Node in tests/annotation/js/.
 * `aspects` is the project's list of {key, label, description}; `ids` the variant ids in
 * display order.
 */
import { unrankedIds } from "./ranking.js";

export const SCORE_VALUES = [0, 1, 2, 3, 4, 5];

/** Scores read back from storage: an object per variant, only integers 0–5 on known aspects. */
export function cleanScores(raw, ids, aspects) {
  const scores = {};
  for (const id of ids) {
    scores[id] = {};
    const saved = raw && typeof raw === "object" ? raw[id] : null;
    for (const aspect of aspects) {
      const value = saved ? saved[aspect.key] : undefined;
      if (Number.isInteger(value) && value >= 0 && value <= 5) scores[id][aspect.key] = value;
    }
  }
  return scores;
}

/** Notes read back from storage: non-empty strings on known variants and aspects. */
export function cleanNotes(raw, ids, aspects) {
  const notes = {};
  for (const id of ids) {
    const saved = raw && typeof raw === "object" ? raw[id] : null;
    if (!saved) continue;
    for (const aspect of aspects) {
      if (typeof saved[aspect.key] === "string" && saved[aspect.key]) {
        notes[id] = notes[id] || {};
        notes[id][aspect.key] = saved[aspect.key];
      }
    }
  }
  return notes;
}

export function cellIndex(cursor, aspectCount) {
  return cursor.variant * aspectCount + cursor.aspect;
}

export function cursorAt(index, aspectCount) {
  return { variant: Math.floor(index / aspectCount), aspect: index % aspectCount };
}

export function missingScores(scores, ids, aspects) {
  let missing = 0;
  for (const id of ids) {
    for (const aspect of aspects) if (scores[id][aspect.key] === undefined) missing += 1;
  }
  return missing;
}

/** The first cell without a score, or -1 when all are scored. */
export function firstUnsetIndex(scores, ids, aspects) {
  for (let i = 0; i < ids.length * aspects.length; i += 1) {
    const cell = cursorAt(i, aspects.length);
    if (scores[ids[cell.variant]][aspects[cell.aspect].key] === undefined) return i;
  }
  return -1;
}

export function noteOf(notes, id, aspectKey) {
  return notes[id] ? notes[id][aspectKey] || "" : "";
}

/** Notes with `text` on one cell; blank text removes the note (and an emptied variant). */
export function withNote(notes, id, aspectKey, text) {
  const next = { ...notes };
  if (text.trim()) {
    next[id] = { ...next[id], [aspectKey]: text };
  } else if (next[id]) {
    const rest = { ...next[id] };
    delete rest[aspectKey];
    if (Object.keys(rest).length === 0) delete next[id];
    else next[id] = rest;
  }
  return next;
}

/** What stops a submit, for the button and the action bar; "" when the work is complete. */
export function missingSummary(work, ids, aspects, isPairwise) {
  const parts = [];
  const unranked = unrankedIds(work.ranking, ids).length;
  if (isPairwise && unranked > 0) parts.push("choose the better one (or tie)");
  else if (unranked > 0) parts.push(`rank ${unranked} more`);
  const scores = missingScores(work.scores, ids, aspects);
  if (scores > 0) parts.push(`${scores} score${scores === 1 ? "" : "s"} missing`);
  return parts.join(" · ");
}

/**
 * The body of POST .../judgement/ (DESIGN.md, "API contract"). `totalMs` is the clock's
 * reading now; ranking time is capped by it, and scoring time is the rest.
 */
export function buildJudgement(work, totalMs) {
  const total = totalMs;
  const ranking = Math.min(work.rankingMs === null ? total : work.rankingMs, total);
  const notes = {};
  for (const [id, perAspect] of Object.entries(work.notes)) {
    for (const [aspect, text] of Object.entries(perAspect)) {
      if (text.trim()) {
        notes[id] = notes[id] || {};
        notes[id][aspect] = text.trim();
      }
    }
  }
  return {
    client_id: work.clientId,
    ranking: work.ranking,
    unsure: work.unsure,
    scores: work.scores,
    notes,
    timings_ms: { ranking, scoring: total - ranking, total },
  };
}
