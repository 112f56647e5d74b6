// The modules tested here must stay loadable without a page: they import only each other
// and never reach for the DOM, storage, the network or timers.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";

const PURE = ["ranking.js", "scores.js", "outbox.js"];
const BROWSER_ONLY = /\b(document|window|localStorage|sessionStorage|fetch|setTimeout|setInterval|performance)\b/;

function source(name) {
  const text = readFileSync(new URL(`../../../static/annotation/${name}`, import.meta.url), "utf8");
  // Comments may talk about the page; only code counts.
  return text.replace(/\/\*[\s\S]*?\*\//g, "").replace(/\/\/.*$/gm, "");
}

for (const name of PURE) {
  test(`${name} imports only the other pure modules`, () => {
    const imports = [...source(name).matchAll(/from\s+"\.\/([^"]+)"/g)].map((match) => match[1]);
    assert.deepEqual(imports.filter((imported) => !PURE.includes(imported)), []);
  });

  test(`${name} uses nothing that only a browser page has`, () => {
    assert.doesNotMatch(source(name), BROWSER_ONLY);
  });
}
