// The byte-level alphabet of BPE tokenizers in the Hugging Face `tokenizers` format (GPT-2's, and DeepSeek's): each
// of the 256 byte values is written as one visible character, so that a vocabulary of byte strings can be stored as
// JSON text. Bytes 33–126, 161–172 and 174–255 stand for themselves; the other 68 (controls, space, DEL, the C1
// range, NBSP, soft hyphen) take U+0100 onward in byte order: space is "Ġ" (U+0120), newline "Ċ" (U+010A).
// The tokenizer library encodes and decodes with this table itself; tinyseek needs it only to show one token's
// bytes (a token may hold part of a UTF-8 character, which a decoded string would turn into U+FFFD).

function standsForItself(byte: number): boolean {
  return (byte >= 33 && byte <= 126) || (byte >= 161 && byte <= 172) || (byte >= 174 && byte <= 255);
}

/** The character of each byte value. */
export const BYTE_CHARS: readonly string[] = (() => {
  const chars: string[] = [];
  let shifted = 0;
  for (let byte = 0; byte < 256; byte++) chars.push(String.fromCodePoint(standsForItself(byte) ? byte : 256 + shifted++));
  return chars;
})();

const BYTE_OF = new Map(BYTE_CHARS.map((c, byte) => [c, byte]));

/** The bytes a vocabulary entry spells, or undefined when a character is outside the alphabet. */
export function tokenBytes(token: string): Uint8Array | undefined {
  const bytes: number[] = [];
  for (const c of token) {
    const byte = BYTE_OF.get(c);
    if (byte === undefined) return undefined;
    bytes.push(byte);
  }
  return Uint8Array.from(bytes);
}

const strict = new TextDecoder("utf-8", { fatal: true });

/** The length of the UTF-8 sequence a lead byte starts (1 for a byte that cannot lead one). */
function sequenceLength(lead: number): number {
  return lead >= 0xf0 && lead <= 0xf4 ? 4 : lead >= 0xe0 && lead <= 0xef ? 3 : lead >= 0xc2 && lead <= 0xdf ? 2 : 1;
}

/**
 * How a token's bytes read in a table, as the byte tokenizer shows one byte: characters as themselves, space as
 * "␠", newline as "⏎", and every other control character or byte that is not part of a whole UTF-8 character as
 * `<hex>` (a token of a multi-byte character's first two bytes shows as `<e2><82>`).
 */
export function labelBytes(bytes: Uint8Array): string {
  let label = "";
  for (let i = 0; i < bytes.length;) {
    const length = sequenceLength(bytes[i]!);
    let char: string | undefined;
    if (i + length <= bytes.length) {
      try {
        char = strict.decode(bytes.subarray(i, i + length));
      } catch {
        char = undefined;
      }
    }
    if (char === " ") label += "␠";
    else if (char === "\n") label += "⏎";
    else if (char !== undefined && !/\p{Cc}/u.test(char)) label += char;
    else {
      label += `<${bytes[i]!.toString(16).padStart(2, "0")}>`;
      i += 1;
      continue;
    }
    i += length;
  }
  return label;
}
