// Shared by the tests of the annotation app's pure modules (static/annotation/).

/** Freeze an object and everything in it: a pure function that changes its input throws. */
export function frozen(value) {
  if (value && typeof value === "object") {
    Object.values(value).forEach(frozen);
    Object.freeze(value);
  }
  return value;
}

export const ASPECTS = frozen([
  { key: "following", label: "Instruction following", description: "Does it do what was asked?" },
  { key: "preserving", label: "Preserving", description: "Is the rest left alone?" },
  { key: "quality", label: "Quality", description: "" },
]);
