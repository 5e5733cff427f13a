// The error function and its complement in float64, for the exact GELU x·Φ(x) = ½x·erfc(−x/√2) (src/ops.ts).
// JavaScript has no Math.erf. erf is within 1 ulp of the correctly rounded value everywhere, erfc within 3 ulp
// (test/erf.test.ts, against values computed to 50 digits). How:
// - erf on [0, 2.125): Taylor series about the nearest centre c (0 below 0.5, else a multiple of 1/4, so |h| ≤ 1/8),
//   erf(c + h) = erf(c) + (2/√π)·e^{−c²}·Σ_{n≥1} (−1)^{n−1}·H_{n−1}(c)·hⁿ/n!, since the n-th derivative of erf is
//   (2/√π)·(−1)^{n−1}·H_{n−1}(x)·e^{−x²} (H the physicists' Hermite polynomials, H_{n+1} = 2x·H_n − 2n·H_{n−1}).
//   Below 0.5 the sum about 0 is the whole value (its largest term, h, added last); from 0.5 the centres are 1/2,
//   3/4, …, 2 and erf over each one's interval stays in erf(c)'s binade, so the correction adds under an ulp.
//   (About 0, the positive-term series e^{−x²}·Σ(2x²)ⁿ/(2n+1)!! is no good: the rounding of 2x² is raised to the
//   power n, several ulp at x = 2.)
// - erfc on [0.75, ∞): its continued fraction erfc(x) = e^{−x²}/√π · 1/(x + ½/(x + 1/(x + (3/2)/(x + …)))),
//   evaluated from a fixed depth backwards (stable: no error builds up, unlike the forward recurrences), deep enough
//   to converge at every x it is used for. erf(x) = 1 − erfc(x) from 2.125, where erfc < 0.003.
// - e^{−x²} as e^{−h²}·e^{−(x−h)(x+h)} with h = x rounded to float32: h² is exact, so the rounding of x² never
//   reaches the exponent (it would cost up to x²·2⁻⁵³ relative, about 30 ulp at x = 5.5).

const TWO_OVER_SQRT_PI = 1.1283791670955126;
const ONE_OVER_SQRT_PI = 0.5641895835477563;
const STEP = 0.25;
/**
 * erf(k/4) for k = 0…8 (k = 1 is never a centre), each the float64 nearest the true value (computed to 50 digits:
 * `python3 -c "import mpmath; mpmath.mp.dps = 50; print([float(mpmath.erf(mpmath.mpf(k) / 4)) for k in range(9)])"`).
 */
const ERF_AT_STEPS = [0, 0.27632639016823696, 0.5204998778130465, 0.7111556336535151, 0.8427007929497149,
  0.9229001282564583, 0.9661051464753108, 0.9866716712191824, 0.9953222650189527];
const TAYLOR_END = 2.125; // the last centre, 2, plus half a step
// About 0 (|h| < 1/2) the first term left out, h³¹/(15!·31), is below 2⁻⁷⁴ of erf; about the other centres
// (|h| ≤ 1/8) far less.
const TAYLOR_TERMS = 30;
const FRACTION_START = 0.75;
const ERF_IS_ONE = 6; // erfc(6) = 2.2e-17 < 2⁻⁵⁴: erf rounds to 1
const ERFC_IS_ZERO = 28; // erfc(28) < 1e-340, below the least subnormal

function expMinusSquare(x: number): number {
  const h = Math.fround(x);
  return Math.exp(-h * h) * Math.exp(-(x - h) * (x + h));
}

/** erf(x) for 0 ≤ x < TAYLOR_END, by the Taylor series about the nearest centre. */
function erfTaylor(x: number): number {
  const k = x < 2 * STEP ? 0 : Math.round(x / STEP);
  const c = k * STEP, h = x - c; // exact: x and c are within a factor of 2 of each other, or c = 0
  let hermitePrev = 0, hermite = 1; // H_{n−2}(c), H_{n−1}(c); H_0 = 1
  let power = h; // hⁿ/n!
  let rest = 0; // the terms n ≥ 2, summed apart so that h, the largest, is added once at the end
  for (let n = 2; n <= TAYLOR_TERMS; n++) {
    [hermitePrev, hermite] = [hermite, 2 * c * hermite - 2 * (n - 2) * hermitePrev];
    power *= h / n;
    rest += (n % 2 === 0 ? -hermite : hermite) * power;
  }
  return ERF_AT_STEPS[k]! + TWO_OVER_SQRT_PI * Math.exp(-c * c) * (h + rest);
}

/** erfc(x) for x ≥ FRACTION_START, by its continued fraction evaluated backwards from a depth where it has converged. */
function erfcFraction(x: number): number {
  // Depth: 250/x² + 15 covers the terms the fraction needs to converge to float64 (≈ 190 at x = 1, 57 at 2, 10 at 10).
  let tail = x;
  for (let n = Math.ceil(250 / (x * x)) + 15; n >= 1; n--) tail = x + n / 2 / tail;
  return (ONE_OVER_SQRT_PI * expMinusSquare(x)) / tail;
}

/** The error function (2/√π)·∫₀ˣ e^{−t²} dt: within 1 ulp of the correctly rounded value. */
export function erf(x: number): number {
  if (Number.isNaN(x) || x === 0) return x;
  const a = Math.abs(x);
  const value = a < TAYLOR_END ? erfTaylor(a) : a < ERF_IS_ONE ? 1 - erfcFraction(a) : 1;
  return x < 0 ? -value : value;
}

/** The complementary error function 1 − erf(x), to 3 ulp relative even where it is tiny (x up to 26.5). */
export function erfc(x: number): number {
  if (Number.isNaN(x)) return x;
  if (x < 0) return 2 - erfc(-x);
  if (x < FRACTION_START) return 1 - erf(x);
  return x >= ERFC_IS_ZERO ? 0 : erfcFraction(x);
}
