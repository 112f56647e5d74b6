/*
 * What opens over the task: the source flicked in place of a variant (hold Space), the
 * lightbox, a cell's note editor, the skip and help dialogs, the guidelines.
 */
import { cardAt, renderCursor, renderScores, variantCaption } from "./render.js";
import { noteOf, withNote } from "./scores.js";
import { aspects, el, state, variantIds } from "./state.js";
import { skipCurrent } from "./sync.js";
import { saveWork } from "./work.js";

// --- flick (hold Space) and lightbox ------------------------------------------------------

export function startFlick() {
  if (state.flicking) return;
  state.flicking = true;
  renderFlick();
}

export function stopFlick() {
  if (!state.flicking) return;
  state.flicking = false;
  renderFlick();
}

export function renderFlick() {
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

export function openLightbox(index) {
  if (!state.current) return;
  state.lastFocus = document.activeElement;
  state.lightboxIndex = index;
  el.lightbox.hidden = false;
  renderLightbox();
  el.lightboxClose.focus({ preventScroll: true });
}

export function closeLightbox() {
  state.lightboxIndex = null;
  state.flicking = false;
  el.lightbox.hidden = true;
  renderFlick();
  if (state.lastFocus && state.lastFocus.focus) state.lastFocus.focus({ preventScroll: true });
}

export function moveLightbox(step) {
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

export function openNote() {
  const { variant, aspect } = state.cursor;
  const card = cardAt(variant);
  if (!card) return;
  closeNote();
  state.noteOpen = { variant, aspect };
  const editor = card.querySelector(".note-editor");
  const textarea = editor.querySelector("textarea");
  const id = variantIds()[variant];
  textarea.value = noteOf(state.current.work.notes, id, aspects[aspect].key);
  textarea.setAttribute("aria-label", `Note on ${variantCaption(variant)}, ${aspects[aspect].label}`);
  editor.dataset.label = `${variantCaption(variant)} · ${aspects[aspect].label}`;
  editor.hidden = false;
  textarea.focus({ preventScroll: true });
}

export function onNoteInput(event) {
  if (!state.noteOpen) return;
  const { variant, aspect } = state.noteOpen;
  const work = state.current.work;
  work.notes = withNote(work.notes, variantIds()[variant], aspects[aspect].key, event.target.value);
  saveWork();
}

export function onNoteKeyDown(event) {
  if (event.key === "Escape" || (event.key === "Enter" && !event.shiftKey)) {
    event.preventDefault();
    event.stopPropagation();
    closeNote();
  }
}

export function closeNote() {
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

export function openSkipDialog() {
  el.skipForm.reset();
  el.skipError.textContent = "";
  el.skipDialog.showModal();
}

export function onSkipKeyDown(event) {
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

export function onSkipSubmit(event) {
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

export function toggleHelp() {
  if (el.helpDialog.open) el.helpDialog.close();
  else el.helpDialog.showModal();
}

export function onHelpKeyDown(event) {
  if (event.key === "?") {
    event.preventDefault();
    el.helpDialog.close();
  }
}

export function toggleGuidelines() {
  if (!el.guidelines) return;
  el.guidelines.hidden = !el.guidelines.hidden;
  if (el.guidelinesToggle) el.guidelinesToggle.setAttribute("aria-expanded", String(!el.guidelines.hidden));
}
