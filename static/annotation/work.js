/*
 * Work on one assignment (ranking, scores, notes, client_id, time spent), written to
 * localStorage on every change, keyed by assignment id, so a reload resumes exactly where
 * it stopped; and the clock that times it.
 */
import { cleanRanking } from "./ranking.js";
import { cleanNotes, cleanScores } from "./scores.js";
import { aspects, IDLE_MS, state, STORAGE_PREFIX, WORK_TTL_MS } from "./state.js";

export function readJSON(key) {
  try {
    const raw = localStorage.getItem(key);
    return raw ? JSON.parse(raw) : null;
  } catch {
    return null;
  }
}

export function writeJSON(key, value) {
  try {
    localStorage.setItem(key, JSON.stringify(value));
  } catch {
    // Storage full or disabled: the app still works, only reload-restore is lost.
  }
}

function newClientId() {
  if (window.crypto && typeof window.crypto.randomUUID === "function") {
    return window.crypto.randomUUID();
  }
  // Fallback for insecure contexts (plain http on a LAN address): RFC 4122 version 4.
  const bytes = new Uint8Array(16);
  if (window.crypto && window.crypto.getRandomValues) window.crypto.getRandomValues(bytes);
  else for (let i = 0; i < 16; i += 1) bytes[i] = Math.floor(Math.random() * 256);
  bytes[6] = (bytes[6] & 0x0f) | 0x40;
  bytes[8] = (bytes[8] & 0x3f) | 0x80;
  const hex = Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

// --- work on one assignment (persisted) ----------------------------------------------

function workKey(assignmentId) {
  return `${STORAGE_PREFIX}work:${assignmentId}`;
}

export function loadWork(lease) {
  const saved = readJSON(workKey(lease.id)) || {};
  const ids = lease.task.variants.map((v) => v.id);
  return {
    assignmentId: lease.id,
    clientId: typeof saved.clientId === "string" ? saved.clientId : newClientId(),
    ranking: cleanRanking(saved.ranking, ids),
    unsure: saved.unsure === true,
    scores: cleanScores(saved.scores, ids, aspects),
    notes: cleanNotes(saved.notes, ids, aspects),
    rankingMs: Number.isInteger(saved.rankingMs) ? saved.rankingMs : null,
    elapsedMs: Number.isInteger(saved.elapsedMs) ? saved.elapsedMs : 0,
  };
}

export function saveWork() {
  const current = state.current;
  if (!current) return;
  current.work.elapsedMs = clockElapsed(current.clock);
  writeJSON(workKey(current.lease.id), { ...current.work, savedAt: Date.now() });
}

export function forgetWork(assignmentId) {
  try {
    localStorage.removeItem(workKey(assignmentId));
  } catch {
    // ignore
  }
}

export function pruneOldWork() {
  const cutoff = Date.now() - WORK_TTL_MS;
  try {
    for (let i = localStorage.length - 1; i >= 0; i -= 1) {
      const key = localStorage.key(i);
      if (!key || !key.startsWith(`${STORAGE_PREFIX}work:`)) continue;
      const saved = readJSON(key);
      if (!saved || !(saved.savedAt > cutoff)) localStorage.removeItem(key);
    }
  } catch {
    // ignore
  }
}

// --- the clock: counts only while the page is visible ---------------------------------

export function makeClock(baseMs) {
  return { baseMs, runningSince: document.hidden ? null : performance.now() };
}

export function clockElapsed(clock) {
  const running = clock.runningSince === null ? 0 : performance.now() - clock.runningSince;
  return Math.round(clock.baseMs + running);
}

function pauseClock(clock) {
  pauseClockAt(clock, performance.now());
}

function resumeClock(clock) {
  if (clock.runningSince === null) clock.runningSince = performance.now();
}

/** Stop the clock at `at` (a performance.now() time in the past or now). */
function pauseClockAt(clock, at) {
  if (clock.runningSince === null) return;
  clock.baseMs += Math.max(0, at - clock.runningSince);
  clock.runningSince = null;
}

// Someone who walks away with the tab open should not inflate the timings: after
// IDLE_MS without input the clock stops where the idleness began (plus IDLE_MS).
let lastActivity = performance.now();

export function noteActivity() {
  lastActivity = performance.now();
  if (state.current && !document.hidden) resumeClock(state.current.clock);
}

export function checkIdle() {
  if (state.current && performance.now() - lastActivity > IDLE_MS) {
    pauseClockAt(state.current.clock, lastActivity + IDLE_MS);
  }
}

export function onVisibilityChange() {
  if (!state.current) return;
  if (document.hidden) {
    pauseClock(state.current.clock);
    saveWork();
  } else {
    resumeClock(state.current.clock);
  }
}
