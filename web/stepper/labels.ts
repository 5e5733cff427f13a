// Token labels as the pictures need them: one short mark per axis tick, the full label in tooltips.

import { byteTokenizer } from "../../src/model/tokenizer.ts";

/** The step record's label for a token id: printable ASCII as itself, ␠ for space, specials by name. */
export const tokenLabel = (id: number): string => byteTokenizer.tokenLabel(id);

/** A label as the page shows it: the space mark ␣ in place of ␠, which common fonts lack. */
export const shown = (label: string): string => (label === "␠" ? "␣" : label);

/** One character for a tick: ◆ for <bos>, ¤ for other specials and raw bytes. */
export const tickLabel = (label: string): string =>
  label === "<bos>" ? "◆" : label.startsWith("<") && label.length > 1 ? "¤" : shown(label);

/** "5 'g'" for tooltips and screen readers. */
export const positionLabel = (position: number, label: string): string => `${position} '${shown(label)}'`;
