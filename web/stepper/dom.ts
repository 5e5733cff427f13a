// Small DOM helpers for the stepper page: elements from a tag, attributes and children, and colours for values.
// Plain DOM, no framework: the page redraws a section whole when its data change.

import * as Plot from "@observablehq/plot";

type Child = Node | string | number | null | undefined | false;

/** An element with attributes (undefined and false are left out, true is the empty value) and children. */
export function el<K extends keyof HTMLElementTagNameMap>(tag: K, attrs: Record<string, string | number | boolean | undefined> = {}, ...children: Child[]): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === false) continue;
    node.setAttribute(name, value === true ? "" : String(value));
  }
  append(node, children);
  return node;
}

export function append(node: Element, children: Child[]): void {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    node.append(typeof child === "number" ? String(child) : child);
  }
}

/** Replaces an element's children. */
export function fill(node: Element, ...children: Child[]): void {
  node.replaceChildren();
  append(node, children);
}

export function byId<T extends HTMLElement = HTMLElement>(id: string): T {
  const node = document.getElementById(id);
  if (!node) throw new Error(`the page has no element #${id}`);
  return node as T;
}

/** A button whose click runs `action`. */
export function button(label: Child, action: () => void, attrs: Record<string, string | number | boolean | undefined> = {}): HTMLButtonElement {
  const node = el("button", { type: "button", ...attrs }, label);
  node.addEventListener("click", action);
  return node;
}

/** The colour of a value in [0, max] (a probability: max 1), the same ramp as the pictures' legends. */
const ramp = Plot.scale({ color: { type: "linear", domain: [0, 1], scheme: "blues" } });
export const shadeOf = (value: number, max = 1): string => String(ramp.apply(Math.max(0, Math.min(1, value / max))));
/** Dark text on light cells, light text on dark ones. */
export const inkOn = (value: number, max = 1): string => (value / max > 0.55 ? "#fff" : "#111");

/** A colour legend for `shadeOf` over [0, max], drawn by Plot so that it matches the heatmaps. */
export const shadeLegend = (label: string, max = 1): Element =>
  Plot.legend({ color: { type: "linear", domain: [0, max], scheme: "blues", label }, width: 240 }) as Element;

export const percent = (p: number, digits = 1): string => `${(100 * p).toFixed(digits)} %`;
