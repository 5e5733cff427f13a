// A checkpoint's own tokenizer: the byte-level BPE `tokenizer.json` (Hugging Face `tokenizers` format) that
// DeepSeek ships beside its weights, read offline from the checkpoint directory, with `tokenizer_config.json`'s
// special tokens and chat template. Encoding and decoding are @huggingface/tokenizers' (the tokenizer code of
// Transformers.js, without its runtimes); chat templates are rendered by @huggingface/jinja. What tinyseek adds:
// every refusal is one line naming the file, BOS/EOS are added by the `bos`/`eos` options alone (whatever the
// file's post-processor says), ids are checked, and a single token is labelled by its bytes (spec/tokenizers.md).

import { Template } from "@huggingface/jinja";
import { Tokenizer as HfTokenizerClass } from "@huggingface/tokenizers";
import { argError, checkInteger, describe, excerpt, TinyseekError } from "../errors.ts";
import { FileError, readBytes } from "../io/files.ts";
import { BYTE_CHARS, labelBytes, tokenBytes } from "./byte-level.ts";
import type { EncodeOptions, Tokenizer } from "./tokenizer.ts";

/**
 * The part of @huggingface/tokenizers used here. Its .d.ts files import each other without extensions, which
 * NodeNext resolution cannot follow, so without this the class would type as `any`.
 */
interface HfTokenizer {
  encode(text: string, options: { add_special_tokens: boolean }): { ids: number[] };
  decode(ids: number[], options: { skip_special_tokens: boolean }): string;
}
const HfTokenizerOf = HfTokenizerClass as unknown as new (json: object, config: object) => HfTokenizer;

/** DeepSeek-V3's tokenizer.json is about 8 MB; a file far past that is something else given by mistake. */
const MAX_TOKENIZER_BYTES = 256 * 2 ** 20;

/** A message as chat templates take it; other fields (DeepSeek's `tool_calls`) reach the template as they are. */
export interface ChatMessage {
  role: string;
  /** null for an assistant turn that only calls tools. */
  content: string | null;
  [field: string]: unknown;
}

export interface ChatOptions {
  /** End with the template's opening of the assistant's turn (default true: the model writes next). */
  addGenerationPrompt?: boolean;
}

/** A tokenizer.json tokenizer: the common `Tokenizer` interface and, where the checkpoint has one, its chat template. */
export interface BpeTokenizer extends Tokenizer {
  /** The template's source (tokenizer_config.json's `chat_template`, or chat_template.jinja), if any. */
  readonly chatTemplate: string | undefined;
  /** The conversation as the template writes it (BOS included where the template writes `bos_token`). */
  applyChatTemplate(messages: readonly ChatMessage[], options?: ChatOptions): string;
  /** The template's text encoded without adding BOS, since the template writes its own. */
  encodeChat(messages: readonly ChatMessage[], options?: ChatOptions): number[];
}

export interface LoadTokenizerOptions {
  /**
   * The model's vocab_size. DeepSeek pads its embedding past the tokenizer's last id (V3: 129,280 rows for
   * about 128,800 ids); the padding ids become valid here (labelled `<unused N>`, decoded to nothing), and a tokenizer
   * with ids past it is refused.
   */
  vocabSize?: number;
}

type Json = Record<string, unknown>;
const isObject = (v: unknown): v is Json => typeof v === "object" && v !== null && !Array.isArray(v);

/** A file in `dir`, parsed as JSON: undefined when `optional` and absent, otherwise a one-line refusal naming it. */
async function readJson(path: string, optional: boolean): Promise<Json | undefined> {
  const text = await readText(path, optional);
  if (text === undefined) return undefined;
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (error) {
    // JSON.parse quotes what it choked on: keep control bytes of a binary file off the terminal.
    throw new TinyseekError(`${path}: not valid JSON (${(error as Error).message.replace(/[\x00-\x1f\x7f-\x9f\ufffd]/g, "?")})`);
  }
  if (!isObject(json)) throw new TinyseekError(`${path}: expected a JSON object, got ${excerpt(json)}`);
  return json;
}

async function readText(path: string, optional: boolean): Promise<string | undefined> {
  try {
    return new TextDecoder().decode(await readBytes(path, MAX_TOKENIZER_BYTES));
  } catch (error) {
    if (optional && error instanceof FileError && error.reason === "no such file") return undefined;
    throw error;
  }
}

