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
 * ES modules, no build step; this is the one the page loads (<script type="module">):
 *   state.js     config from the page, constants, the state object, the elements
 *   ranking.js   pure: tier operations on a ranking, cleaning one, the A/B choice
 *   scores.js    pure: cleaning scores and notes, the cell grid, completeness, the payload
 *   outbox.js    pure: backoff, cleaning the saved outbox, what a response means
 *   api.js       fetch with the CSRF token
 *   work.js      the work on one assignment in localStorage; the clock
 *   sync.js      leases in, judgements and skips out through the persisted outbox
 *   actions.js   the changes to the task on screen (ranking, cursor, scores, drag and drop)
 *   render.js    drawing the state
 *   overlays.js  flick, lightbox, note editor, dialogs
 *   keyboard.js  the key map
 * The pure modules import only each other and are unit-tested under Node (tests/annotation/js/).
 * The others import each other in cycles (render draws buttons whose handlers are actions
 * that render again); that is safe because no module calls an import while it loads.
 */
import { endDrag, onDragLeave, onDragOver, onDragStart, onDrop, resetRanking, toggleUnsure } from "./actions.js";
import { onKeyDown, onKeyUp } from "./keyboard.js";
import {
  closeLightbox,
  moveLightbox,
  onHelpKeyDown,
  onSkipKeyDown,
  onSkipSubmit,
  openSkipDialog,
  stopFlick,
  toggleGuidelines,
  toggleHelp,
} from "./overlays.js";
import { setSaveStatus } from "./render.js";
import { el, state } from "./state.js";
import { flushOutbox, loadOutbox, showNextTask, submitCurrent } from "./sync.js";
import { checkIdle, noteActivity, onVisibilityChange, pruneOldWork, saveWork } from "./work.js";

function $(id) {
  return document.getElementById(id);
}

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
