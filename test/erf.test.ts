// erf and erfc (src/erf.ts) against values computed elsewhere, and the exact GELU built on them (src/ops.ts).
// The tables below were computed with python3's mpmath at 60 digits and rounded to nearest (float64 for erf and
// erfc, float32 for GELU); where python3 is on PATH, a denser sweep compares with its math.erf and math.erfc.
import { spawnSync } from "node:child_process";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { erf, erfc } from "../src/erf.ts";
import { gelu } from "../src/ops.ts";
import { Random } from "../src/random.ts";
import { tensor } from "../src/tensor.ts";

/** The spacing of float64 values at v (the subnormal spacing below 2⁻¹⁰²²). */
function ulp(v: number): number {
  const a = Math.abs(v);
  if (a < 2 ** -1022) return 2 ** -1074;
  let e = Math.floor(Math.log2(a));
  if (2 ** e > a) e--; // log2 can round up just below a power of two
  if (2 ** (e + 1) <= a) e++;
  return 2 ** (e - 52);
}
const ulps = (actual: number, expected: number) => Math.abs(actual - expected) / ulp(expected);

// [x, erf(x), erfc(x)]: every region's ends (Taylor about 0 below 0.5, about k/4 to 2.125; erfc's fraction from
// 0.75; erf = 1 − erfc to 6), the tails down to erfc's last subnormal, and the smallest subnormal x.
const TABLE: [number, number, number][] = [
  [5e-324, 5e-324, 1.0], [1e-300, 1.1283791670955126e-300, 1.0], [1e-8, 1.1283791670955126e-8, 0.9999999887162083],
  [0.001, 0.0011283787909692365, 0.9988716212090307], [0.1, 0.1124629160182849, 0.887537083981715],
  [0.25, 0.27632639016823696, 0.7236736098317631], [0.375, 0.4041169094348223, 0.5958830905651777],
  [0.4999, 0.5204119951613866, 0.4795880048386134], [0.5, 0.5204998778130465, 0.4795001221869535],
  [0.5001, 0.5205877516768808, 0.4794122483231193], [0.6249, 0.6231645274630255, 0.37683547253697447],
  [0.625, 0.623240882188418, 0.376759117811582], [0.7499, 0.7110913357245858, 0.2889086642754142],
  [0.75, 0.7111556336535151, 0.28884436634648486], [0.875, 0.7840750610598597, 0.21592493894014034],
  [1, 0.8427007929497149, 0.15729920705028513], [1.125, 0.8883882317017078, 0.11161176829829224],
  [1.5, 0.9661051464753108, 0.033894853524689274], [1.75, 0.9866716712191824, 0.013328328780817557],
  [2, 0.9953222650189527, 0.004677734981047266], [2.1249, 0.9973447362961807, 0.0026552637038192556],
  [2.125, 0.9973459706405177, 0.0026540293594823415], [2.5, 0.999593047982555, 0.0004069520174449589],
  [3, 0.9999779095030014, 2.209049699858544e-5], [3.5, 0.9999992569016276, 7.430983723414128e-7],
  [4, 0.9999999845827421, 1.541725790028002e-8], [4.5, 0.9999999998033839, 1.9661604415428876e-10],
  [5, 0.9999999999984626, 1.537459794428035e-12], [5.5, 0.9999999999999927, 7.357847917974398e-15],
  [5.85, 0.9999999999999999, 1.3046611497637015e-16], [5.9, 0.9999999999999999, 7.190409783550478e-17],
  [6, 1.0, 2.1519736712498913e-17], [8, 1.0, 1.1224297172982926e-29], [10, 1.0, 2.088487583762545e-45],
  [15, 1.0, 7.212994172451207e-100], [20, 1.0, 5.395865611607901e-176], [26, 1.0, 5.663192408856143e-296],
  [26.5, 1.0, 2.2109076642637343e-307], [27, 1.0, 5.23705e-319], [28, 1.0, 0.0], [30, 1.0, 0.0],
];

// [x, GELU(x) = x·Φ(x) rounded to float32] for float32 x; each value is at least 2.5e-9 (relative) from a rounding
// midpoint, so a float64 computation must land on it exactly. The tanh form misses most (−0.0036374 at −3); the
// form ½x(1 + erf(x/√2)) gives 0 from −8.3 down, where the true value is still a normal float32.
const GELU: [number, number][] = [
  [-30, -0], [-12, -2.1317785478098008e-32], [-10, -7.619852977043458e-23], [-8, -4.9767683396140065e-15],
  [-6, -5.919525758457667e-9], [-5, -1.433257807548216e-6], [-4, -0.000126684972201474], [-3, -0.004049694165587425],
  [-2.5, -0.015524162910878658], [-2, -0.0455002635717392], [-1.5, -0.10021080076694489], [-1, -0.15865525603294373],
  [-0.75, -0.16997051239013672], [-0.5, -0.1542687714099884], [-0.25, -0.10032341629266739],
  [-0.001, -0.0004996010684408247], [0, 0], [0.001, 0.0005003989790566266], [0.25, 0.14967657625675201],
  [0.5, 0.3457312285900116], [0.75, 0.5800294876098633], [1, 0.8413447737693787], [1.5, 1.3997892141342163],
  [2, 1.9544997215270996], [2.5, 2.48447585105896], [3, 2.995950222015381], [4, 3.999873399734497],
  [5, 4.999998569488525], [6, 6], [10, 10],
];