/** A special token as tokenizer_config.json writes it: a string, or an AddedToken object with `content`. */
function tokenContent(value: unknown): string | undefined {
  if (typeof value === "string") return value;
  if (isObject(value) && typeof value.content === "string") return value.content;
  return undefined;
}

/** Each id's token (vocabulary, then added tokens, which win), which ids are added tokens, and the id count. */
function tokenTable(file: string, json: Json, model: Json) {
  const tokens = new Map<number, string>();
  const added = new Set<number>();
  const idOf = new Map<string, number>();
  const put = (where: string, token: string, id: unknown) => {
    if (!Number.isInteger(id) || (id as number) < 0) throw new TinyseekError(`${file}: ${where}: expected a token id (an integer >= 0), got ${describe(id)}`);
    tokens.set(id as number, token);
    idOf.set(token, id as number);
  };
  for (const [token, id] of Object.entries(model.vocab as Json)) put(`model.vocab[${JSON.stringify(token)}]`, token, id);
  (json.added_tokens as unknown[]).forEach((token, i) => {
    if (!isObject(token) || typeof token.content !== "string") throw new TinyseekError(`${file}: added_tokens[${i}]: expected an object with a string "content", got ${excerpt(token)}`);
    put(`added_tokens[${i}].id`, token.content, token.id);
    added.add(token.id as number);
  });
  let size = 0;
  for (const id of tokens.keys()) size = Math.max(size, id + 1);
  return { tokens, added, idOf, size };
}

/** What the library needs and tinyseek supports, checked so that a wrong file fails here in one line, not inside it. */
function checkShape(file: string, json: Json): Json {
  const model = json.model;
  if (!isObject(model)) throw new TinyseekError(`${file}: model: expected an object, got ${excerpt(model)}`);
  if (model.type !== "BPE") throw new TinyseekError(`${file}: model.type: expected "BPE" (byte-level BPE, as DeepSeek ships), got ${excerpt(model.type)}`);
  if (!isObject(model.vocab)) throw new TinyseekError(`${file}: model.vocab: expected an object of token → id, got ${excerpt(model.vocab)}`);
  if (!Array.isArray(model.merges)) throw new TinyseekError(`${file}: model.merges: expected an array, got ${excerpt(model.merges)}`);
  const decoder = isObject(json.decoder) ? json.decoder.type : json.decoder;
  if (decoder !== "ByteLevel") throw new TinyseekError(`${file}: decoder.type: expected "ByteLevel" (a byte-level BPE), got ${excerpt(decoder)}`);
  if (json.added_tokens !== undefined && !Array.isArray(json.added_tokens)) throw new TinyseekError(`${file}: added_tokens: expected an array, got ${excerpt(json.added_tokens)}`);
  return model;
}

/** The chat template: tokenizer_config.json's `chat_template` (a string, or named templates with a "default"), else chat_template.jinja. */
async function chatTemplateOf(dir: string, configFile: string, config: Json): Promise<{ source: string; file: string } | undefined> {
  const value = config.chat_template;
  if (typeof value === "string") return { source: value, file: configFile };
  if (Array.isArray(value)) {
    const named = value.find((t) => isObject(t) && t.name === "default");
    if (!isObject(named) || typeof named.template !== "string") throw new TinyseekError(`${configFile}: chat_template: expected a string or a list with a "default" template, got ${excerpt(value)}`);
    return { source: named.template, file: configFile };
  }
  if (value !== undefined && value !== null) throw new TinyseekError(`${configFile}: chat_template: expected a string, got ${excerpt(value)}`);
  const file = `${dir}/chat_template.jinja`;
  const source = await readText(file, true);
  return source === undefined ? undefined : { source, file };
}

/**
 * The tokenizer of the checkpoint directory `dir`: `tokenizer.json` (required) and `tokenizer_config.json`
 * (optional: without it there is no BOS, EOS or chat template). Every refusal is one line naming the file.
 */
