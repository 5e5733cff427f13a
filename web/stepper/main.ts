// The stepper page: a prompt through the tiny DeepSeek-V3-shaped model in the browser, layer by layer and op by op,
// on the backend of the reader's choice, with the researcher's interventions as clicks. State lives here; each
// section is drawn by its view from what compute.ts got from src/'s model API. body[data-state] says whether a run is
// under way ("busy") or done ("ready"), and body[data-run] counts the finished runs (the browser test waits on them).

import type { ExpertAction } from "../../src/model/interventions.ts";
import type { Backend } from "../../src/backend.ts";
import type { Model } from "../../src/model/weights.ts";
import { byteTokenizer } from "../../src/model/tokenizer.ts";
import { argError } from "../../src/errors.ts";
import { loadBrowserBackend } from "../platform/backends.ts";
import { loadBrowserModel } from "../platform/model.ts";
import { analyse, type Analysis } from "./compute.ts";
import { button, byId, el, fill } from "./dom.ts";
import { editKey, has, interventionsOf, toggle, type Edit } from "./edits.ts";
import { attentionView } from "./attention-view.ts";
import { routingView } from "./routing-view.ts";
import { exitView, lensView } from "./lens-view.ts";
import { predictionView } from "./prediction-view.ts";
import { moveLayer, moveOp, stepperView, type Position } from "./stepper-view.ts";
import { readSettings, sampleFrom } from "./sampling.ts";
import { positionLabel, shown } from "./labels.ts";

/** The chapter's first words, as `npm start` steps them (test/web-page.test.ts checks it is the CLI's default). */
export const DEFAULT_PROMPT = "Alice was beginning to get very tired";

type BackendName = "reference" | "wasm" | "webgpu";

interface State {
  model: Model;
  backend: Backend;
  prompt: string;
  tokens: number[];
  exitThreshold: number | undefined;
  edits: Edit[];
  action: ExpertAction;
  at: Position;
  analysis: Analysis | null;
  runs: number;
}

let state: State;

function setBusy(what: string | null): void {
  document.body.dataset.state = what === null ? "ready" : "busy";
  fill(byId("status"), what ?? "");
}

function showError(error: unknown): void {
  document.body.dataset.error = "1";
  fill(byId("error"), error instanceof Error ? error.message : String(error));
}

function clearError(): void {
  delete document.body.dataset.error;
  fill(byId("error"));
}

/** Runs the model with the current state; on an error the previous edits come back (a refused intervention). */
async function update(previousEdits?: Edit[]): Promise<void> {
  setBusy(`running ${state.tokens.length} tokens on ${state.backend.name}…`);
  try {
    const interventions = interventionsOf(state.model, state.edits);
    state.analysis = await analyse(state.model, state.prompt, state.tokens, { backend: state.backend, interventions, exitThreshold: state.exitThreshold });
    clearError();
  } catch (error) {
    showError(error);
    if (previousEdits) state.edits = previousEdits;
  }
  state.runs++;
  document.body.dataset.run = String(state.runs);
  render();
  setBusy(null);
}

/** Redraws every section (after a run). */
function render(): void {
  const a = state.analysis;
  renderTokens();
  renderEdits();
  if (!a) return;
  fill(byId("timings"), `${a.record.backend}: `, a.timings.map((t) => `${t.what} ${t.ms.toFixed(1)} ms`).join(" · "));
  fill(byId("prediction"), predictionView(a.record, a.lastLogits));
  fill(byId("exits"), exitView(a.record));
  fill(byId("lens"), lensView(a.record, a.lens));
  renderStep(true);
}

/** The stepper, and (when the layer changed, or `all`) the attention and routing of its layer. */
function renderStep(all: boolean, previousLayer?: number): void {
  const a = state.analysis;
  if (!a) return;
  fill(byId("stepper"), stepperView(a.record, state.at, { onMove: move }));
  const layer = Math.min(state.at.layer, a.record.layers.length - 1);
  if (!all && layer === previousLayer) return;
  fill(byId("attention-title"), `Attention, layer ${layer}`);
  fill(byId("attention"), attentionView(a.record, a.attention[layer]!, {
    ablated: (head) => has(state.edits, { kind: "head", layer, head }),
    onToggleHead: (head) => edit({ kind: "head", layer, head }),
  }));
  renderRouting(layer);
}

