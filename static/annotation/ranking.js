/*
 * Rankings: a list of tiers, best first; a tier holds the ids of variants that tie.
 *
 * Pure functions only (no DOM, no shared state): each takes a ranking and returns a new
 * one, never changing its argument, so they run under Node in tests/annotation/js/.
 * actions.js applies them to the work on screen.
 */

/** Take `id` out; an emptied tier stays, so tier and gap indices still match the screen. */
function emptied(ranking, id) {
  return ranking.map((tier) => tier.filter((other) => other !== id));
}

function withoutEmptyTiers(ranking) {
  return ranking.filter((tier) => tier.length > 0);
}

export function withoutId(ranking, id) {
  return withoutEmptyTiers(emptied(ranking, id));
}

/** Keyboard placement: a new tier at the end, or (tie) into the last tier. */
export function placed(ranking, id, tie) {
  const rest = withoutId(ranking, id);
  if (tie && rest.length > 0) rest[rest.length - 1].push(id);
  else rest.push([id]);
  return rest;
}

/** Drop onto tier `tierIndex`: join it (a tie). No such tier, or already in it: unchanged. */
export function joined(ranking, id, tierIndex) {
  const target = ranking[tierIndex];
  if (!target || target.includes(id)) return ranking;
  const cleaned = emptied(ranking, id);
  cleaned[tierIndex].push(id);
  return withoutEmptyTiers(cleaned);
}

/** Drop into the gap before tier `gapIndex` (0..tiers): a new tier there. */
export function inserted(ranking, id, gapIndex) {
  // Emptied, not removed, first: `gapIndex` counts the tiers as the screen shows them.
  const cleaned = emptied(ranking, id);
  cleaned.splice(gapIndex, 0, [id]);
  return withoutEmptyTiers(cleaned);
}

/** A/B: "left" or "right" is better, or "tie"; `pair` is [left id, right id]. */
export function pairRanking(choice, pair) {
  const [left, right] = pair;
  const rankings = { left: [[left], [right]], right: [[right], [left]], tie: [[left, right]] };
  return rankings[choice];
}

/** The A/B choice a ranking says, or null while none is made. */
export function pairChoice(ranking, pair) {
  const [left, right] = pair;
  if (ranking.length === 1 && ranking[0].length === 2) return "tie";
  if (ranking.length === 2 && ranking[0][0] === left) return "left";
  if (ranking.length === 2 && ranking[0][0] === right) return "right";
  return null;
}

export function unrankedIds(ranking, ids) {
  const ranked = new Set(ranking.flat());
  return ids.filter((id) => !ranked.has(id));
}

export function tierIndexOf(ranking, id) {
  return ranking.findIndex((tier) => tier.includes(id));
}

/** A ranking read back from storage: only these ids, each once, no empty tiers. */
export function cleanRanking(raw, ids) {
  if (!Array.isArray(raw)) return [];
  const seen = new Set();
  return raw
    .filter(Array.isArray)
    .map((tier) => tier.filter((id) => ids.includes(id) && !seen.has(id) && seen.add(id)))
    .filter((tier) => tier.length > 0);
}

export function ordinal(n) {
  const suffix = n % 10 === 1 && n % 100 !== 11 ? "st" : n % 10 === 2 && n % 100 !== 12 ? "nd"
    : n % 10 === 3 && n % 100 !== 13 ? "rd" : "th";
  return `${n}${suffix}`;
}

/** The badge on a variant's card: its place ("2nd (tie)"), or better/worse/tie in A/B. */
export function rankBadgeText(ranking, id, isPairwise) {
  const tier = tierIndexOf(ranking, id);
  if (tier < 0) return "";
  if (isPairwise) {
    if (ranking.length === 1) return "tie";
    return tier === 0 ? "better" : "worse";
  }
  return ranking[tier].length > 1 ? `${ordinal(tier + 1)} (tie)` : ordinal(tier + 1);
}
