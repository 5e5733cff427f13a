// A checkpoint's tokenizer.json, on a small byte-level BPE written here in DeepSeek's layout: specials at ids 0-2
// (in the vocabulary and as added tokens), the 256 byte characters at 3 + byte, six merges, two added non-special
// chat markers, a pre-tokenizer that isolates runs of up to three digits before the byte-level step.
import fc from "fast-check";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { TinyseekError } from "../src/errors.ts";
import { loadTokenizer, type LoadTokenizerOptions } from "../src/model/bpe-tokenizer.ts";
import { BYTE_CHARS, labelBytes } from "../src/model/byte-level.ts";
import { BOS, byteTokenizer, decode, encode, EOS, tokenLabel, VOCAB_SIZE } from "../src/model/tokenizer.ts";
import { ASSISTANT, BOS_TEXT, byte, CONFIG, EOS_TEXT, HE, ONE23, T_, TEMPLATE, tokenizerJson, TWELVE, USER, _THE } from "./tokenizer-fixtures.ts";

const root = mkdtempSync(join(tmpdir(), "tinyseek-tokenizer-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));
let dirs = 0;

/** A checkpoint directory with these files (an object is written as JSON, a string as it is). */
function checkpoint(files: Record<string, unknown>): string {
  const dir = join(root, String(dirs++));
  mkdirSync(dir);
  for (const [name, content] of Object.entries(files)) writeFileSync(join(dir, name), typeof content === "string" ? content : JSON.stringify(content));
  return dir;
}

const load = (files: Record<string, unknown> = {}, options?: LoadTokenizerOptions) =>
  loadTokenizer(checkpoint({ "tokenizer.json": tokenizerJson(), "tokenizer_config.json": CONFIG, ...files }), options);

describe("a checkpoint's tokenizer.json (byte-level BPE)", () => {
  it("encodes by the ranked merges, with BOS from tokenizer_config.json", async () => {
    const t = await load();
    expect([t.bosId, t.eosId, t.vocabSize]).toEqual([0, 1, 267]);
    // "the" has no "Ġ" to merge with t, so t·he; " the" merges Ġ t, then h e, then Ġt he.
    expect(t.encode("the the")).toEqual([0, byte(0x74), HE, _THE]);
    expect(t.encode(" t", { bos: false, eos: true })).toEqual([T_, 1]);
    // Digits are cut into runs of three before BPE: "123"·"4" gives 12 3 → 123, and 4. Unsplit, "3 4" (ranked
    // before "1 2") would have made 12·34.
    expect(t.encode("1234", { bos: false })).toEqual([ONE23, byte(0x34)]);
    expect(t.encode("12", { bos: false })).toEqual([TWELVE]);
    expect(t.encode("é\n", { bos: false })).toEqual([byte(0xc3), byte(0xa9), byte(0x0a)]);
    expect(t.encode("", { bos: false })).toEqual([]);
  });

  it("round-trips any well-formed string, and keeps spaces before punctuation", async () => {
    const t = await load();
    fc.assert(fc.property(fc.string({ unit: "grapheme" }), fc.boolean(), (text, eos) => {
      const ids = t.encode(text, { eos });
      expect(ids.every((id) => Number.isInteger(id) && id >= 0 && id < t.vocabSize)).toBe(true);
      expect(t.decode(ids)).toBe(text);
    }));
    // The library's default "clean-up" would turn " ," into ",": a checkpoint that does not ask for it keeps them.
    const text = "Hi , you . I 'm here !";
    expect(t.decode(t.encode(text))).toBe(text);
    expect((await load({ "tokenizer_config.json": { ...CONFIG, clean_up_tokenization_spaces: undefined } })).decode(t.encode(text))).toBe(text);
  });

  it("matches added tokens in the text, skips special ones on decode and labels tokens by their bytes", async () => {
    const t = await load();
    expect(t.encode(`${USER}the${ASSISTANT}`, { bos: false })).toEqual([265, byte(0x74), HE, 266]);
    expect(t.decode([0, byte(0x74), HE, 265, 1, 2])).toBe(`the${USER}`);
    expect(t.decode([])).toBe("");
    expect(t.decode(Int32Array.of(byte(0x61)))).toBe("a");
    expect(t.decode([byte(0xc3)])).toBe("\uFFFD"); // half a character: U+FFFD, as the byte tokenizer gives
    expect([0, 265, _THE, T_, byte(0x0a), byte(0x20), byte(0x00), byte(0xc3), byte(0x41)].map((id) => t.tokenLabel(id)))
      .toEqual([BOS_TEXT, USER, "␠the", "␠t", "⏎", "␠", "<00>", "<c3>", "A"]);
  });

  it("labels an added token by its text, even one whose characters all belong to the byte alphabet", async () => {
    const json = tokenizerJson();
    (json.added_tokens as object[]).push({ id: 267, content: "«é»", special: false, normalized: false, lstrip: false, rstrip: false, single_word: false });
    const t = await load({ "tokenizer.json": json });
    expect(t.tokenLabel(267)).toBe("«é»");
    expect(t.encode("«é»", { bos: false })).toEqual([267]);
  });

  it("accepts the model's padded vocab_size: the ids past its tokens decode to nothing", async () => {
    const t = await load({}, { vocabSize: 270 });
    expect(t.vocabSize).toBe(270);
    expect([t.tokenLabel(267), t.tokenLabel(269)]).toEqual(["<unused 267>", "<unused 269>"]);
    expect(t.decode([byte(0x61), 268, byte(0x62)])).toBe("ab");
    expect(t.decode([268])).toBe("");
    expect(() => t.tokenLabel(270)).toThrow("id: expected an integer in [0, 269], got 270");
    expect(() => t.decode([1, 2.5])).toThrow("ids[1]: expected an integer in [0, 269], got 2.5");
    await expect(load({}, { vocabSize: 200 })).rejects.toThrow(/tokenizer\.json: has token ids up to 266, past the model's vocab_size 200$/);
  });

  it("renders the chat template with the checkpoint's special tokens", async () => {
    const t = await load();
    const messages = [{ role: "system", content: "Be brief." }, { role: "user", content: "the" }, { role: "assistant", content: "12" }, { role: "user", content: "1234" }];
    const text = `${BOS_TEXT}Be brief.${USER}the${ASSISTANT}12${EOS_TEXT}${USER}1234${ASSISTANT}`;
    expect(t.chatTemplate).toBe(TEMPLATE);
    expect(t.applyChatTemplate(messages)).toBe(text);
    expect(t.applyChatTemplate(messages, { addGenerationPrompt: false })).toBe(text.slice(0, -ASSISTANT.length));
    // The template writes BOS itself, so encodeChat adds none.
    expect(t.encodeChat(messages)).toEqual([0, ...[..."Be brief."].map((c) => byte(c.charCodeAt(0))), 265, byte(0x74), HE, 266, TWELVE, 1, 265, ONE23, byte(0x34), 266]);
    expect(() => t.applyChatTemplate([{ role: "user" } as never])).toThrow(/^messages\[0\]: expected \{ role: string, content: string or null \}, got \{"role": "user"\}$/);
  });

  it("reads the template from chat_template.jinja when tokenizer_config.json has none", async () => {
    const { chat_template: _, ...config } = CONFIG;
    const t = await load({ "tokenizer_config.json": config, "chat_template.jinja": "{{ bos_token }}{% for m in messages %}[{{ m.content }}]{% endfor %}" });
    expect(t.applyChatTemplate([{ role: "user", content: "a" }, { role: "user", content: "b" }])).toBe(`${BOS_TEXT}[a][b]`);
    // An assistant turn that only calls tools has no content; its other fields reach the template.
    const tools = await load({ "tokenizer_config.json": config, "chat_template.jinja": "{% for m in messages %}{% if m.content is none %}{{ m.tool_calls[0].name }}{% else %}{{ m.content }}{% endif %}{% endfor %}" });
    expect(tools.applyChatTemplate([{ role: "user", content: "a" }, { role: "assistant", content: null, tool_calls: [{ name: "f" }] }])).toBe("af");
    const bare = await load({ "tokenizer_config.json": config });
    expect(bare.chatTemplate).toBeUndefined();
    expect(() => bare.applyChatTemplate([])).toThrow(/: no chat template \(neither tokenizer_config\.json's chat_template nor chat_template\.jinja\)$/);
  });

  it("works without tokenizer_config.json: no BOS, EOS or template", async () => {
    const t = await loadTokenizer(checkpoint({ "tokenizer.json": tokenizerJson() }));
    expect([t.bosId, t.eosId, t.chatTemplate]).toEqual([undefined, undefined, undefined]);
    expect(t.encode("the", { eos: true })).toEqual([byte(0x74), HE]);
  });
});

describe("a bad tokenizer file is refused in one line naming it", () => {
  const json = tokenizerJson();
  const model = json.model as Record<string, unknown>;
  const cases: [string, Record<string, unknown>, RegExp][] = [
    ["a missing tokenizer.json", { "tokenizer.json": undefined }, /\/tokenizer\.json: no such file$/],
    ["tokenizer.json that is not JSON", { "tokenizer.json": "{ merges: [" }, /\/tokenizer\.json: not valid JSON \(.*\)$/],
    ["tokenizer.json that is a list", { "tokenizer.json": [] }, /\/tokenizer\.json: expected a JSON object, got \[\]$/],
    ["a wrong model type", { "tokenizer.json": { ...json, model: { ...model, type: "Unigram" } } }, /\/tokenizer\.json: model\.type: expected "BPE" \(byte-level BPE, as DeepSeek ships\), got "Unigram"$/],
    ["no merges", { "tokenizer.json": { ...json, model: { ...model, merges: undefined } } }, /\/tokenizer\.json: model\.merges: expected an array, got undefined$/],
    ["a decoder that is not byte-level", { "tokenizer.json": { ...json, decoder: { type: "Metaspace" } } }, /\/tokenizer\.json: decoder\.type: expected "ByteLevel" \(a byte-level BPE\), got "Metaspace"$/],
    ["a negative id", { "tokenizer.json": { ...json, model: { ...model, vocab: { ...(model.vocab as object), x: -1 } } } }, /\/tokenizer\.json: model\.vocab\["x"\]: expected a token id \(an integer >= 0\), got -1$/],
    ["a vocabulary that lacks a byte (the library would drop it from the text)", { "tokenizer.json": { ...json, model: { ...model, vocab: Object.fromEntries(Object.entries(model.vocab as object).filter(([k]) => k !== "~")) } } }, /\/tokenizer\.json: model\.vocab: expected all 256 byte-level characters, but byte 0x7e \("~"\) has no token, and text holding it would lose it$/],
    ["an added token without content", { "tokenizer.json": { ...json, added_tokens: [{ id: 3 }] } }, /\/tokenizer\.json: added_tokens\[0\]: expected an object with a string "content", got \{"id": 3\}$/],
    ["a pre-tokenizer the library does not know", { "tokenizer.json": { ...json, pre_tokenizer: { type: "Bogus" } } }, /\/tokenizer\.json: Unknown PreTokenizer type: Bogus$/],
    ["tokenizer_config.json that is not JSON", { "tokenizer_config.json": "\x00\x01binary" }, /\/tokenizer_config\.json: not valid JSON \([^\x00\x01]*\)$/],
    ["a BOS token that is not in the vocabulary", { "tokenizer_config.json": { ...CONFIG, bos_token: "<s>" } }, /\/tokenizer_config\.json: bos_token: "<s>" is not a token of .*\/tokenizer\.json$/],
    ["a chat_template that is not a string", { "tokenizer_config.json": { ...CONFIG, chat_template: 3 } }, /\/tokenizer_config\.json: chat_template: expected a string, got 3$/],
  ];
  for (const [what, files, message] of cases) {
    it(what, async () => {
      const dir = checkpoint(Object.fromEntries(Object.entries({ "tokenizer.json": json, "tokenizer_config.json": CONFIG, ...files }).filter(([, v]) => v !== undefined)));
      const error = await loadTokenizer(dir).then(() => undefined, (e: Error) => e);
      expect(error).toBeInstanceOf(TinyseekError);
      expect(error?.message).not.toContain("\n");
      expect(error?.message.startsWith(dir)).toBe(true);
      expect(error?.message).toMatch(message);
    });
  }

  it("a chat template that does not parse, when it is applied", async () => {
    const t = await load({ "tokenizer_config.json": { ...CONFIG, chat_template: "{% for m in messages %}" } });
    expect(() => t.applyChatTemplate([{ role: "user", content: "a" }])).toThrow(/\/tokenizer_config\.json: chat template: [^\n]+$/);
  });

  it("a directory that is a file", async () => {
    const dir = checkpoint({ x: "" });
    await expect(loadTokenizer(join(dir, "x"))).rejects.toThrow(/\/x\/tokenizer\.json: a part of the path is not a directory$/);
  });
});

describe("the byte tokenizer behind the same interface", () => {
  it("is the module's own functions", () => {
    expect(byteTokenizer).toMatchObject({ name: "bytes", vocabSize: VOCAB_SIZE, bosId: BOS, eosId: EOS, encode, decode, tokenLabel });
  });
});

describe("the byte-level alphabet", () => {
  it("writes each byte as one distinct character, the unprintable ones from U+0100 on", () => {
    expect(new Set(BYTE_CHARS).size).toBe(256);
    expect([0x00, 0x0a, 0x20, 0x21, 0x7e, 0x7f, 0xa0, 0xa1, 0xad, 0xae, 0xff].map((b) => BYTE_CHARS[b]))
      .toEqual(["Ā", "Ċ", "Ġ", "!", "~", "ġ", "ł", "¡", "Ń", "®", "ÿ"]);
  });

  it("labels a token's bytes as characters where they are whole UTF-8 ones", () => {
    expect(labelBytes(new TextEncoder().encode(" é€\n\t"))).toBe("␠é€⏎<09>");
    expect(labelBytes(Uint8Array.of(0xe2, 0x82, 0x41, 0x80, 0xed, 0xa0, 0x80))).toBe("<e2><82>A<80><ed><a0><80>");
  });
});
