/*
 * The conversation with the server: leases in (the current task, and the next one fetched
 * and its images preloaded while the annotator works), judgements and skips out.
 *
 * Submissions go through a persisted outbox and are retried with backoff using the same
 * client_id, so the server saves each judgement once however often it is sent.
 */
import { api, ApiError, urlFor } from "./api.js";
import { backoffDelay, cleanOutbox, formatErrors, outcomeOf } from "./outbox.js";
import {
  capitalise,
  hideFatal,
  renderActionBar,
  renderProgress,
  setSaveStatus,
  showDone,
  showErrors,
  showFatal,
  showLoading,
  showTask,
  toast,
  updateSaveStatus,
} from "./render.js";
import { buildJudgement, missingSummary } from "./scores.js";
import { aspects, config, isPairwise, keepIds, OUTBOX_KEY, state, variantIds } from "./state.js";
import { clockElapsed, forgetWork, readJSON, writeJSON } from "./work.js";

// --- leases: current, prefetched, next -----------------------------------------------

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

export async function showNextTask() {
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

// --- submission ------------------------------------------------------------------------

export async function submitCurrent() {
  if (!state.current || state.submitting) return;
  const missing = missingSummary(state.current.work, variantIds(), aspects, isPairwise);
  if (missing) {
    toast(`Not yet: ${missing}.`);
    return;
  }
  const { lease, work, clock } = state.current;
  const item = {
    kind: "judgement",
    assignmentId: lease.id,
    url: urlFor(config.urls.judgement, lease.id),
    body: buildJudgement(work, clockElapsed(clock)),
    label: lease.task.instruction,
  };
  state.submitting = true;
  renderActionBar();
  await sendFromScreen(item);
}

export async function skipCurrent(reason) {
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
    return outcomeOf(status, data);
  } catch {
    return { kind: "retry" }; // network error
  } finally {
    state.sending.delete(item);
  }
}

// --- outbox: persisted, retried with exponential backoff ------------------------------

export function loadOutbox() {
  return cleanOutbox(readJSON(OUTBOX_KEY));
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

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function scheduleFlush() {
  if (state.flushTimer !== null) return;
  const delay = backoffDelay(state.flushAttempts);
  state.flushAttempts += 1;
  state.flushTimer = setTimeout(flushOutbox, delay);
}

export async function flushOutbox() {
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

export async function refreshProgress() {
  try {
    const { status, data } = await api("GET", config.urls.project);
    if (status === 200 && data && data.progress) renderProgress(data.progress);
  } catch {
    // the line just stays as it was
  }
}
