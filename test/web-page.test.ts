// The stepper page (web/index.html, web/stepper/) in headless Chromium against Node's reference: the default prompt's
// top-5 predictions to 1e-6, clicks on a head and an expert giving what ablateHeads and banExperts give through the
// API, and the WASM and WebGPU backends within the whole-model bar of spec/backends.md (logits NMSE <= 1e-7, the
// same top tokens). Writes a screenshot to artifacts/web-page.png (TINYSEEK_WRITE_SCREENSHOT=1: also the README's
// web/screenshot.png). With no Chromium and CI unset the suite skips with one line.

import { mkdirSync } from "node:fs";
import { fileURLToPath } from "node:url";
import type { Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DEFAULT_PROMPT } from "../src/cli/step.ts";
import type { Intervention } from "../src/model/interventions.ts";
import { decode, encode } from "../src/model/tokenizer.ts";
import { generateAsync } from "../src/model/generate.ts";
import { loadModel, type Model } from "../src/model/weights.ts";
import { ablateHeads } from "../src/research/heads.ts";
import { banExperts } from "../src/research/experts.ts";
import { run } from "../src/research/run.ts";
import { stepRecordAsync } from "../src/step/record.ts";
import type { Site } from "../web/site.ts";
import { browserSkipReason, openBrowser, serveSite, watchErrors, type TestBrowser } from "./browser.ts";
import { nmse } from "./helpers.ts";

const skip = browserSkipReason();
const ARTIFACTS = fileURLToPath(new URL("../artifacts/", import.meta.url));

interface Shown {
  id: number;
  prob: number;
}

// Code run in the page is given as text: this project's type-check has no DOM library outside web/.

/** The page's next-token table: ids and exact probabilities from the data attributes. */
const shown = async (page: Page): Promise<Shown[]> =>
  JSON.parse(await page.evaluate<string>(`JSON.stringify([...document.querySelectorAll("tr.next-token")].map((r) => ({ id: Number(r.dataset.tokenId), prob: Number(r.dataset.prob) })))`));

const shownLogits = async (page: Page): Promise<Float32Array> =>
  Float32Array.from(JSON.parse((await page.getAttribute("#prediction-table", "data-logits"))!) as number[]);

/** Does `action` and waits until the page has finished the run it starts. */
async function rerun(page: Page, action: () => Promise<unknown>): Promise<void> {
  const before = Number(await page.getAttribute("body", "data-run"));
  await action();
  await page.waitForFunction(`Number(document.body.dataset.run) > ${before} && document.body.dataset.state === "ready"`, undefined, { timeout: 120_000 });
}