function renderRouting(layer: number): void {
  const a = state.analysis!;
  fill(byId("routing-title"), `MoE routing, layer ${layer}`);
  fill(byId("routing"), routingView(a.record, layer, {
    action: state.action,
    onAction: (action) => {
      state.action = action;
      renderRouting(layer);
      byId(`expert-action-${action}`).focus();
    },
    editOf: (expert, position) => state.edits.find((e): e is Extract<Edit, { kind: "expert" }> => e.kind === "expert" && e.layer === layer && e.expert === expert && e.position === position)?.action,
    onExpert: (expert, position) => {
      const existing = state.edits.find((e) => e.kind === "expert" && e.layer === layer && e.expert === expert && e.position === position);
      edit(existing ?? { kind: "expert", action: state.action, layer, expert, position });
    },
  }));
}

function renderTokens(): void {
  const list = byId("tokens");
  fill(list, ...state.tokens.map((id, i) => el("li", { title: positionLabel(i, byteTokenizer.tokenLabel(id)) }, el("span", { class: "tok" }, shown(byteTokenizer.tokenLabel(id))), el("span", { class: "tok-id" }, id))));
  fill(byId("token-count"), `${state.tokens.length} byte tokens (<bos> first)`);
}

function renderEdits(): void {
  const list = byId("edits");
  if (state.edits.length === 0) {
    fill(list, el("li", { class: "none" }, "None. Ablate a head in the Attention section, or click an expert in the MoE routing table."));
    return;
  }
  const labels = interventionsOf(state.model, state.edits).map((i) => i.label ?? "");
  fill(list, ...state.edits.map((e, i) => el("li", { "data-edit": editKey(e) }, `${labels[i]} `, el("button", { type: "button", "data-remove": editKey(e), "aria-label": `Remove: ${labels[i]}` }, "remove"))));
  if (state.edits.length > 1) {
    list.append(el("li", { class: "none" }, button("remove all", () => {
      const previous = state.edits;
      state.edits = [];
      void update(previous).then(() => byId("edits").focus());
    }, { id: "clear-edits" })));
  }
  list.querySelectorAll<HTMLButtonElement>("button[data-remove]").forEach((b) => b.addEventListener("click", () => {
    const previous = state.edits;
    state.edits = state.edits.filter((e) => editKey(e) !== b.dataset.remove);
    void update(previous);
  }));
}

/** Toggles an intervention and reruns; the focused control keeps its focus across the redraw. */
function edit(change: Edit): void {
  const previous = state.edits;
  state.edits = toggle(state.edits, change);
  const focus = focusKey();
  void update(previous).then(() => restoreFocus(focus));
}

function move(to: Position): void {
  const focus = focusKey();
  const L = state.analysis?.record.layers.length ?? 1;
  const previousLayer = Math.min(state.at.layer, L - 1);
  state.at = to;
  renderStep(false, previousLayer);
  restoreFocus(focus);
}

/** Redrawing replaces the controls; these attributes find the one that had focus. */
function focusKey(): string | null {
  const active = document.activeElement as HTMLElement | null;
  if (!active || active === document.body) return null;
  if (active.id) return `#${CSS.escape(active.id)}`;
  const keys = ["data-layer", "data-head", "data-expert", "data-position", "aria-keyshortcuts"].filter((a) => active.hasAttribute(a));
  if (keys.length === 0) return null;
  return `${active.tagName.toLowerCase()}${keys.map((a) => `[${a}="${CSS.escape(active.getAttribute(a)!)}"]`).join("")}`;
}

function restoreFocus(selector: string | null): void {
  if (selector) document.querySelector<HTMLElement>(selector)?.focus();
}

async function switchBackend(name: BackendName): Promise<void> {
  const select = byId<HTMLSelectElement>("backend");
  setBusy(`loading the ${name} backend…`);
  try {
    // The platform's defaults: WASM threads where the page is cross-origin isolated, relaxed SIMD where validated.
    const next = await loadBrowserBackend(name);
    const old = state.backend;
    state.backend = next;
    if (old !== next) await old.dispose();
    fill(byId("backend-info"), next.description);
    await update();
  } catch (error) {
    showError(error);
    select.value = state.backend.name;
    setBusy(null);
  }
}

/** The prompt box and the threshold field into the state; a prompt longer than the context or a threshold that is
 *  not a number >= 0 is refused with one line (nothing is cut silently). */
