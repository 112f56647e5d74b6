import assert from "node:assert/strict";
import { describe, test } from "node:test";

import {
  cleanRanking,
  inserted,
  joined,
  ordinal,
  pairChoice,
  pairRanking,
  placed,
  rankBadgeText,
  tierIndexOf,
  unrankedIds,
  withoutId,
} from "../../../static/annotation/ranking.js";
import { frozen } from "./helpers.mjs";

// Variant ids as the server sends them, in display order A B C D.
const [A, B, C, D] = [11, 12, 13, 14];

describe("placed (keyboard letters)", () => {
  test("it starts a new tier at the end", () => {
    assert.deepEqual(placed(frozen([[C]]), A, false), [[C], [A]]);
  });

  test("it ties with the last tier when asked (Shift or =)", () => {
    assert.deepEqual(placed(frozen([[C], [A]]), D, true), [[C], [A, D]]);
  });

  test("a tie on an empty ranking is just the first tier", () => {
    assert.deepEqual(placed(frozen([]), B, true), [[B]]);
  });

  test("it moves a variant that was already ranked, dropping the tier it emptied", () => {
    assert.deepEqual(placed(frozen([[C], [A], [B]]), A, false), [[C], [B], [A]]);
  });
});

describe("joined (drop onto a tier)", () => {
  test("it joins the tier, leaving its old one", () => {
    assert.deepEqual(joined(frozen([[B], [D], [C]]), C, 0), [[B, C], [D]]);
  });

  test("it counts tiers as shown, before the one it leaves is dropped", () => {
    // A leaves tier 0 (emptying it); tier 2 is still [C] as on screen.
    assert.deepEqual(joined(frozen([[A], [B], [C]]), A, 2), [[B], [C, A]]);
  });

  test("it leaves the ranking as it was for a tier that is not there or already has it", () => {
    const ranking = frozen([[A, B], [C]]);
    assert.equal(joined(ranking, D, 5), ranking);
    assert.equal(joined(ranking, B, 0), ranking);
  });
});

describe("inserted (drop into a gap)", () => {
  test("it makes a new tier in the gap", () => {
    assert.deepEqual(inserted(frozen([[B, A], [D]]), C, 1), [[B, A], [C], [D]]);
  });

  test("gap indices count the tier it leaves, as on screen", () => {
    // B alone in tier 0, dropped into gap 2 (between [A] and [C]).
    assert.deepEqual(inserted(frozen([[B], [A], [C]]), B, 2), [[A], [B], [C]]);
  });

  test("gap 0 and the last gap put it first and last", () => {
    assert.deepEqual(inserted(frozen([[A], [B]]), C, 0), [[C], [A], [B]]);
    assert.deepEqual(inserted(frozen([[A], [B]]), C, 2), [[A], [B], [C]]);
  });
});

describe("withoutId (unrank)", () => {
  test("it takes the variant out and drops an emptied tier", () => {
    assert.deepEqual(withoutId(frozen([[A], [B, C]]), A), [[B, C]]);
    assert.deepEqual(withoutId(frozen([[A], [B, C]]), C), [[A], [B]]);
  });
});

describe("the A/B choice", () => {
  const pair = frozen([A, B]);

  test("each choice is a ranking, and reads back as the same choice", () => {
    assert.deepEqual(pairRanking("left", pair), [[A], [B]]);
    assert.deepEqual(pairRanking("right", pair), [[B], [A]]);
    assert.deepEqual(pairRanking("tie", pair), [[A, B]]);
    for (const choice of ["left", "right", "tie"]) {
      assert.equal(pairChoice(pairRanking(choice, pair), pair), choice);
    }
  });

  test("no choice until both are ranked", () => {
    assert.equal(pairChoice([], pair), null);
    assert.equal(pairChoice([[A]], pair), null);
  });
});

describe("reading a ranking", () => {
  test("unrankedIds keeps display order", () => {
    assert.deepEqual(unrankedIds(frozen([[C], [A]]), frozen([A, B, C, D])), [B, D]);
  });

  test("tierIndexOf is -1 for an unranked variant", () => {
    assert.equal(tierIndexOf(frozen([[C], [A, D]]), D), 1);
    assert.equal(tierIndexOf(frozen([[C], [A, D]]), B), -1);
  });

  test("the card badge says the place, ties, and better/worse in A/B", () => {
    const ranking = frozen([[C], [A, D]]);
    assert.equal(rankBadgeText(ranking, C, false), "1st");
    assert.equal(rankBadgeText(ranking, D, false), "2nd (tie)");
    assert.equal(rankBadgeText(ranking, B, false), "");
    assert.equal(rankBadgeText(frozen([[A], [B]]), B, true), "worse");
    assert.equal(rankBadgeText(frozen([[A, B]]), A, true), "tie");
  });

  test("ordinals", () => {
    assert.deepEqual(
      [1, 2, 3, 4, 11, 12, 13, 21, 22, 23, 101, 111].map(ordinal),
      ["1st", "2nd", "3rd", "4th", "11th", "12th", "13th", "21st", "22nd", "23rd", "101st", "111th"],
    );
  });
});

describe("cleanRanking (work read back from storage)", () => {
  const ids = frozen([A, B, C, D]);

  test("it keeps a good ranking as it is", () => {
    assert.deepEqual(cleanRanking(frozen([[C], [A, D], [B]]), ids), [[C], [A, D], [B]]);
  });

  test("it drops unknown ids, repeats, non-tiers and emptied tiers", () => {
    const raw = frozen([[C, 99], "junk", [C], [], [A, A, "11"], null, [D]]);
    assert.deepEqual(cleanRanking(raw, ids), [[C], [A], [D]]);
  });

  test("anything but a list is an empty ranking", () => {
    for (const raw of [undefined, null, "c,a", { 0: [A] }]) assert.deepEqual(cleanRanking(raw, ids), []);
  });
});