describe.skipIf(skip !== undefined)(`the stepper page in Chromium${skip ? ` (skipped: ${skip})` : ""}`, () => {
  let site: Site;
  let browser: TestBrowser;
  let page: Page;
  let errors: string[];
  let model: Model;
  const tokens = encode(DEFAULT_PROMPT);

  /** Node's reference: the top 5 after the prompt with these interventions, as the step record lists them. */
  const reference = async (interventions: Intervention[] = []) =>
    (await stepRecordAsync(model, DEFAULT_PROMPT, tokens, { interventions, top: 5 })).next.map(({ id, prob }) => ({ id, prob }));

  const expectTop5 = (page: Shown[], node: Shown[]) => {
    expect(page.slice(0, 5).map((s) => s.id)).toEqual(node.map((s) => s.id));
    node.forEach((n, i) => expect(Math.abs(page[i]!.prob - n.prob)).toBeLessThanOrEqual(1e-6));
  };

  beforeAll(async () => {
    model = await loadModel(fileURLToPath(new URL("../data/tiny-alice.safetensors", import.meta.url)));
    site = await serveSite();
    browser = await openBrowser();
    page = await browser.newPage();
    await page.setViewportSize({ width: 1440, height: 900 });
    errors = watchErrors(page);
    await page.goto(site.url);
    await page.waitForFunction(`document.body.dataset.run === "1" || document.body.dataset.state === "failed"`, undefined, { timeout: 120_000 });
  }, 400_000);

  afterAll(async () => {
    await browser?.close();
    await site?.close();
  });

  it("loads with no console error and shows the reference's top 5 for the command line's default prompt", async () => {
    expect(await page.inputValue("#prompt")).toBe(DEFAULT_PROMPT);
    expect(await page.textContent("#error")).toBe("");
    expectTop5(await shown(page), await reference());
    const logits = await shownLogits(page);
    const V = model.config.vocab_size;
    const node = (await run(model, tokens)).logits.data.subarray((tokens.length - 1) * V);
    expect(Array.from(logits)).toEqual(Array.from(node)); // the reference in a browser: the same bits
    mkdirSync(ARTIFACTS, { recursive: true });
    const path = `${ARTIFACTS}web-page.png`;
    await page.screenshot({ path });
    console.log(`screenshot of the stepper page: ${path}`);
    // The README's picture: the top of the page, down to the first attention heads.
    if (process.env.TINYSEEK_WRITE_SCREENSHOT === "1") await page.screenshot({ path: fileURLToPath(new URL("../web/screenshot.png", import.meta.url)), fullPage: true, clip: { x: 0, y: 0, width: 1440, height: 1100 } });
    expect(errors).toEqual([]);
  });

  it("steps op by op and layer by layer from the keyboard; attention and routing follow the layer", async () => {
    await page.focus("#next-op");
    await page.keyboard.press("ArrowRight");
    expect(await page.getAttribute(".layer-detail", "data-op")).toBe("1");
    await page.keyboard.press("PageDown");
    expect(await page.getAttribute(".layer-detail", "data-layer")).toBe("1");
    expect(await page.textContent("#attention-title")).toBe("Attention, layer 1");
    expect(await page.locator(".route-table[data-layer='1'] tbody tr").count()).toBe(tokens.length);
    await page.keyboard.press("End");
    expect(await page.textContent(".layer-detail h3")).toBe("Output");
    await page.keyboard.press("Home");
    await page.click("#next-layer"); // layer 1, a MoE layer: the interventions below click there
    expect(await page.getAttribute(".layer-detail", "data-layer")).toBe("1");
    expect(errors).toEqual([]);
  });

  for (const backend of ["wasm", "webgpu"] as const) {
    it(`runs on ${backend} within the whole-model bar (logits NMSE <= 1e-7, the same top 5)`, async (context) => {
      if (backend === "webgpu" && process.env.CI !== "true") {
        const adapter = await page.evaluate<boolean>(`(async () => navigator.gpu !== undefined && (await navigator.gpu.requestAdapter()) !== null)()`);
        if (!adapter) context.skip("no WebGPU adapter in this Chromium (CI=true makes this a failure)");
      }
      await rerun(page, () => page.selectOption("#backend", backend));
      expect(await page.textContent("#error")).toBe("");
      expect(await page.getAttribute("#prediction-table", "data-backend")).toBe(backend);
      const V = model.config.vocab_size;
      const node = (await run(model, tokens)).logits.data.subarray((tokens.length - 1) * V);
      expect(nmse({ data: await shownLogits(page) }, { data: node })).toBeLessThanOrEqual(1e-7);
      expect((await shown(page)).slice(0, 5).map((s) => s.id)).toEqual((await reference()).map((s) => s.id));
      await rerun(page, () => page.selectOption("#backend", "reference"));
      expect(errors).toEqual([]);
    });
  }

  it("samples what generate samples with the same seed and settings", async () => {
    await page.click("#sample");
    await page.waitForSelector("[data-sample]", { state: "attached", timeout: 120_000 });
    const settings = { temperature: 0.8, topK: 20, topP: 0.95, seed: 0, maxTokens: 60 }; // the page's defaults
    for (const [name, value] of Object.entries(settings)) expect(Number(await page.inputValue(`#${name}`)), name).toBe(value);
    const node = await generateAsync(model, tokens, settings);
    expect(await page.getAttribute("[data-sample]", "data-sample")).toBe(decode(node.tokens));
    expect(errors).toEqual([]);
  });

  it("refuses bad settings with one line naming the field, and keeps the last result", async () => {
    const before = await shown(page);
    await page.fill("#topP", "0");
    await page.click("#sample");
    await page.waitForFunction(`document.querySelector("#error").textContent !== ""`);
    expect(await page.textContent("#error")).toBe("topP: expected a number in (0, 1], got 0");
    await page.fill("#topP", "0.95");
    await page.fill("#exit-threshold", "-1");
    await page.click("#run");
    expect(await page.textContent("#error")).toBe('early exit threshold: expected empty (off) or a number >= 0, got "-1"');
    await page.fill("#exit-threshold", "");
    expect(await shown(page)).toEqual(before);
    // Forcing a fifth expert on a token that takes four is refused by the router edits, and undone.
    await page.check("#expert-action-force");
    for (const expert of [0, 1, 2, 3]) await rerun(page, () => page.click(`.route-table td button[data-expert='${expert}'][data-position='5']`));
    expect(await page.textContent("#error")).toBe("");
    await rerun(page, () => page.click(".route-table td button[data-expert='4'][data-position='5']"));
    expect(await page.textContent("#error")).toBe("experts: 5 experts forced on the token at position 5 of layer 1, but it takes 4");
    expect(await page.locator("#edits li[data-edit]").count()).toBe(4);
    await rerun(page, () => page.click("#clear-edits"));
    expect(await page.locator("#edits li[data-edit]").count()).toBe(0);
    await page.check("#expert-action-ban");
    expect(await shown(page)).toEqual(before);
  });

  it("a click ablating a head, then one banning an expert, gives what ablateHeads and banExperts give", async () => {
    const before = await shown(page);
    await rerun(page, () => page.click("button.ablate[data-layer='1'][data-head='2']"));
    const ablated = [ablateHeads(model, { layer: 1, heads: [2] })];
    const after = await shown(page);
    expectTop5(after, await reference(ablated));
    expect(Math.abs(after[0]!.prob - before[0]!.prob)).toBeGreaterThan(1e-3); // the click did change the prediction
    expect(await page.textContent("#edits")).toContain("zero-ablate head 2 of layer 1");

    await rerun(page, () => page.click(".route-table[data-layer='1'] th button[data-expert='3']"));
    expectTop5(await shown(page), await reference([...ablated, banExperts(1, [3])]));
    expect(await page.textContent("#edits")).toContain("ban expert 3 of layer 1");

    // Clicking the head again restores it: only the ban is left.
    await rerun(page, () => page.click("button.ablate[data-layer='1'][data-head='2']"));
    expectTop5(await shown(page), await reference([banExperts(1, [3])]));
    expect(errors).toEqual([]);
  });
});
