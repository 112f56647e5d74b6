/*
 * The keyboard map (docs/annotating.md, "Keyboard map"): one keydown listener for the page,
 * a map from key to action, and the lightbox's own keys while it is open.
 */
import {
  armTie,
  choosePair,
  disarmTie,
  moveCursor,
  placeByLetter,
  rankingComplete,
  resetRanking,
  scoreAtCursor,
  tabCursor,
  toggleUnsure,
  undoRanking,
} from "./actions.js";
import {
  closeLightbox,
  moveLightbox,
  openLightbox,
  openNote,
  openSkipDialog,
  startFlick,
  stopFlick,
  toggleGuidelines,
  toggleHelp,
} from "./overlays.js";
import { toast } from "./render.js";
import { el, isPairwise, LETTER_KEYS, state, variantIds } from "./state.js";
import { submitCurrent } from "./sync.js";

function isTyping(target) {
  return target && (target.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(target.tagName));
}

/** A focused control (not a score cell) that Enter/Space should activate natively. */
function isActivatable(target) {
  return target && target.closest && target.closest("button, a, summary") && !target.closest(".cell");
}

export function onKeyDown(event) {
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

export function onKeyUp(event) {
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
