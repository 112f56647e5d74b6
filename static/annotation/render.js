/*
 * Drawing the state: the task (gallery of cards, score cells, ranking strip or A/B choice
 * bar, action bar) and the header's progress and save status, the toast, the sections.
 *
 * The gallery is built once per task; renders after that only toggle state on it.
 */
import { choosePair, moveCursorToFirstUnset, onScoreClick, placeVariant, unrank } from "./actions.js";
import { formatErrors } from "./outbox.js";
import { closeNote, onNoteInput, onNoteKeyDown, openLightbox, openNote, renderFlick } from "./overlays.js";
import { pairChoice, rankBadgeText, tierIndexOf, unrankedIds } from "./ranking.js";
import { missingSummary, noteOf, SCORE_VALUES } from "./scores.js";
import { aspects, el, isPairwise, keepIds, state, TOAST_MS, variantIds } from "./state.js";
import { refreshProgress } from "./sync.js";
import { loadWork, makeClock, saveWork } from "./work.js";

// --- small helpers -----------------------------------------------------------------

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

export function capitalise(text) {
  return text.charAt(0).toUpperCase() + text.slice(1);
}

// --- rendering ----------------------------------------------------------------------------

/** After every change to the work: save it, then draw it. */
export function commit() {
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

export function renderProgress(progress) {
  if (progress) state.progress = progress;
  if (!state.progress) return;
  // The server counts tasks not yet leased to me; the ones on screen are still open too.
  const held = keepIds().length - state.outbox.length;
  const open = state.progress.open_for_me + Math.max(0, held);
  el.progress.textContent = `${state.progress.judged_by_me} judged by you · ${open} open`;
}

export function setSaveStatus(kind, text) {
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

export function updateSaveStatus(outcome) {
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

export function showLoading() {
  showSection("loading");
}

export function showDone() {
  state.current = null;
  state.done = true;
  delete el.app.dataset.assignmentId;
  showSection("done");
  refreshProgress();
  el.done.querySelector("a").focus({ preventScroll: true });
}

export function showFatal(message) {
  el.fatalMessage.textContent = message;
  el.fatal.hidden = false;
}

export function hideFatal() {
  el.fatal.hidden = true;
}

export function showErrors(errors) {
  el.errors.textContent = formatErrors(errors);
}

let toastTimer = null;

export function toast(message, kind = "info", duration = TOAST_MS) {
  el.toast.textContent = message;
  el.toast.dataset.kind = kind;
  el.toast.hidden = false;
  clearTimeout(toastTimer);
  if (duration > 0) toastTimer = setTimeout(() => (el.toast.hidden = true), duration);
}

export function showTask(lease) {
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

export function variantCaption(index) {
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

export function cardAt(index) {
  return el.gallery.querySelector(`.variant-card[data-index="${index}"]`);
}

function scoreOf(variantIndex, aspectIndex) {
  const id = variantIds()[variantIndex];
  return state.current.work.scores[id][aspects[aspectIndex].key];
}

export function renderScores() {
  const ids = variantIds();
  for (const cell of el.gallery.querySelectorAll(".cell")) {
    const value = scoreOf(Number(cell.dataset.v), Number(cell.dataset.a));
    cell.classList.toggle("unset", value === undefined);
    for (const button of cell.querySelectorAll("button")) {
      const checked = value !== undefined && Number(button.dataset.value) === value;
      button.setAttribute("aria-checked", String(checked));
    }
    const note = noteOf(state.current.work.notes, ids[Number(cell.dataset.v)], cell.dataset.aspect);
    const noteButton = cell.nextElementSibling;
    noteButton.classList.toggle("has-note", Boolean(note));
    noteButton.title = note ? `Note: ${note}` : noteButton.getAttribute("aria-label") + " (n)";
  }
}

function currentCell() {
  const { variant, aspect } = state.cursor;
  return el.gallery.querySelector(`.cell[data-v="${variant}"][data-a="${aspect}"]`);
}

export function renderCursor() {
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

export function focusCurrentCell() {
  const cell = currentCell();
  if (cell) cell.focus({ preventScroll: true });
}

function renderCards() {
  const ids = variantIds();
  const ranking = state.current.work.ranking;
  for (const card of el.gallery.querySelectorAll(".variant-card")) {
    const id = ids[Number(card.dataset.index)];
    const badge = card.querySelector(".rank-badge");
    badge.textContent = rankBadgeText(ranking, id, isPairwise);
    card.classList.toggle("ranked", tierIndexOf(ranking, id) >= 0);
  }
}

export function renderActionBar() {
  const missing = missingSummary(state.current.work, variantIds(), aspects, isPairwise);
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

export function renderRanking() {
  if (!state.current) return;
  el.ranking.replaceChildren(isPairwise ? buildChoiceBar() : buildRankingStrip());
}

function buildChoiceBar() {
  const choice = pairChoice(state.current.work.ranking, variantIds());
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
  const unranked = unrankedIds(state.current.work.ranking, variantIds());
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