export async function loadTokenizer(dir: string, options: LoadTokenizerOptions = {}): Promise<BpeTokenizer> {
  const file = `${dir}/tokenizer.json`;
  const configFile = `${dir}/tokenizer_config.json`;
  const json = (await readJson(file, false))!;
  const config = (await readJson(configFile, true)) ?? {};
  const model = checkShape(file, json);
  json.added_tokens ??= [];
  const { tokens, added, idOf, size: ownSize } = tokenTable(file, json, model);
  // The library drops, without a word, a byte that has no token: every byte must have one.
  const missing = BYTE_CHARS.findIndex((c) => !Object.hasOwn(model.vocab as Json, c));
  if (missing >= 0) {
    throw new TinyseekError(`${file}: model.vocab: expected all 256 byte-level characters, but byte 0x${missing.toString(16).padStart(2, "0")} (${JSON.stringify(BYTE_CHARS[missing])}) has no token, and text holding it would lose it`);
  }
  if (options.vocabSize !== undefined) {
    checkInteger("vocabSize", options.vocabSize, 1);
    if (ownSize > options.vocabSize) throw new TinyseekError(`${file}: has token ids up to ${ownSize - 1}, past the model's vocab_size ${options.vocabSize}`);
  }
  const vocabSize = options.vocabSize ?? ownSize;

  const specialId = (key: string): number | undefined => {
    const content = tokenContent(config[key]);
    if (content === undefined) return undefined;
    const id = idOf.get(content);
    if (id === undefined) throw new TinyseekError(`${configFile}: ${key}: ${JSON.stringify(content)} is not a token of ${file}`);
    return id;
  };
  const bosId = specialId("bos_token");
  const eosId = specialId("eos_token");

  let hf: HfTokenizer;
  try {
    // Decoding must give back the text that was encoded, so spaces are not "cleaned up" unless the checkpoint asks.
    hf = new HfTokenizerOf(json, { ...config, clean_up_tokenization_spaces: config.clean_up_tokenization_spaces === true });
  } catch (error) {
    throw new TinyseekError(`${file}: ${(error as Error).message.split("\n")[0]}`);
  }

  function encode(text: string, { bos = true, eos = false }: EncodeOptions = {}): number[] {
    if (typeof text !== "string") throw argError("text", "a string", typeof text);
    const ids = hf.encode(text, { add_special_tokens: false }).ids;
    return [...(bos && bosId !== undefined ? [bosId] : []), ...ids, ...(eos && eosId !== undefined ? [eosId] : [])];
  }

  function decode(ids: ArrayLike<number>): string {
    for (let i = 0; i < ids.length; i++) checkInteger(`ids[${i}]`, ids[i]!, 0, vocabSize - 1);
    // The library refuses an empty list; ids without a token (padding rows) it decodes to nothing.
    return ids.length === 0 ? "" : hf.decode(Array.from(ids), { skip_special_tokens: true });
  }

  function tokenLabel(id: number): string {
    checkInteger("id", id, 0, vocabSize - 1);
    const token = tokens.get(id);
    if (token === undefined) return `<unused ${id}>`;
    if (added.has(id)) return token;
    const bytes = tokenBytes(token);
    return bytes === undefined ? token : labelBytes(bytes);
  }

  const template = await chatTemplateOf(dir, configFile, config);
  let parsed: Template | undefined;
  function applyChatTemplate(messages: readonly ChatMessage[], { addGenerationPrompt = true }: ChatOptions = {}): string {
    if (template === undefined) throw new TinyseekError(`${dir}: no chat template (neither tokenizer_config.json's chat_template nor chat_template.jinja)`);
    if (!Array.isArray(messages)) throw new TinyseekError(`messages: expected an array of { role, content }, got ${excerpt(messages)}`);
    messages.forEach((m, i) => {
      if (!isObject(m) || typeof m.role !== "string" || !(typeof m.content === "string" || m.content === null)) {
        throw new TinyseekError(`messages[${i}]: expected { role: string, content: string or null }, got ${excerpt(m)}`);
      }
    });
    try {
      parsed ??= new Template(template.source);
      const specials = Object.fromEntries(["bos_token", "eos_token", "pad_token", "unk_token"].map((k) => [k, tokenContent(config[k]) ?? ""]));
      return parsed.render({ ...specials, messages, add_generation_prompt: addGenerationPrompt });
    } catch (error) {
      throw new TinyseekError(`${template.file}: chat template: ${(error as Error).message.split("\n")[0]}`);
    }
  }

  return Object.freeze({
    name: file,
    vocabSize,
    bosId,
    eosId,
    encode,
    decode,
    tokenLabel,
    chatTemplate: template?.source,
    applyChatTemplate,
    encodeChat: (messages: readonly ChatMessage[], options?: ChatOptions) => encode(applyChatTemplate(messages, options), { bos: false }),
  });
}
