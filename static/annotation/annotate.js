/*
 * EditLoop annotation app: rank and score image-edit variants, keyboard first.
 *
 * One state object, small functions that change it, render functions that draw it.
 * Everything the annotator does to a task ("work": ranking, scores, notes, client_id,
 * time spent) is written to localStorage on every change, keyed by assignment id, so a
 * reload resumes exactly where it stopped. Submissions go through a persisted outbox and
 * are retried with backoff using the same client_id, so the server saves each judgement
 * once however often it is sent.
 *
 * API: see DESIGN.md ("API contract"). Session auth; the CSRF token comes from the
 * csrftoken cookie and goes back in the X-CSRFToken header.
 */
"use strict";

(() => {
  const config = JSON.parse(document.getElementById("project-config").textContent);
  // Per user: a shared browser must never send one annotator's work as another's.
  const STORAGE_PREFIX = `editloop:v1:u${config.user}:`;
  const OUTBOX_KEY = `${STORAGE_PREFIX}outbox`;
  const WORK_TTL_MS = 7 * 24 * 60 * 60 * 1000;
  const SCORE_VALUES = [0, 1, 2, 3, 4, 5];
  // Variant shortcut letters; n–z stay free for commands (n note, s skip, u unsure, ...).
  const LETTER_KEYS = "abcdefghijklm";
  const RETRY_BASE_MS = 1000;
  const RETRY_MAX_MS = 30000;
  const TOAST_MS = 6000;
  const IDLE_MS = 3 * 60 * 1000;

  const isPairwise = config.mode === "pairwise";
  const aspects = config.aspects;

  const state = {
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

  const el = {};

  // --- small helpers -----------------------------------------------------------------

  function $(id) {
    return document.getElementById(id);
  }

  /** Create an element: h("div", {class: "x", onclick: fn}, child, "text"). */
  function h(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs)) {
      if (value === null || value === undefined || value === false) continue;
      if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
      else if (name === "dataset") Object.assign(node.dataset, value);
      else node.setAttribute(name, value === true ? "" : String(value));
    }
    for (const child of children.flat(Infinity)) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function letterFor(index) {
    return String.fromCharCode(65 + index);
  }

  function readJSON(key) {
    try {
      const raw = localStorage.getItem(key);
      return raw ? JSON.parse(raw) : null;
    } catch {
      return null;
    }
  }

  function writeJSON(key, value) {
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

  function urlFor(template, assignmentId) {
    return template.replace("/0/", `/${assignmentId}/`);
  }

  // --- API ---------------------------------------------------------------------------

  function csrfToken() {
    const match = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
    return match ? decodeURIComponent(match[1]) : "";
  }

  class ApiError extends Error {
    constructor(status, data) {
      super(`HTTP ${status}`);
      this.status = status;
      this.data = data;
    }
  }

  async function api(method, url, body) {
    const response = await fetch(url, {
      method,
      credentials: "same-origin",
      headers: {
        Accept: "application/json",
        "Content-Type": "application/json",
        "X-CSRFToken": csrfToken(),
      },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    let data = null;
    if (response.status !== 204) {
      try {
        data = await response.json();
      } catch {
        data = null;
      }
    }
    return { status: response.status, data };
  }

  // --- leases: current, prefetched, next -----------------------------------------------

  /** Assignment ids on screen or still being saved: the server must not hand them back. */
  function keepIds() {
    const ids = new Set(state.outbox.map((item) => item.assignmentId));
    if (state.current) ids.add(state.current.lease.id);
    if (state.prefetch && state.prefetch.lease) ids.add(state.prefetch.lease.id);
    return [...ids];
  }

  async function requestLease() {
    const { status, data } = await api("POST", config.urls.next, { keep: keepIds() });
    if (status === 204) return null;
    if (status === 200 && data && data.assignment) return data.assignment;
    throw new ApiError(status, data);
  }

  async function requestLeaseWithRetry() {
    for (let attempt = 0; ; attempt += 1) {
      try {
        const lease = await requestLease();
        hideFatal();
        return lease;
      } catch (error) {
        const delay = backoffDelay(attempt);
        showFatal(leaseErrorMessage(error, delay));
        await sleep(delay);
      }
    }
  }

  function leaseErrorMessage(error, delay) {
    const seconds = Math.round(delay / 1000);
    if (error instanceof ApiError && error.data && error.data.paused) {
      return `${error.data.detail}. Retrying in ${seconds} s.`;
    }
    if (error instanceof ApiError && (error.status === 401 || error.status === 403)) {
      return `You are not logged in any more. Log in again in another tab; retrying in ${seconds} s.`;
    }
    return `Could not load the next task (${error.message}). Retrying in ${seconds} s…`;
  }

  function startPrefetch() {
    const slot = { lease: undefined, promise: null };
    slot.promise = requestLease().then(
      (lease) => {
        slot.lease = lease;
        if (lease) preloadImages(lease);
        refreshProgress();
        return lease;
      },
      () => undefined, // failed: showNextTask asks again
    );
    state.prefetch = slot;
  }

  const preloaded = [];

  function preloadImages(lease) {
    const urls = [lease.task.source.url, ...lease.task.variants.map((v) => v.url)];
    preloaded.length = 0;
    for (const url of urls) {
      const image = new Image();
      image.decoding = "async";
      image.src = url;
      preloaded.push(image);
    }
  }

  async function showNextTask() {
    const slot = state.prefetch;
    state.prefetch = null;
    state.current = null;
    let lease = slot ? await slot.promise : undefined;
    if (lease && Date.parse(lease.expires_at) <= Date.now()) {
      lease = undefined; // prefetched long ago and expired: its task may be someone else's now
    }
    if (!lease) {
      // No prefetch, it failed, or it found nothing then: work may have been freed since.
      showLoading();
      lease = await requestLeaseWithRetry();
    }
    if (!lease) {
      showDone();
      return;
    }
    showTask(lease);
    startPrefetch();
  }

  // --- work on one assignment (persisted) ----------------------------------------------

  function workKey(assignmentId) {
    return `${STORAGE_PREFIX}work:${assignmentId}`;
  }

  function loadWork(lease) {
    const saved = readJSON(workKey(lease.id)) || {};
    const ids = lease.task.variants.map((v) => v.id);
    return {
      assignmentId: lease.id,
      clientId: typeof saved.clientId === "string" ? saved.clientId : newClientId(),
      ranking: cleanRanking(saved.ranking, ids),
      unsure: saved.unsure === true,
      scores: cleanScores(saved.scores, ids),
      notes: cleanNotes(saved.notes, ids),
      rankingMs: Number.isInteger(saved.rankingMs) ? saved.rankingMs : null,
      elapsedMs: Number.isInteger(saved.elapsedMs) ? saved.elapsedMs : 0,
    };
  }

  function cleanRanking(raw, ids) {
    if (!Array.isArray(raw)) return [];
    const seen = new Set();
    return raw
      .filter(Array.isArray)
      .map((tier) => tier.filter((id) => ids.includes(id) && !seen.has(id) && seen.add(id)))
      .filter((tier) => tier.length > 0);
  }

  function cleanScores(raw, ids) {
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

  function cleanNotes(raw, ids) {
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

  function saveWork() {
    const current = state.current;
    if (!current) return;
    current.work.elapsedMs = clockElapsed(current.clock);
    writeJSON(workKey(current.lease.id), { ...current.work, savedAt: Date.now() });
  }

  function forgetWork(assignmentId) {
    try {
      localStorage.removeItem(workKey(assignmentId));
    } catch {
      // ignore
    }
  }

  function pruneOldWork() {
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

  function makeClock(baseMs) {
    return { baseMs, runningSince: document.hidden ? null : performance.now() };
  }

  function clockElapsed(clock) {
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

  function noteActivity() {
    lastActivity = performance.now();
    if (state.current && !document.hidden) resumeClock(state.current.clock);
  }

  function checkIdle() {
    if (state.current && performance.now() - lastActivity > IDLE_MS) {
      pauseClockAt(state.current.clock, lastActivity + IDLE_MS);
    }
  }

  function onVisibilityChange() {
    if (!state.current) return;
    if (document.hidden) {
      pauseClock(state.current.clock);
      saveWork();
    } else {
      resumeClock(state.current.clock);
    }
  }

  // --- ranking -------------------------------------------------------------------------

  function variantIds() {
    return state.current.lease.task.variants.map((v) => v.id);
  }

  function rankedIds() {
    return state.current.work.ranking.flat();
  }

  function unrankedIds() {
    const ranked = new Set(rankedIds());
    return variantIds().filter((id) => !ranked.has(id));
  }

  function rankingComplete() {
    return state.current !== null && unrankedIds().length === 0;
  }

  function tierIndexOf(id) {
    return state.current.work.ranking.findIndex((tier) => tier.includes(id));
  }

  /** Change the ranking through one door: undo snapshot, timing, save, render. */
  function changeRanking(mutate) {
    const work = state.current.work;
    const before = JSON.stringify(work.ranking);
    const next = mutate(JSON.parse(before)).filter((tier) => tier.length > 0);
    if (JSON.stringify(next) === before) return;
    state.undo.push(JSON.parse(before));
    work.ranking = next;
    noteRankingTime();
    if (isPairwise && rankingComplete()) moveCursorToFirstUnset();
    commit();
  }

  function noteRankingTime() {
    const work = state.current.work;
    // "ranking" = from the task shown to the (latest) moment the ranking became complete.
    work.rankingMs = rankingComplete() ? clockElapsed(state.current.clock) : null;
  }

  function withoutId(ranking, id) {
    return ranking.map((tier) => tier.filter((other) => other !== id));
  }

  /** Keyboard placement: a new tier at the end, or (tie) into the last tier. */
  function placeVariant(id, tie) {
    changeRanking((ranking) => {
      const rest = withoutId(ranking, id).filter((tier) => tier.length > 0);
      if (tie && rest.length > 0) rest[rest.length - 1].push(id);
      else rest.push([id]);
      return rest;
    });
  }

  /** Drop onto tier `tierIndex`: join it (a tie). */
  function joinTier(id, tierIndex) {
    changeRanking((ranking) => {
      const target = ranking[tierIndex];
      if (!target || target.includes(id)) return ranking;
      const cleaned = withoutId(ranking, id);
      cleaned[tierIndex].push(id);
      return cleaned;
    });
  }

  /** Drop into the gap before tier `gapIndex` (0..tiers): a new tier there. */
  function insertTier(id, gapIndex) {
    changeRanking((ranking) => {
      // withoutId leaves an emptied tier in place, so the indices still match the screen;
      // changeRanking drops empty tiers afterwards.
      const cleaned = withoutId(ranking, id);
      cleaned.splice(gapIndex, 0, [id]);
      return cleaned;
    });
  }

  function unrank(id) {
    changeRanking((ranking) => withoutId(ranking, id));
  }

  function resetRanking() {
    changeRanking(() => []);
    state.tieArmed = false;
  }

  function undoRanking() {
    const previous = state.undo.pop();
    if (!previous) {
      toast("Nothing to undo.");
      return;
    }
    state.current.work.ranking = previous;
    noteRankingTime();
    commit();
  }

  function placeByLetter(index, tie) {
    const ids = variantIds();
    if (index >= ids.length) return;
    placeVariant(ids[index], tie || state.tieArmed);
    state.tieArmed = false;
    renderRanking();
  }

  function armTie() {
    if (state.current.work.ranking.length === 0) {
      toast("Place a variant first, then tie the next one with it.");
      return;
    }
    state.tieArmed = !state.tieArmed;
    renderRanking();
  }

  function disarmTie() {
    if (!state.tieArmed) return;
    state.tieArmed = false;
    renderRanking();
  }

  function choosePair(choice) {
    const [left, right] = variantIds();
    const rankings = { left: [[left], [right]], right: [[right], [left]], tie: [[left, right]] };
    changeRanking(() => rankings[choice]);
  }

  function pairChoice() {
    const [left, right] = variantIds();
    const ranking = state.current.work.ranking;
    if (ranking.length === 1 && ranking[0].length === 2) return "tie";
    if (ranking.length === 2 && ranking[0][0] === left) return "left";
    if (ranking.length === 2 && ranking[0][0] === right) return "right";
    return null;
  }

  // --- scores and notes -----------------------------------------------------------------

  function cellCount() {
    return variantIds().length * aspects.length;
  }

  function cellIndex(cursor) {
    return cursor.variant * aspects.length + cursor.aspect;
  }

  function cursorAt(index) {
    return { variant: Math.floor(index / aspects.length), aspect: index % aspects.length };
  }

  function scoreOf(variantIndex, aspectIndex) {
    const id = variantIds()[variantIndex];
    return state.current.work.scores[id][aspects[aspectIndex].key];
  }

  function missingScores() {
    let missing = 0;
    for (let v = 0; v < variantIds().length; v += 1) {
      for (let a = 0; a < aspects.length; a += 1) if (scoreOf(v, a) === undefined) missing += 1;
    }
    return missing;
  }

  function firstUnsetIndex() {
    for (let i = 0; i < cellCount(); i += 1) {
      const cell = cursorAt(i);
      if (scoreOf(cell.variant, cell.aspect) === undefined) return i;
    }
    return -1;
  }

  function moveCursorToFirstUnset() {
    const index = firstUnsetIndex();
    if (index >= 0) state.cursor = cursorAt(index);
  }

  function setScore(variantIndex, aspectIndex, value) {
    const id = variantIds()[variantIndex];
    state.current.work.scores[id][aspects[aspectIndex].key] = value;
  }

  function scoreAtCursor(value) {
    setScore(state.cursor.variant, state.cursor.aspect, value);
    advanceCursor();
    commit();
  }

  function advanceCursor() {
    const next = cellIndex(state.cursor) + 1;
    if (next < cellCount()) {
      state.cursor = cursorAt(next);
    } else {
      moveCursorToFirstUnset();
    }
  }

  function moveCursor(dVariant, dAspect) {
    const variants = variantIds().length;
    state.cursor = {
      variant: (state.cursor.variant + dVariant + variants) % variants,
      aspect: (state.cursor.aspect + dAspect + aspects.length) % aspects.length,
    };
    renderCursor();
  }

  /** Tab through the cells; false at either end so the browser moves focus on. */
  function tabCursor(step) {
    const next = cellIndex(state.cursor) + step;
    const insideGrid = document.activeElement && document.activeElement.closest(".cell");
    if (insideGrid && (next < 0 || next >= cellCount())) return false;
    if (!insideGrid) {
      // Entering the grid from outside: land on the current cell.
      focusCurrentCell();
      return true;
    }
    state.cursor = cursorAt(next);
    renderCursor();
    focusCurrentCell();
    return true;
  }

  function noteOf(id, aspectKey) {
    const notes = state.current.work.notes[id];
    return notes ? notes[aspectKey] || "" : "";
  }

  function setNote(id, aspectKey, text) {
    const notes = state.current.work.notes;
    if (text.trim()) {
      notes[id] = notes[id] || {};
      notes[id][aspectKey] = text;
    } else if (notes[id]) {
      delete notes[id][aspectKey];
      if (Object.keys(notes[id]).length === 0) delete notes[id];
    }
  }

  // --- completeness and submission -------------------------------------------------------

  function missingSummary() {
    const parts = [];
    const unranked = unrankedIds().length;
    if (isPairwise && unranked > 0) parts.push("choose the better one (or tie)");
    else if (unranked > 0) parts.push(`rank ${unranked} more`);
    const scores = missingScores();
    if (scores > 0) parts.push(`${scores} score${scores === 1 ? "" : "s"} missing`);
    return parts.join(" · ");
  }

  function buildJudgement(work) {
    const total = clockElapsed(state.current.clock);
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

  async function submitCurrent() {
    if (!state.current || state.submitting) return;
    const missing = missingSummary();
    if (missing) {
      toast(`Not yet: ${missing}.`);
      return;
    }
    const { lease, work } = state.current;
    const item = {
      kind: "judgement",
      assignmentId: lease.id,
      url: urlFor(config.urls.judgement, lease.id),
      body: buildJudgement(work),
      label: lease.task.instruction,
    };
    state.submitting = true;
    renderActionBar();
    await sendFromScreen(item);
  }

  async function skipCurrent(reason) {
    if (!state.current || state.submitting) return;
    const { lease } = state.current;
    const item = {
      kind: "skip",
      assignmentId: lease.id,
      url: urlFor(config.urls.skip, lease.id),
      body: { reason },
      label: lease.task.instruction,
    };
    state.submitting = true;
    renderActionBar();
    await sendFromScreen(item);
  }

  /** First attempt while the task is on screen: a 400 keeps it there to be fixed. */
  async function sendFromScreen(item) {
    enqueue(item); // persisted first: if the tab dies now, the next load sends it
    setSaveStatus("saving");
    const outcome = await sendItem(item);
    state.submitting = false;
    if (outcome.kind === "invalid") {
      dequeue(item);
      showErrors(outcome.errors);
      setSaveStatus("idle");
      renderActionBar();
      return;
    }
    if (outcome.kind === "saved" || outcome.kind === "gone") {
      dequeue(item);
      if (outcome.kind === "gone") {
        toast(`${capitalise(outcome.detail)} — moving on to the next task.`, "warn");
      }
      refreshProgress();
    } else {
      scheduleFlush(); // network error, 5xx, logged out: retried in the background
    }
    updateSaveStatus(outcome);
    forgetWork(item.assignmentId);
    await showNextTask();
  }

  async function sendItem(item) {
    state.sending.add(item);
    try {
      const { status, data } = await api("POST", item.url, item.body);
      if (status === 200 || status === 201) return { kind: "saved" };
      if (status === 409 || status === 404) {
        return { kind: "gone", detail: (data && data.detail) || "This task is no longer yours" };
      }
      if (status === 400) return { kind: "invalid", errors: data || {} };
      if (status === 401 || status === 403) return { kind: "auth" };
      return { kind: "retry" };
    } catch {
      return { kind: "retry" }; // network error
    } finally {
      state.sending.delete(item);
    }
  }

  // --- outbox: persisted, retried with exponential backoff ------------------------------

  function loadOutbox() {
    const saved = readJSON(OUTBOX_KEY);
    return Array.isArray(saved) ? saved.filter((item) => item && item.url && item.body) : [];
  }

  function persistOutbox() {
    writeJSON(OUTBOX_KEY, state.outbox);
  }

  function enqueue(item) {
    state.outbox.push(item);
    persistOutbox();
  }

  function dequeue(item) {
    state.outbox = state.outbox.filter((other) => other !== item);
    persistOutbox();
  }

  function backoffDelay(attempt) {
    const base = Math.min(RETRY_MAX_MS, RETRY_BASE_MS * 2 ** attempt);
    return Math.round(base * (0.75 + Math.random() * 0.5));
  }

  function sleep(ms) {
    return new Promise((resolve) => setTimeout(resolve, ms));
  }

  function scheduleFlush() {
    if (state.flushTimer !== null) return;
    const delay = backoffDelay(state.flushAttempts);
    state.flushAttempts += 1;
    state.flushTimer = setTimeout(flushOutbox, delay);
  }

  async function flushOutbox() {
    clearTimeout(state.flushTimer);
    state.flushTimer = null;
    for (const item of [...state.outbox]) {
      if (state.sending.has(item)) continue;
      const outcome = await sendItem(item);
      if (outcome.kind === "retry" || outcome.kind === "auth") {
        updateSaveStatus(outcome);
        scheduleFlush();
        return;
      }
      dequeue(item);
      if (outcome.kind === "gone") toast(`Not saved: ${outcome.detail}.`, "warn");
      if (outcome.kind === "invalid") {
        toast(`A judgement was refused: ${formatErrors(outcome.errors)}`, "error", 0);
      }
    }
    state.flushAttempts = 0;
    refreshProgress();
    updateSaveStatus({ kind: "saved" });
  }

  // --- progress ---------------------------------------------------------------------------

  async function refreshProgress() {
    try {
      const { status, data } = await api("GET", config.urls.project);
      if (status === 200 && data && data.progress) renderProgress(data.progress);
    } catch {
      // the line just stays as it was
    }
  }

  // --- rendering ----------------------------------------------------------------------------

  function commit() {
    saveWork();
    renderAll();
  }

  function renderAll() {
    if (!state.current) return;
    renderRanking();
    renderScores();
    renderCursor();
    renderCards();
    renderActionBar();
  }

  function renderProgress(progress) {
    if (progress) state.progress = progress;
    if (!state.progress) return;
    // The server counts tasks not yet leased to me; the ones on screen are still open too.
    const held = keepIds().length - state.outbox.length;
    const open = state.progress.open_for_me + Math.max(0, held);
    el.progress.textContent = `${state.progress.judged_by_me} judged by you · ${open} open`;
  }

  function setSaveStatus(kind, text) {
    const labels = {
      idle: "",
      saving: "Saving…",
      saved: "Saved ✓",
      retrying: "Offline, retrying…",
      auth: "Logged out: log in again, your work is kept",
    };
    el.saveStatus.dataset.state = kind;
    el.saveStatus.textContent = text || labels[kind] || "";
  }

  function updateSaveStatus(outcome) {
    const pending = state.outbox.length;
    if (outcome.kind === "auth") setSaveStatus("auth");
    else if (pending > 0) setSaveStatus("retrying", `Offline, retrying (${pending} waiting)…`);
    else setSaveStatus("saved");
  }

  function showSection(name) {
    el.loading.hidden = name !== "loading";
    el.task.hidden = name !== "task";
    el.done.hidden = name !== "done";
  }

  function showLoading() {
    showSection("loading");
  }

  function showDone() {
    state.current = null;
    state.done = true;
    delete el.app.dataset.assignmentId;
    showSection("done");
    refreshProgress();
    el.done.querySelector("a").focus({ preventScroll: true });
  }

  function showFatal(message) {
    el.fatalMessage.textContent = message;
    el.fatal.hidden = false;
  }

  function hideFatal() {
    el.fatal.hidden = true;
  }

  function showErrors(errors) {
    el.errors.textContent = formatErrors(errors);
  }

  function formatErrors(errors) {
    if (!errors || typeof errors !== "object") return "the server refused it";
    return Object.entries(errors)
      .map(([field, messages]) => `${field}: ${[].concat(messages).join("; ")}`)
      .join(" · ");
  }

  let toastTimer = null;

  function toast(message, kind = "info", duration = TOAST_MS) {
    el.toast.textContent = message;
    el.toast.dataset.kind = kind;
    el.toast.hidden = false;
    clearTimeout(toastTimer);
    if (duration > 0) toastTimer = setTimeout(() => (el.toast.hidden = true), duration);
  }

  function showTask(lease) {
    const work = loadWork(lease);
    state.current = { lease, work, clock: makeClock(work.elapsedMs) };
    state.undo = [];
    state.tieArmed = false;
    state.cursor = { variant: 0, aspect: 0 };
    moveCursorToFirstUnset();
    el.app.dataset.assignmentId = String(lease.id);
    el.instruction.textContent = lease.task.instruction;
    el.category.textContent = lease.task.category;
    el.errors.textContent = "";
    buildGallery(lease);
    showSection("task");
    renderAll();
    saveWork();
    if (document.activeElement && document.activeElement !== document.body) {
      document.activeElement.blur();
    }
  }

  // The gallery (source + variant cards) is built once per task; renders only toggle state.

  function buildGallery(lease) {
    const variants = lease.task.variants;
    el.gallery.replaceChildren(
      buildSourceCard(lease.task.source),
      ...variants.map((variant, index) => buildVariantCard(variant, index)),
    );
    el.gallery.style.setProperty("--columns", String(galleryColumns(variants.length + 1)));
  }

  function galleryColumns(cards) {
    return cards <= 5 ? cards : Math.ceil(cards / 2);
  }

  function buildSourceCard(source) {
    return h(
      "figure",
      { class: "card source-card" },
      h("figcaption", { class: "card-head" }, h("span", { class: "letter" }, "Source")),
      h(
        "button",
        {
          type: "button",
          class: "image-button",
          "aria-label": "Enlarge the source image",
          onclick: () => openLightbox(-1),
        },
        h("img", {
          src: source.url,
          width: source.width,
          height: source.height,
          alt: "Source image",
          decoding: "async",
        }),
      ),
      h(
        "dl",
        { class: "aspect-legend" },
        aspects.map((aspect) => [
          h("dt", {}, aspect.label),
          h("dd", {}, aspect.description || ""),
        ]),
      ),
    );
  }

  function variantCaption(index) {
    if (!isPairwise) return letterFor(index);
    return index === 0 ? "A · left" : "B · right";
  }

  function buildVariantCard(variant, index) {
    const caption = variantCaption(index);
    return h(
      "article",
      {
        class: "card variant-card",
        dataset: { variantId: variant.id, index },
        "aria-label": `Variant ${caption}`,
      },
      h(
        "header",
        {
          class: "card-head",
          draggable: isPairwise ? null : "true",
          dataset: { dragId: variant.id },
          title: isPairwise ? null : "Drag into the ranking above",
        },
        h("span", { class: "letter" }, caption),
        h("span", { class: "rank-badge", "aria-live": "polite" }),
        isPairwise ? null : h("span", { class: "drag-handle", "aria-hidden": "true" }, "⠿"),
      ),
      h(
        "button",
        {
          type: "button",
          class: "image-button",
          "aria-label": `Enlarge variant ${caption}`,
          onclick: () => openLightbox(index),
        },
        h("img", {
          class: "variant-img",
          src: variant.url,
          width: variant.width,
          height: variant.height,
          alt: `Variant ${caption}`,
          decoding: "async",
        }),
        h("span", { class: "flick-badge", "aria-hidden": "true" }, "SOURCE"),
      ),
      h(
        "div",
        { class: "scores", role: "group", "aria-label": `Scores for variant ${caption}` },
        aspects.map((aspect, aspectIndex) => buildScoreRow(variant, index, aspect, aspectIndex)),
      ),
      buildNoteEditor(variant, index),
    );
  }

  function shortLabel(aspect) {
    const words = (aspect.label || aspect.key).split(/\s+/);
    // "Instruction following" → "Following": the distinctive word fits a narrow card.
    return words.length > 1 ? capitalise(words[words.length - 1]) : capitalise(words[0]);
  }

  function capitalise(text) {
    return text.charAt(0).toUpperCase() + text.slice(1);
  }

  function buildScoreRow(variant, variantIndex, aspect, aspectIndex) {
    const caption = variantCaption(variantIndex);
    const hint = aspect.description ? `${aspect.label}: ${aspect.description}` : aspect.label;
    return h(
      "div",
      { class: "score-row" },
      h("span", { class: "aspect-name", title: hint }, shortLabel(aspect)),
      h(
        "div",
        {
          class: "cell",
          role: "radiogroup",
          tabindex: "-1",
          "aria-label": `${caption}, ${aspect.label}`,
          title: hint,
          dataset: { variant: variant.id, aspect: aspect.key, v: variantIndex, a: aspectIndex },
          onfocus: () => {
            state.cursor = { variant: variantIndex, aspect: aspectIndex };
            renderCursor();
          },
        },
        SCORE_VALUES.map((value) =>
          h(
            "button",
            {
              type: "button",
              role: "radio",
              tabindex: "-1",
              "aria-checked": "false",
              "aria-label": `${value}`,
              dataset: { value },
              onclick: () => onScoreClick(variantIndex, aspectIndex, value),
            },
            String(value),
          ),
        ),
      ),
      h(
        "button",
        {
          type: "button",
          class: "note-button",
          tabindex: "-1",
          title: `Note on ${caption}, ${aspect.label} (n)`,
          "aria-label": `Note on ${caption}, ${aspect.label}`,
          onclick: () => {
            state.cursor = { variant: variantIndex, aspect: aspectIndex };
            openNote();
          },
        },
        "✎",
      ),
    );
  }

  function buildNoteEditor(variant, index) {
    const textarea = h("textarea", {
      rows: "2",
      maxlength: "2000",
      placeholder: "What fails here? (Enter or Esc to leave, Shift+Enter for a new line)",
      onkeydown: onNoteKeyDown,
      oninput: onNoteInput,
      onblur: () => closeNote(),
    });
    return h(
      "div",
      { class: "note-editor", hidden: true, dataset: { index } },
      h("label", { class: "note-label" }, textarea),
    );
  }

  function onScoreClick(variantIndex, aspectIndex, value) {
    state.cursor = { variant: variantIndex, aspect: aspectIndex };
    setScore(variantIndex, aspectIndex, value);
    commit();
  }

  function cardAt(index) {
    return el.gallery.querySelector(`.variant-card[data-index="${index}"]`);
  }

  function renderScores() {
    const ids = variantIds();
    for (const cell of el.gallery.querySelectorAll(".cell")) {
      const value = scoreOf(Number(cell.dataset.v), Number(cell.dataset.a));
      cell.classList.toggle("unset", value === undefined);
      for (const button of cell.querySelectorAll("button")) {
        const checked = value !== undefined && Number(button.dataset.value) === value;
        button.setAttribute("aria-checked", String(checked));
      }
      const note = noteOf(ids[Number(cell.dataset.v)], cell.dataset.aspect);
      const noteButton = cell.nextElementSibling;
      noteButton.classList.toggle("has-note", Boolean(note));
      noteButton.title = note ? `Note: ${note}` : noteButton.getAttribute("aria-label") + " (n)";
    }
  }

  function currentCell() {
    const { variant, aspect } = state.cursor;
    return el.gallery.querySelector(`.cell[data-v="${variant}"][data-a="${aspect}"]`);
  }

  function renderCursor() {
    for (const cell of el.gallery.querySelectorAll(".cell.current")) cell.classList.remove("current");
    const cell = currentCell();
    if (cell) cell.classList.add("current");
    for (const card of el.gallery.querySelectorAll(".variant-card")) {
      card.classList.toggle("focused", Number(card.dataset.index) === state.cursor.variant);
    }
    const focusInGrid = document.activeElement && document.activeElement.closest(".cell");
    if (focusInGrid && focusInGrid !== cell) focusCurrentCell();
    renderFlick();
  }

  function focusCurrentCell() {
    const cell = currentCell();
    if (cell) cell.focus({ preventScroll: true });
  }

  function ordinal(n) {
    const suffix = n % 10 === 1 && n % 100 !== 11 ? "st" : n % 10 === 2 && n % 100 !== 12 ? "nd"
      : n % 10 === 3 && n % 100 !== 13 ? "rd" : "th";
    return `${n}${suffix}`;
  }

  function rankBadgeText(id) {
    const ranking = state.current.work.ranking;
    const tier = tierIndexOf(id);
    if (tier < 0) return "";
    if (isPairwise) {
      if (ranking.length === 1) return "tie";
      return tier === 0 ? "better" : "worse";
    }
    return ranking[tier].length > 1 ? `${ordinal(tier + 1)} (tie)` : ordinal(tier + 1);
  }

  function renderCards() {
    const ids = variantIds();
    for (const card of el.gallery.querySelectorAll(".variant-card")) {
      const id = ids[Number(card.dataset.index)];
      const badge = card.querySelector(".rank-badge");
      badge.textContent = rankBadgeText(id);
      card.classList.toggle("ranked", tierIndexOf(id) >= 0);
    }
  }

  function renderActionBar() {
    const missing = missingSummary();
    el.submit.disabled = Boolean(missing) || state.submitting;
    if (missing) el.submit.setAttribute("aria-describedby", "missing");
    else el.submit.removeAttribute("aria-describedby");
    el.submit.title = missing ? `Not yet: ${missing}` : "Submit (Enter)";
    el.missing.textContent = state.submitting ? "" : missing ? `To do: ${missing}` : "Ready to submit";
    el.missing.classList.toggle("ready", !missing);
    el.unsure.setAttribute("aria-pressed", String(state.current.work.unsure));
    el.unsure.classList.toggle("on", state.current.work.unsure);
    el.reset.hidden = isPairwise;
  }

  // --- ranking strip (K ≥ 2) and choice bar (pairwise) --------------------------------------

  function renderRanking() {
    if (!state.current) return;
    el.ranking.replaceChildren(isPairwise ? buildChoiceBar() : buildRankingStrip());
  }

  function buildChoiceBar() {
    const choice = pairChoice();
    const button = (name, label, key) =>
      h(
        "button",
        {
          type: "button",
          class: `choice choice-${name}`,
          "aria-pressed": String(choice === name),
          onclick: () => choosePair(name),
        },
        label,
        " ",
        h("kbd", {}, key),
      );
    return h(
      "div",
      { class: "choice-bar", role: "group", "aria-label": "Which edit is better?" },
      h("span", { class: "strip-label" }, "Which is better?"),
      button("left", "← A (left) is better", "1"),
      button("tie", "Tie", "t"),
      button("right", "B (right) is better →", "2"),
      h(
        "span",
        { class: "hint" },
        choice ? "Now score both; Backspace undoes the choice." : "1/← left · 2/→ right · t tie",
      ),
    );
  }

  function buildRankingStrip() {
    const ranking = state.current.work.ranking;
    const strip = h("div", { class: "ranking-strip" });
    strip.append(h("span", { class: "strip-label" }, "Best"));
    if (ranking.length === 0) {
      strip.append(
        h(
          "div",
          { class: "gap gap-empty", dataset: { gap: 0 }, "aria-label": "Empty ranking" },
          "Press the letters best first, or drag variants here",
        ),
      );
    } else {
      ranking.forEach((tier, index) => {
        strip.append(buildGap(index), buildTier(tier, index));
      });
      strip.append(buildGap(ranking.length));
    }
    strip.append(h("span", { class: "strip-label" }, "Worst"));
    strip.append(buildPool());
    if (state.tieArmed) strip.append(h("span", { class: "tie-armed" }, "= tie: next letter joins the last tier"));
    return strip;
  }

  function buildGap(index) {
    return h("div", {
      class: "gap",
      dataset: { gap: index },
      "aria-hidden": "true",
      title: "Drop here for a new tier",
    });
  }

  function buildTier(tier, index) {
    return h(
      "div",
      {
        class: `tier${tier.length > 1 ? " tied" : ""}`,
        dataset: { tier: index },
        role: "group",
        "aria-label": `Rank ${index + 1}${tier.length > 1 ? " (tie)" : ""}`,
      },
      h("span", { class: "tier-num", "aria-hidden": "true" }, String(index + 1)),
      tier.map((id) => buildChip(id, `rank ${index + 1}`)),
    );
  }

  function buildPool() {
    const unranked = unrankedIds();
    return h(
      "div",
      { class: `pool${unranked.length === 0 ? " empty" : ""}`, dataset: { pool: "1" }, role: "group", "aria-label": "Not ranked yet" },
      h("span", { class: "pool-label" }, unranked.length ? "To rank:" : "All ranked ✓"),
      unranked.map((id) => buildChip(id, "not ranked")),
    );
  }

  function buildChip(id, where) {
    const index = variantIds().indexOf(id);
    const variant = state.current.lease.task.variants[index];
    const letter = letterFor(index);
    const ranked = where !== "not ranked";
    return h(
      "button",
      {
        type: "button",
        class: "chip",
        draggable: "true",
        dataset: { chip: id, dragId: id },
        "aria-label": ranked
          ? `Variant ${letter}, ${where}. Press to take it out of the ranking.`
          : `Variant ${letter}, not ranked. Press to place it next (Shift: tie).`,
        title: ranked ? "Drag to move; click to take out" : "Click to place next (Shift+click: tie); or drag",
        onclick: (event) => (ranked ? unrank(id) : placeVariant(id, event.shiftKey)),
      },
      h("img", { src: variant.url, alt: "", width: variant.width, height: variant.height }),
      h("span", {}, letter),
    );
  }

  // --- drag and drop ---------------------------------------------------------------------

  function onDragStart(event) {
    const source = event.target.closest("[data-drag-id]");
    if (!source || !state.current) return;
    state.dragId = Number(source.dataset.dragId);
    event.dataTransfer.effectAllowed = "move";
    event.dataTransfer.setData("text/plain", String(state.dragId));
    document.body.classList.add("dragging");
  }

  function dropTargetOf(event) {
    return event.target.closest && event.target.closest(".tier, .gap, .pool");
  }

  function onDragOver(event) {
    const target = dropTargetOf(event);
    if (!target || state.dragId === null) return;
    event.preventDefault();
    event.dataTransfer.dropEffect = "move";
    for (const other of el.ranking.querySelectorAll(".drag-over")) {
      if (other !== target) other.classList.remove("drag-over");
    }
    target.classList.add("drag-over");
  }

  function onDragLeave(event) {
    const target = dropTargetOf(event);
    if (target && !target.contains(event.relatedTarget)) target.classList.remove("drag-over");
  }

  function onDrop(event) {
    const target = dropTargetOf(event);
    const raw = event.dataTransfer.getData("text/plain");
    const id = state.dragId !== null ? state.dragId : Number(raw);
    endDrag();
    if (!target || !state.current || !variantIds().includes(id)) return;
    event.preventDefault();
    if (target.dataset.tier !== undefined) joinTier(id, Number(target.dataset.tier));
    else if (target.dataset.gap !== undefined) insertTier(id, Number(target.dataset.gap));
    else unrank(id);
  }

  function endDrag() {
    state.dragId = null;
    document.body.classList.remove("dragging");
    for (const node of document.querySelectorAll(".drag-over")) node.classList.remove("drag-over");
  }

  // --- flick (hold Space) and lightbox ------------------------------------------------------

  function startFlick() {
    if (state.flicking) return;
    state.flicking = true;
    renderFlick();
  }

  function stopFlick() {
    if (!state.flicking) return;
    state.flicking = false;
    renderFlick();
  }

  function renderFlick() {
    if (!state.current) return;
    const { task } = state.current.lease;
    el.gallery.querySelectorAll(".variant-card").forEach((card, index) => {
      const flicked = state.flicking && state.lightboxIndex === null && index === state.cursor.variant;
      const img = card.querySelector(".variant-img");
      const wanted = flicked ? task.source.url : task.variants[index].url;
      if (img.getAttribute("src") !== wanted) img.setAttribute("src", wanted);
      card.classList.toggle("flicked", flicked);
    });
    if (state.lightboxIndex !== null) renderLightbox();
  }

  function openLightbox(index) {
    if (!state.current) return;
    state.lastFocus = document.activeElement;
    state.lightboxIndex = index;
    el.lightbox.hidden = false;
    renderLightbox();
    el.lightboxClose.focus({ preventScroll: true });
  }

  function closeLightbox() {
    state.lightboxIndex = null;
    state.flicking = false;
    el.lightbox.hidden = true;
    renderFlick();
    if (state.lastFocus && state.lastFocus.focus) state.lastFocus.focus({ preventScroll: true });
  }

  function moveLightbox(step) {
    const count = variantIds().length;
    const from = state.lightboxIndex < 0 ? (step > 0 ? -1 : 0) : state.lightboxIndex;
    state.lightboxIndex = (from + step + count) % count;
    state.cursor = { variant: state.lightboxIndex, aspect: state.cursor.aspect };
    renderCursor();
    renderLightbox();
  }

  function renderLightbox() {
    const { task } = state.current.lease;
    const index = state.lightboxIndex;
    const showSource = index < 0 || state.flicking;
    const image = showSource ? task.source : task.variants[index];
    el.lightboxImg.src = image.url;
    el.lightboxImg.alt = showSource ? "Source image" : `Variant ${variantCaption(index)}`;
    const name = index < 0 ? "Source" : `Variant ${variantCaption(index)} (${index + 1} of ${task.variants.length})`;
    el.lightboxCaption.textContent = state.flicking && index >= 0
      ? `Source (instead of ${name}) — release Space to go back`
      : `${name} — hold Space for the source · ← → move · Esc closes`;
    el.lightbox.classList.toggle("flicked", state.flicking && index >= 0);
  }

  // --- note editor ----------------------------------------------------------------------------

  function openNote() {
    const { variant, aspect } = state.cursor;
    const card = cardAt(variant);
    if (!card) return;
    closeNote();
    state.noteOpen = { variant, aspect };
    const editor = card.querySelector(".note-editor");
    const textarea = editor.querySelector("textarea");
    const id = variantIds()[variant];
    textarea.value = noteOf(id, aspects[aspect].key);
    textarea.setAttribute("aria-label", `Note on ${variantCaption(variant)}, ${aspects[aspect].label}`);
    editor.dataset.label = `${variantCaption(variant)} · ${aspects[aspect].label}`;
    editor.hidden = false;
    textarea.focus({ preventScroll: true });
  }

  function onNoteInput(event) {
    if (!state.noteOpen) return;
    const { variant, aspect } = state.noteOpen;
    setNote(variantIds()[variant], aspects[aspect].key, event.target.value);
    saveWork();
  }

  function onNoteKeyDown(event) {
    if (event.key === "Escape" || (event.key === "Enter" && !event.shiftKey)) {
      event.preventDefault();
      event.stopPropagation();
      closeNote();
    }
  }

  function closeNote() {
    if (!state.noteOpen) return;
    const card = cardAt(state.noteOpen.variant);
    state.noteOpen = null;
    if (card) {
      const editor = card.querySelector(".note-editor");
      editor.hidden = true;
      if (editor.contains(document.activeElement)) document.activeElement.blur();
    }
    renderScores();
  }

  // --- dialogs: skip, help, guidelines ---------------------------------------------------------

  function openSkipDialog() {
    el.skipForm.reset();
    el.skipError.textContent = "";
    el.skipDialog.showModal();
  }

  function onSkipKeyDown(event) {
    const typing = event.target === el.skipDetails;
    if (!typing && /^[1-9]$/.test(event.key)) {
      const radios = el.skipForm.querySelectorAll('input[name="reason"]');
      const radio = radios[Number(event.key) - 1];
      if (radio) {
        event.preventDefault();
        radio.checked = true;
        radio.focus();
      }
    } else if (event.key === "Enter" && event.target.type === "radio") {
      event.preventDefault();
      el.skipForm.requestSubmit();
    }
  }

  function onSkipSubmit(event) {
    event.preventDefault();
    const chosen = el.skipForm.querySelector('input[name="reason"]:checked');
    const details = el.skipDetails.value.trim();
    if (!chosen) {
      el.skipError.textContent = "Pick a reason (1–5).";
      return;
    }
    if (chosen.value === "Other" && !details) {
      el.skipError.textContent = "Say briefly why in Details.";
      el.skipDetails.focus();
      return;
    }
    el.skipDialog.close();
    skipCurrent(details ? `${chosen.value}: ${details}` : chosen.value);
  }

  function toggleHelp() {
    if (el.helpDialog.open) el.helpDialog.close();
    else el.helpDialog.showModal();
  }

  function onHelpKeyDown(event) {
    if (event.key === "?") {
      event.preventDefault();
      el.helpDialog.close();
    }
  }

  function toggleGuidelines() {
    if (!el.guidelines) return;
    el.guidelines.hidden = !el.guidelines.hidden;
    if (el.guidelinesToggle) el.guidelinesToggle.setAttribute("aria-expanded", String(!el.guidelines.hidden));
  }

  function toggleUnsure() {
    state.current.work.unsure = !state.current.work.unsure;
    commit();
    toast(state.current.work.unsure ? "Marked unsure." : "No longer marked unsure.");
  }

  // --- keyboard ----------------------------------------------------------------------------------

  function isTyping(target) {
    return target && (target.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(target.tagName));
  }

  /** A focused control (not a score cell) that Enter/Space should activate natively. */
  function isActivatable(target) {
    return target && target.closest && target.closest("button, a, summary") && !target.closest(".cell");
  }

  function onKeyDown(event) {
    if (event.defaultPrevented || isTyping(event.target)) return;
    if (el.skipDialog.open || el.helpDialog.open) return;
    if (event.altKey || event.metaKey) return;
    if (state.lightboxIndex !== null) {
      onLightboxKey(event);
      return;
    }
    if (!state.current) return;
    if (event.ctrlKey) {
      if (event.key === "Enter") {
        event.preventDefault();
        submitCurrent();
      }
      return;
    }
    if ((event.key === "Enter" || event.key === " ") && isActivatable(event.target)) return;
    const action = actionFor(event);
    if (action) {
      event.preventDefault();
      action();
    }
  }

  function onKeyUp(event) {
    if (event.key === " ") stopFlick();
  }

  /** The key map. Returns a function to run, or null to leave the key to the browser. */
  function actionFor(event) {
    const { key } = event;
    const common = {
      "?": toggleHelp,
      o: toggleGuidelines,
      " ": startFlick,
      Enter: submitCurrent,
      Backspace: undoRanking,
      u: toggleUnsure,
      s: openSkipDialog,
      n: openNote,
      z: () => openLightbox(state.cursor.variant),
      Escape: disarmTie,
      ArrowUp: () => moveCursor(0, -1),
      ArrowDown: () => moveCursor(0, 1),
    };
    if (key === "Tab") {
      if (isActivatable(event.target) && !event.target.closest(".cell")) return null;
      return tabCursor(event.shiftKey ? -1 : 1) ? () => {} : null;
    }
    if (isPairwise) {
      const pairwise = pairwiseAction(key);
      if (pairwise) return pairwise;
    } else {
      if (key === "r") return resetRanking;
      if (key === "=" || key === "+") return armTie;
      const index = LETTER_KEYS.indexOf(key.toLowerCase());
      if (key.length === 1 && index >= 0 && index < variantIds().length) {
        return () => placeByLetter(index, event.shiftKey);
      }
    }
    if (/^[0-5]$/.test(key)) return () => scoreAtCursor(Number(key));
    if (key === "ArrowLeft") return () => moveCursor(-1, 0);
    if (key === "ArrowRight") return () => moveCursor(1, 0);
    return common[key] || null;
  }

  function pairwiseAction(key) {
    if (key === "t") return () => choosePair("tie");
    if (rankingComplete()) return null; // digits and arrows score once the choice is made
    if (key === "1" || key === "ArrowLeft") return () => choosePair("left");
    if (key === "2" || key === "ArrowRight") return () => choosePair("right");
    if (/^[03-5]$/.test(key)) return () => toast("Choose first: 1/← left, 2/→ right, t tie.");
    return null;
  }

  function onLightboxKey(event) {
    const actions = {
      Escape: closeLightbox,
      z: closeLightbox,
      ArrowLeft: () => moveLightbox(-1),
      ArrowRight: () => moveLightbox(1),
      " ": startFlick,
    };
    const action = actions[event.key];
    if (action) {
      event.preventDefault();
      action();
    } else if (event.key === "Tab") {
      event.preventDefault(); // keep focus inside the modal lightbox
      el.lightboxClose.focus();
    }
  }

  // --- start ------------------------------------------------------------------------------------

  function bindElements() {
    for (const [name, id] of Object.entries({
      app: "app",
      loading: "loading",
      task: "task",
      done: "done",
      fatal: "fatal",
      fatalMessage: "fatal-message",
      fatalRetry: "fatal-retry",
      instruction: "instruction",
      category: "category",
      ranking: "ranking",
      gallery: "gallery",
      errors: "errors",
      missing: "missing",
      submit: "submit",
      unsure: "unsure-toggle",
      reset: "reset-ranking",
      skipOpen: "skip-open",
      toast: "toast",
      progress: "progress",
      saveStatus: "save-status",
      lightbox: "lightbox",
      lightboxImg: "lightbox-img",
      lightboxCaption: "lightbox-caption",
      lightboxPrev: "lightbox-prev",
      lightboxNext: "lightbox-next",
      lightboxClose: "lightbox-close",
      skipDialog: "skip-dialog",
      skipForm: "skip-form",
      skipDetails: "skip-details",
      skipError: "skip-error",
      skipCancel: "skip-cancel",
      helpDialog: "help-dialog",
      helpToggle: "help-toggle",
      guidelines: "guidelines",
      guidelinesToggle: "guidelines-toggle",
    })) {
      el[name] = $(id);
    }
  }

  function bindEvents() {
    document.addEventListener("keydown", onKeyDown);
    document.addEventListener("keyup", onKeyUp);
    window.addEventListener("blur", stopFlick);
    document.addEventListener("visibilitychange", onVisibilityChange);
    window.addEventListener("pagehide", saveWork);
    window.addEventListener("online", () => state.outbox.length && flushOutbox());
    for (const type of ["keydown", "pointerdown", "pointermove", "wheel"]) {
      document.addEventListener(type, noteActivity, { passive: true, capture: true });
    }
    setInterval(checkIdle, 5000);
    // Mouse clicks on app buttons must not keep keyboard focus (Enter would re-press them).
    el.app.addEventListener("mousedown", (event) => {
      const button = event.target.closest("button");
      if (button && !button.draggable && !event.target.closest("dialog")) event.preventDefault();
    });
    document.querySelector(".header-tools")?.addEventListener("mousedown", (event) => event.preventDefault());

    el.ranking.addEventListener("dragover", onDragOver);
    el.ranking.addEventListener("dragleave", onDragLeave);
    el.ranking.addEventListener("drop", onDrop);
    el.app.addEventListener("dragstart", onDragStart);
    el.app.addEventListener("dragend", endDrag);

    el.submit.addEventListener("click", submitCurrent);
    el.unsure.addEventListener("click", toggleUnsure);
    el.reset.addEventListener("click", resetRanking);
    el.skipOpen.addEventListener("click", openSkipDialog);
    el.skipForm.addEventListener("submit", onSkipSubmit);
    el.skipDialog.addEventListener("keydown", onSkipKeyDown);
    el.skipCancel.addEventListener("click", () => el.skipDialog.close());
    el.helpToggle.addEventListener("click", toggleHelp);
    el.helpDialog.addEventListener("keydown", onHelpKeyDown);
    el.guidelinesToggle?.addEventListener("click", toggleGuidelines);
    el.fatalRetry.addEventListener("click", () => location.reload());

    el.lightboxClose.addEventListener("click", closeLightbox);
    el.lightboxPrev.addEventListener("click", () => moveLightbox(-1));
    el.lightboxNext.addEventListener("click", () => moveLightbox(1));
    el.lightbox.addEventListener("click", (event) => {
      if (event.target === el.lightbox) closeLightbox();
    });
  }

  function init() {
    bindElements();
    bindEvents();
    pruneOldWork();
    state.outbox = loadOutbox();
    if (state.outbox.length > 0) {
      setSaveStatus("saving", `Sending ${state.outbox.length} saved earlier…`);
      flushOutbox();
    }
    showNextTask();
  }

  init();
})();
