// A small byte-level BPE tokenizer.json in DeepSeek's layout, shared by the tokenizer tests and the checkpoint
// tests: specials at ids 0-2 (in the vocabulary and as added tokens), the 256 byte characters at 3 + byte, six
// merges, two added non-special chat markers (265, 266), a pre-tokenizer that isolates runs of up to three digits.
import { BYTE_CHARS } from "../src/model/byte-level.ts";

export const BOS_TEXT = "<｜begin▁of▁sentence｜>";
export const EOS_TEXT = "<｜end▁of▁sentence｜>";
export const USER = "<｜User｜>";
export const ASSISTANT = "<｜Assistant｜>";
/** Ranked merges; the ids they make follow the bytes: Ġt 259, he 260, Ġthe 261, 34 262, 12 263, 123 264. */
export const MERGES = ["Ġ t", "h e", "Ġt he", "3 4", "1 2", "12 3"];
export const byte = (b: number) => 3 + b;
export const [T_, HE, _THE, , TWELVE, ONE23] = [259, 260, 261, 262, 263, 264];

export function tokenizerJson(): Record<string, unknown> {
  const vocab: Record<string, number> = { [BOS_TEXT]: 0, [EOS_TEXT]: 1, "<｜▁pad▁｜>": 2 };
  BYTE_CHARS.forEach((c, b) => (vocab[c] = byte(b)));
  MERGES.forEach((m, i) => (vocab[m.replace(" ", "")] = 259 + i));
  const added = (id: number, content: string, special: boolean) => ({ id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special });
  return {
    version: "1.0", truncation: null, padding: null,
    added_tokens: [added(0, BOS_TEXT, true), added(1, EOS_TEXT, true), added(2, "<｜▁pad▁｜>", true), added(265, USER, false), added(266, ASSISTANT, false)],
    normalizer: { type: "Sequence", normalizers: [] },
    pre_tokenizer: {
      type: "Sequence",
      pretokenizers: [
        { type: "Split", pattern: { Regex: "\\p{N}{1,3}" }, behavior: "Isolated", invert: false },
        { type: "Split", pattern: { Regex: "[\\r\\n]|\\s?\\p{L}+|\\s?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+" }, behavior: "Isolated", invert: false },
        { type: "ByteLevel", add_prefix_space: false, trim_offsets: true, use_regex: false },
      ],
    },
    post_processor: { type: "ByteLevel", add_prefix_space: true, trim_offsets: false, use_regex: true },
    decoder: { type: "ByteLevel", add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: { type: "BPE", dropout: null, unk_token: null, continuing_subword_prefix: null, end_of_word_suffix: null, fuse_unk: false, byte_fallback: false, vocab, merges: MERGES },
  };
}

/** A small DeepSeek-style template (namespace, system prompt first, BOS from the context), written for this test. */
export const TEMPLATE = "{% set ns = namespace(system='') %}{% for m in messages %}{% if m.role == 'system' %}{% set ns.system = m.content %}{% endif %}{% endfor %}" +
  "{{ bos_token }}{{ ns.system }}{% for m in messages %}{% if m.role == 'user' %}{{ '<｜User｜>' + m.content }}" +
  "{% elif m.role == 'assistant' %}{{ '<｜Assistant｜>' + m.content + eos_token }}{% endif %}{% endfor %}" +
  "{% if add_generation_prompt %}{{ '<｜Assistant｜>' }}{% endif %}";

export const CONFIG = { add_bos_token: true, bos_token: { __type: "AddedToken", content: BOS_TEXT }, eos_token: EOS_TEXT, clean_up_tokenization_spaces: false, chat_template: TEMPLATE };
