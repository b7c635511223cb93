// Exact decimal arithmetic on the gateway's decimal strings ("189.1200"),
// with BigInt: the board's spread, mid and change are computed exactly and
// shown with the venue's scale. Only the chart's pixel positions use
// Numbers (toNumber), never a value that is shown as a price.

/**
 * @typedef {{ n: bigint, scale: number }} Dec
 */

const DECIMAL = /^-?\d+(\.\d+)?$/;

/** @param {unknown} s @returns {Dec|null} */
export function parse(s) {
  if (typeof s !== "string" || !DECIMAL.test(s)) return null;
  const neg = s.charCodeAt(0) === 45; // '-'
  const t = neg ? s.slice(1) : s;
  const dot = t.indexOf(".");
  const scale = dot < 0 ? 0 : t.length - dot - 1;
  const digits = dot < 0 ? t : t.slice(0, dot) + t.slice(dot + 1);
  const n = BigInt(digits);
  return { n: neg ? -n : n, scale };
}

/** @param {Dec} d @returns {string} */
export function format(d) {
  const neg = d.n < 0n;
  let digits = (neg ? -d.n : d.n).toString();
  if (d.scale > 0) {
    digits = digits.padStart(d.scale + 1, "0");
    digits = digits.slice(0, digits.length - d.scale) + "." + digits.slice(digits.length - d.scale);
  }
  return neg ? "-" + digits : digits;
}

/** @param {Dec} a @param {Dec} b @returns {[bigint, bigint, number]} */
function align(a, b) {
  const s = Math.max(a.scale, b.scale);
  return [a.n * 10n ** BigInt(s - a.scale), b.n * 10n ** BigInt(s - b.scale), s];
}

/** a − b, exactly, at the larger scale; null if either is not a decimal. */
export function sub(a, b) {
  const x = parse(a);
  const y = parse(b);
  if (!x || !y) return null;
  const [p, q, scale] = align(x, y);
  return format({ n: p - q, scale });
}

/** −1, 0 or 1 as a <, =, > b; null if either is not a decimal. */
export function cmp(a, b) {
  const x = parse(a);
  const y = parse(b);
  if (!x || !y) return null;
  const [p, q] = align(x, y);
  return p < q ? -1 : p > q ? 1 : 0;
}

/** (a + b) / 2, exactly (one more digit when the sum is odd). */
export function mid(a, b) {
  const x = parse(a);
  const y = parse(b);
  if (!x || !y) return null;
  const [p, q, scale] = align(x, y);
  const sum = p + q;
  if (sum % 2n === 0n) return format({ n: sum / 2n, scale });
  return format({ n: sum * 5n, scale: scale + 1 });
}

/**
 * (a − b) / b in percent, for display only (two decimals), or null when b
 * is zero or either is not a decimal.
 */
export function percent(a, b) {
  const x = parse(a);
  const y = parse(b);
  if (!x || !y || y.n === 0n) return null;
  const [p, q] = align(x, y);
  // Basis points of a hundredth: 10^4 × (p − q) / q, rounded toward zero.
  const bp = ((p - q) * 10000n) / q;
  const neg = bp < 0n;
  const abs = (neg ? -bp : bp).toString().padStart(3, "0");
  return (neg ? "-" : "+") + abs.slice(0, -2) + "." + abs.slice(-2) + "%";
}

/** A Number for drawing (the chart's y pixel), never for display. */
export function toNumber(s) {
  return typeof s === "string" ? Number(s) : NaN;
}
