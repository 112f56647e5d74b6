/*
 * The outbox's rules: how long to wait before a retry, which saved items are still
 * sendable, and what a response means for an item.
 *
 * Pure functions only (no DOM, no storage, no timers), tested under Node in
 * tests/annotation/js/. sync.js keeps the outbox itself (persisted, flushed on a timer).
 */

export const RETRY_BASE_MS = 1000;
export const RETRY_MAX_MS = 30000;

/**
 * Exponential backoff capped at RETRY_MAX_MS, with ±25 % jitter so that tabs which went
 * offline together do not all retry in the same instant. `random` returns [0, 1).
 */
export function backoffDelay(attempt, random = Math.random) {
  const base = Math.min(RETRY_MAX_MS, RETRY_BASE_MS * 2 ** attempt);
  return Math.round(base * (0.75 + random() * 0.5));
}

/** The outbox read back from storage: only items that can still be sent. */
export function cleanOutbox(saved) {
  return Array.isArray(saved) ? saved.filter((item) => item && item.url && item.body) : [];
}

/**
 * What a response to a judgement or skip means: "saved"; "gone" (the task is not ours any
 * more: drop it); "invalid" (a 400, with the server's errors); "auth" (logged out: keep it
 * and retry); "retry" (5xx or anything else: keep it and retry).
 */
export function outcomeOf(status, data) {
  if (status === 200 || status === 201) return { kind: "saved" };
  if (status === 409 || status === 404) {
    return { kind: "gone", detail: (data && data.detail) || "This task is no longer yours" };
  }
  if (status === 400) return { kind: "invalid", errors: data || {} };
  if (status === 401 || status === 403) return { kind: "auth" };
  return { kind: "retry" };
}

/** A 400's field errors in one line: "scores: missing for 12 · ranking: …". */
export function formatErrors(errors) {
  if (!errors || typeof errors !== "object") return "the server refused it";
  return Object.entries(errors)
    .map(([field, messages]) => `${field}: ${[].concat(messages).join("; ")}`)
    .join(" · ");
}
