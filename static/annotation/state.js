/*
 * What every part of the app shares: the project's configuration (from the page), the
 * constants, the one state object and the page's elements (filled in by main.js).
 *
 * Reads the page at import: module scripts run after the document is parsed.
 */

export const config = JSON.parse(document.getElementById("project-config").textContent);
// Per user: a shared browser must never send one annotator's work as another's.
export const STORAGE_PREFIX = `editloop:v1:u${config.user}:`;
export const OUTBOX_KEY = `${STORAGE_PREFIX}outbox`;
export const WORK_TTL_MS = 7 * 24 * 60 * 60 * 1000;
// Variant shortcut letters; n–z stay free for commands (n note, s skip, u unsure, ...).
export const LETTER_KEYS = "abcdefghijklm";
export const TOAST_MS = 6000;
export const IDLE_MS = 3 * 60 * 1000;

export const isPairwise = config.mode === "pairwise";
export const aspects = config.aspects;

export const state = {
  current: null, // {lease, work, clock, variants}
  prefetch: null, // {promise, lease: undefined | null | lease}
  outbox: [], // pending submissions and skips, persisted
  flushTimer: null,
  flushAttempts: 0,
  sending: new Set(), // outbox items with a request in flight
  submitting: false,
  cursor: { variant: 0, aspect: 0 },
  undo: [], // ranking snapshots for Backspace
  tieArmed: false,
  flicking: false,
  lightboxIndex: null, // -1 = source, 0.. = variant index, null = closed
  noteOpen: null, // {variant, aspect}
  dragId: null,
  done: false,
  progress: null, // last figures from the server
};

/** The page's elements by name (el.submit, el.gallery, ...): see bindElements in main.js. */
export const el = {};

/** Assignment ids on screen or still being saved: the server must not hand them back. */
export function keepIds() {
  const ids = new Set(state.outbox.map((item) => item.assignmentId));
  if (state.current) ids.add(state.current.lease.id);
  if (state.prefetch && state.prefetch.lease) ids.add(state.prefetch.lease.id);
  return [...ids];
}

export function variantIds() {
  return state.current.lease.task.variants.map((v) => v.id);
}