describe("erf and erfc", () => {
  it("erf is within 1 ulp and erfc within 3 ulp of the correctly rounded values, at x and −x", () => {
    for (const [x, e, c] of TABLE) {
      expect(ulps(erf(x), e), `erf(${x})`).toBeLessThanOrEqual(1);
      expect(erf(-x), `erf(${-x})`).toBe(-erf(x));
      expect(ulps(erfc(x), c), `erfc(${x})`).toBeLessThanOrEqual(3);
      // erfc(−x) = 2 − erfc(x), which is itself within an ulp of the true value in [1, 2]
      expect(ulps(erfc(-x), 2 - c), `erfc(${-x})`).toBeLessThanOrEqual(1);
    }
  });

  it("special values: NaN, signed zeros, infinities", () => {
    expect(erf(NaN)).toBeNaN();
    expect(erfc(NaN)).toBeNaN();
    expect(Object.is(erf(-0), -0) && Object.is(erf(0), 0)).toBe(true);
    expect([erf(Infinity), erf(-Infinity), erfc(Infinity), erfc(-Infinity), erfc(0)]).toEqual([1, -1, 0, 2, 1]);
  });

  it("erf never decreases, and erf + erfc = 1 to the rounding of the larger", () => {
    fc.assert(fc.property(fc.double({ min: -8, max: 8, noNaN: true }), fc.double({ min: 0, max: 1e-3, noNaN: true }), (x, dx) => {
      expect(erf(x + dx)).toBeGreaterThanOrEqual(erf(x));
      expect(Math.abs(erf(x) + erfc(x) - 1)).toBeLessThanOrEqual(4 * ulp(Math.max(Math.abs(erf(x)), erfc(x))));
    }), { numRuns: 500 });
  });

  // Where two methods meet, the last float64 before the join and the join itself differ by about one step of the
  // function (its slope times the spacing of x, under an ulp here), not by the two methods' disagreement.
  it("is continuous across each join of its regions", () => {
    const previous = (x: number) => new Float64Array(new BigInt64Array([new BigInt64Array(new Float64Array([x]).buffer)[0]! - 1n]).buffer)[0]!;
    for (const join of [0.5, 0.625, 0.875, 1.125, 1.375, 1.625, 1.875, 2.125, 6]) {
      expect(ulps(erf(previous(join)), erf(join)), `erf at ${join}`).toBeLessThanOrEqual(2);
    }
    expect(ulps(erfc(previous(0.75)), erfc(0.75)), "erfc at 0.75").toBeLessThanOrEqual(4);
  });

  const python = spawnSync("python3", ["--version"]).status === 0;
  it.skipIf(!python && process.env.CI !== "true")(`matches python3's math.erf and math.erfc over 4000 points${python ? "" : " (no python3 on PATH)"}`, () => {
    const rng = new Random(7);
    const xs = [...Array.from({ length: 2000 }, () => (rng.uniform() - 0.5) * 14), ...Array.from({ length: 2000 }, () => rng.uniform() * 27)];
    const script = "import json, math, sys; print(json.dumps([[math.erf(x), math.erfc(x)] for x in json.load(sys.stdin)]))";
    const run = spawnSync("python3", ["-c", script], { input: JSON.stringify(xs), encoding: "utf8" });
    expect(run.status, run.stderr).toBe(0);
    const values: [number, number][] = JSON.parse(run.stdout);
    // The C library's erf and erfc are themselves within an ulp or so: one ulp more than against exact values.
    xs.forEach((x, i) => {
      expect(ulps(erf(x), values[i]![0]), `erf(${x})`).toBeLessThanOrEqual(2);
      if (values[i]![1] > 1e-300) expect(ulps(erfc(x), values[i]![1]), `erfc(${x})`).toBeLessThanOrEqual(4);
    });
  });
});

describe("gelu is the exact form x·Φ(x)", () => {
  it("rounds to the float32 nearest x·Φ(x), the far negative tail included", () => {
    const out = gelu(tensor([GELU.length], GELU.map(([x]) => x)));
    GELU.forEach(([x, y], i) => expect(Object.is(out.data[i], y), `gelu(${x}) = ${out.data[i]}, expected ${y}`).toBe(true));
  });

  it("gives the limits at ±∞ and NaN for NaN", () => {
    const out = gelu(tensor([3], [-Infinity, Infinity, NaN])).data;
    expect(Object.is(out[0], -0)).toBe(true);
    expect(out[1]).toBe(Infinity);
    expect(out[2]).toBeNaN();
  });
});