function readPrompt(): void {
  const text = byId<HTMLTextAreaElement>("prompt").value;
  const tokens = byteTokenizer.encode(text);
  const max = state.model.config.max_position_embeddings;
  if (tokens.length > max) throw argError("prompt", `at most ${max} tokens (<bos> and ${max - 1} bytes)`, `${tokens.length} tokens`);
  const field = byId<HTMLInputElement>("exit-threshold");
  const threshold = field.value.trim();
  if (field.validity.badInput || (threshold !== "" && !(Number(threshold) >= 0))) throw argError("early exit threshold", "empty (off) or a number >= 0", field.validity.badInput ? "text that is not a number" : threshold);
  state.prompt = text;
  state.tokens = tokens;
  state.exitThreshold = threshold === "" ? undefined : Number(threshold);
}

async function sample(): Promise<void> {
  const form = byId<HTMLFormElement>("sample-form");
  const get = (name: string) => (form.elements.namedItem(name) as HTMLInputElement).value;
  const out = byId("sample-out");
  try {
    const settings = readSettings({ temperature: get("temperature"), topK: get("topK"), topP: get("topP"), seed: get("seed"), maxTokens: get("maxTokens") });
    setBusy(`sampling ${settings.maxTokens} tokens on ${state.backend.name}…`);
    const result = await sampleFrom(state.model, state.tokens, settings, state.backend, interventionsOf(state.model, state.edits), state.exitThreshold);
    clearError();
    fill(out, el("p", { class: "sample-text" }, el("span", { class: "prompt-part" }, state.prompt), el("mark", { "data-sample": result.text }, result.text)),
      el("p", { class: "hint" }, `${result.tokens.length} tokens (stopped: ${result.stopReason}); prefill ${result.prefillMs.toFixed(1)} ms, ${Number.isNaN(result.tokensPerSecond) ? "—" : result.tokensPerSecond.toFixed(1)} tokens/s on ${state.backend.name}.`));
  } catch (error) {
    showError(error);
  }
  setBusy(null);
}

async function main(): Promise<void> {
  setBusy("loading the model…");
  byId<HTMLTextAreaElement>("prompt").value = DEFAULT_PROMPT;
  try {
    const [{ model, weightsLabel }, backend] = await Promise.all([loadBrowserModel(), loadBrowserBackend("reference")]);
    state = { model, backend, prompt: DEFAULT_PROMPT, tokens: [], exitThreshold: undefined, edits: [], action: "ban", at: { layer: 0, op: 0 }, analysis: null, runs: 0 };
    const c = model.config;
    fill(byId("model-info"), `tiny: ${c.num_hidden_layers} layers, hidden ${c.hidden_size}, ${c.num_attention_heads} heads, MLA latent r = ${c.kv_lora_rank}, ${c.n_routed_experts} routed experts (top-${c.num_experts_per_tok}) + ${c.n_shared_experts} shared. Weights: ${weightsLabel}.`);
    fill(byId("backend-info"), backend.description);
  } catch (error) {
    showError(error);
    document.body.dataset.state = "failed";
    return;
  }
  byId<HTMLFormElement>("prompt-form").addEventListener("submit", (event) => {
    event.preventDefault();
    try {
      readPrompt();
    } catch (error) {
      showError(error);
      return;
    }
    void update();
  });
  byId<HTMLSelectElement>("backend").addEventListener("change", (event) => void switchBackend((event.target as HTMLSelectElement).value as BackendName));
  byId<HTMLFormElement>("sample-form").addEventListener("submit", (event) => {
    event.preventDefault();
    void sample();
  });
  byId("stepper").addEventListener("keydown", (event) => {
    const a = state.analysis;
    if (!a) return;
    const moves: Record<string, () => Position> = {
      ArrowLeft: () => moveOp(a.record, state.at, -1),
      ArrowRight: () => moveOp(a.record, state.at, 1),
      PageUp: () => moveLayer(a.record, state.at, -1),
      PageDown: () => moveLayer(a.record, state.at, 1),
      Home: () => ({ layer: 0, op: 0 }),
      End: () => ({ layer: a.record.layers.length, op: 0 }),
    };
    const to = moves[event.key];
    if (!to) return;
    event.preventDefault();
    move(to());
  });
  readPrompt();
  await update();
}

void main();
