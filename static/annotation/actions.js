/*
 * The small functions that change the task on screen: its ranking (keys, clicks, drag and
 * drop), the score cursor, scores, unsure. Each changes state.current, then saves and
 * redraws through commit(); the rules themselves are the pure functions of ranking.js and
 * scores.js.
 */
import { inserted, joined, pairRanking, placed, unrankedIds, withoutId } from "./ranking.js";
import { cellIndex, cursorAt, firstUnsetIndex } from "./scores.js";
import { commit, focusCurrentCell, renderCursor, renderRanking, toast } from "./render.js";
import { aspects, el, isPairwise, state, variantIds } from "./state.js";
import { clockElapsed } from "./work.js";

// --- ranking -------------------------------------------------------------------------

export function rankingComplete() {
  return (
    state.current !== null && unrankedIds(state.current.work.ranking, variantIds()).length === 0
  );
}

/** Change the ranking through one door: undo snapshot, timing, save, render. */
function changeRanking(change) {
  const work = state.current.work;
  const before = JSON.stringify(work.ranking);
  const next = change(work.ranking).filter((tier) => tier.length > 0);
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

export function placeVariant(id, tie) {
  changeRanking((ranking) => placed(ranking, id, tie));
}

function joinTier(id, tierIndex) {
  changeRanking((ranking) => joined(ranking, id, tierIndex));
}

function insertTier(id, gapIndex) {
  changeRanking((ranking) => inserted(ranking, id, gapIndex));
}

export function unrank(id) {
  changeRanking((ranking) => withoutId(ranking, id));
}

export function resetRanking() {
  changeRanking(() => []);
  state.tieArmed = false;
}

export function undoRanking() {
  const previous = state.undo.pop();
  if (!previous) {
    toast("Nothing to undo.");
    return;
  }
  state.current.work.ranking = previous;
  noteRankingTime();
  commit();
}

export function placeByLetter(index, tie) {
  const ids = variantIds();
  if (index >= ids.length) return;
  placeVariant(ids[index], tie || state.tieArmed);
  state.tieArmed = false;
  renderRanking();
}

export function armTie() {
  if (state.current.work.ranking.length === 0) {
    toast("Place a variant first, then tie the next one with it.");
    return;
  }
  state.tieArmed = !state.tieArmed;
  renderRanking();
}

export function disarmTie() {
  if (!state.tieArmed) return;
  state.tieArmed = false;
  renderRanking();
}

export function choosePair(choice) {
  changeRanking(() => pairRanking(choice, variantIds()));
}

export function toggleUnsure() {
  state.current.work.unsure = !state.current.work.unsure;
  commit();
  toast(state.current.work.unsure ? "Marked unsure." : "No longer marked unsure.");
}

// --- the score cursor and scores ---------------------------------------------------------

function cellCount() {
  return variantIds().length * aspects.length;
}

export function moveCursorToFirstUnset() {
  const index = firstUnsetIndex(state.current.work.scores, variantIds(), aspects);
  if (index >= 0) state.cursor = cursorAt(index, aspects.length);
}

function setScore(variantIndex, aspectIndex, value) {
  const id = variantIds()[variantIndex];
  state.current.work.scores[id][aspects[aspectIndex].key] = value;
}

export function scoreAtCursor(value) {
  setScore(state.cursor.variant, state.cursor.aspect, value);
  advanceCursor();
  commit();
}

export function onScoreClick(variantIndex, aspectIndex, value) {
  state.cursor = { variant: variantIndex, aspect: aspectIndex };
  setScore(variantIndex, aspectIndex, value);
  commit();
}

function advanceCursor() {
  const next = cellIndex(state.cursor, aspects.length) + 1;
  if (next < cellCount()) {
    state.cursor = cursorAt(next, aspects.length);
  } else {
    moveCursorToFirstUnset();
  }
}

export function moveCursor(dVariant, dAspect) {
  const variants = variantIds().length;
  state.cursor = {
    variant: (state.cursor.variant + dVariant + variants) % variants,
    aspect: (state.cursor.aspect + dAspect + aspects.length) % aspects.length,
  };
  renderCursor();
}

/** Tab through the cells; false at either end so the browser moves focus on. */
export function tabCursor(step) {
  const next = cellIndex(state.cursor, aspects.length) + step;
  const insideGrid = document.activeElement && document.activeElement.closest(".cell");
  if (insideGrid && (next < 0 || next >= cellCount())) return false;
  if (!insideGrid) {
    // Entering the grid from outside: land on the current cell.
    focusCurrentCell();
    return true;
  }
  state.cursor = cursorAt(next, aspects.length);
  renderCursor();
  focusCurrentCell();
  return true;
}

// --- drag and drop ---------------------------------------------------------------------

export function onDragStart(event) {
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

export function onDragOver(event) {
  const target = dropTargetOf(event);
  if (!target || state.dragId === null) return;
  event.preventDefault();
  event.dataTransfer.dropEffect = "move";
  for (const other of el.ranking.querySelectorAll(".drag-over")) {
    if (other !== target) other.classList.remove("drag-over");
  }
  target.classList.add("drag-over");
}

export function onDragLeave(event) {
  const target = dropTargetOf(event);
  if (target && !target.contains(event.relatedTarget)) target.classList.remove("drag-over");
}

export function onDrop(event) {
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

export function endDrag() {
  state.dragId = null;
  document.body.classList.remove("dragging");
  for (const node of document.querySelectorAll(".drag-over")) node.classList.remove("drag-over");
}
