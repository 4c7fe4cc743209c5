import { existsSync } from 'node:fs';
import { join } from 'node:path';

import { Template } from '@huggingface/jinja';
import { Tokenizer } from '@huggingface/tokenizers';

import { CheckpointError, InvalidArgumentError } from '../core/errors.js';
import { readJsonFile } from '../core/files.js';
import type { ChatMessage } from './task.js';
import { probeChatTemplate, TEMPLATE_LIMITS } from './template-probe.js';

/**
 * What the library needs of a tokenizer: tasks, evaluate, both trainers and the CLI take any of these.
 * CharTokenizer (diffpo's small tasks) and HfTokenizer (any Hugging Face tokenizer.json, e.g.
 * LLaDA's byte-level BPE) implement it.
 */
export interface TextTokenizer {
  /** One more than the largest id (must not exceed the model's vocab_size). */
  readonly vocabSize: number;
  /** End of text, also the padding of responses. */
  readonly eosId: number;
  /** The mask token of masked diffusion. */
  readonly maskId: number;
  /** Ids that end a completion: EOS, and an end-of-turn token where the tokenizer has one. */
  readonly stopIds: readonly number[];
  encode(text: string): Int32Array;
  /**
   * The text of generated ids. CharTokenizer stops at EOS; HfTokenizer decodes every id, special
   * tokens included unless `skipSpecialTokens` (what d1 scores: see completionText for the clean text).
   */
  decode(ids: ArrayLike<number>, options?: { skipSpecialTokens?: boolean }): string;
  /** A conversation rendered with the tokenizer's chat template; null when it has none. */
  applyChatTemplate(messages: ChatMessage[], options?: { addGenerationPrompt?: boolean }): string | null;
  /** The files that save it in a model folder (file name -> JSON). */
  files(): Record<string, object>;
}

/**
 * Throws an InvalidArgumentError when a tokenizer cannot drive a model: ids past the embedding, or a
 * mask token other than the config's.
 */
export function checkTokenizerFits(tokenizer: TextTokenizer, config: { vocab_size: number; mask_token_id: number }): void {
  if (tokenizer.vocabSize > config.vocab_size)
    throw new InvalidArgumentError(`the tokenizer's vocabulary (${tokenizer.vocabSize} ids) does not fit the model's embedding (vocab_size ${config.vocab_size})`);
  if (tokenizer.maskId !== config.mask_token_id)
    throw new InvalidArgumentError(`the tokenizer's mask id ${tokenizer.maskId} is not the model's mask_token_id ${config.mask_token_id}`);
}

/** The clean text of a completion: its ids up to the first stop id, without special tokens. */
export function completionText(tokenizer: TextTokenizer, ids: ArrayLike<number>): string {
  let end = 0;
  while (end < ids.length && !tokenizer.stopIds.includes(ids[end]!)) end++;
  return tokenizer.decode(Array.prototype.slice.call(ids, 0, end) as number[], { skipSpecialTokens: true });
}

/** The characters every task format uses; one shared vocabulary for all tasks. */
export const TASK_ALPHABET = '0123456789+-*/()=;#,>:. \nSCA';

export const SPECIAL_TOKENS = { eos: '<|eos|>', mask: '<|mdm_mask|>' } as const;

/**
 * A character-level tokenizer: one id per character, then EOS (also the padding) and the mask token
 * as the last two ids of a vocabulary of `vocabSize` (unused ids in between are reserved). Saved as a
 * Hugging Face `tokenizer.json` (a WordLevel model over single characters with a per-character split).
 */
export class CharTokenizer implements TextTokenizer {
  readonly chars: string;
  readonly vocabSize: number;
  readonly eosId: number;
  readonly maskId: number;
  readonly stopIds: readonly number[];
  readonly #ids = new Map<string, number>();

  constructor(chars: string = TASK_ALPHABET, vocabSize = 64) {
    if (new Set(chars).size !== chars.length) throw new InvalidArgumentError('tokenizer characters must be distinct');
    if (vocabSize < chars.length + 2) throw new InvalidArgumentError(`vocabSize ${vocabSize} is too small for ${chars.length} characters and 2 special tokens`);
    this.chars = chars;
    this.vocabSize = vocabSize;
    this.eosId = vocabSize - 2;
    this.maskId = vocabSize - 1;
    this.stopIds = [this.eosId];
    [...chars].forEach((c, i) => this.#ids.set(c, i));
  }

  /** Ids of the characters of text; throws on a character outside the vocabulary. */
  encode(text: string): Int32Array {
    return Int32Array.from([...text], (c, i) => {
      const id = this.#ids.get(c);
      if (id === undefined) throw new InvalidArgumentError(`character ${JSON.stringify(c)} at ${i} is not in the vocabulary`);
      return id;
    });
  }

  /** Text of ids up to the first EOS; mask tokens show as '_', reserved ids as '?'. */
  decode(ids: ArrayLike<number>): string {
    let out = '';
    for (let i = 0; i < ids.length; i++) {
      const id = ids[i]!;
      if (id === this.eosId) break;
      out += id === this.maskId ? '_' : (this.chars[id] ?? '?');
    }
    return out;
  }

  /** No chat template: task prompts are used as they are. */
  applyChatTemplate(): null {
    return null;
  }

  files(): Record<string, object> {
    return { 'tokenizer.json': this.toJSON() };
  }

  /** Hugging Face tokenizer.json. */
  toJSON(): object {
    const vocab: Record<string, number> = {};
    [...this.chars].forEach((c, i) => (vocab[c] = i));
    for (let id = this.chars.length; id < this.eosId; id++) vocab[`<|reserved_${id}|>`] = id;
    vocab[SPECIAL_TOKENS.eos] = this.eosId;
    vocab[SPECIAL_TOKENS.mask] = this.maskId;
    const special = (content: string, id: number) => ({ id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true });
    return {
      version: '1.0',
      truncation: null,
      padding: null,
      added_tokens: [special(SPECIAL_TOKENS.eos, this.eosId), special(SPECIAL_TOKENS.mask, this.maskId)],
      normalizer: null,
      pre_tokenizer: { type: 'Split', pattern: { Regex: '.' }, behavior: 'Isolated', invert: false },
      post_processor: null,
      decoder: { type: 'Fuse' },
      model: { type: 'WordLevel', vocab, unk_token: SPECIAL_TOKENS.eos },
    };
  }

  /** Reads a tokenizer.json written by toJSON(). */
  static async fromFile(path: string): Promise<CharTokenizer> {
    const json = ((await readJsonFile(path)) ?? {}) as { model?: { type?: string; vocab?: Record<string, number> } };
    const vocab = json.model?.vocab;
    if (json.model?.type !== 'WordLevel' || !vocab) throw new CheckpointError(`${path} is not a diffpo character-level tokenizer (WordLevel model)`);
    const byId = Object.entries(vocab).sort((a, b) => a[1] - b[1]);
    const chars = byId.filter(([tok]) => [...tok].length === 1).map(([tok]) => tok);
    const size = Math.max(...byId.map(([, id]) => id)) + 1;
    if (vocab[SPECIAL_TOKENS.eos] !== size - 2 || vocab[SPECIAL_TOKENS.mask] !== size - 1 || chars.some((c, i) => vocab[c] !== i))
      throw new CheckpointError(`${path}: unexpected layout (characters first, then EOS and mask as the last two ids)`);
    return new CharTokenizer(chars.join(''), size);
  }
}

type TokenSpec = string | { content?: unknown } | null | undefined;
const tokenContent = (t: TokenSpec): string | undefined => (typeof t === 'string' ? t : typeof t?.content === 'string' ? t.content : undefined);

/** LLaDA's names for the tokens the library needs, used when the folder's files do not name them. */
const MASK_TOKEN = '<|mdm_mask|>';
const END_OF_TURN = '<|eot_id|>';

/** The files of a Hugging Face tokenizer folder HfTokenizer reads (all optional but tokenizer.json). */
export interface HfTokenizerFiles {
  /** tokenizer.json */
  tokenizer: object;
  /** tokenizer_config.json: special tokens, the chat template */
  config?: Record<string, unknown>;
  /** special_tokens_map.json */
  specialTokens?: Record<string, unknown>;
  /** the model's config.json: mask_token_id, eos_token_id */
  modelConfig?: Record<string, unknown>;
}

/**
 * Any Hugging Face tokenizer.json (BPE, WordPiece, ...; e.g. LLaDA's byte-level BPE), through the
 * maintained pure-JS @huggingface/tokenizers, with the special tokens and chat template of its
 * folder: EOS from tokenizer_config.json or special_tokens_map.json (else the model config's
 * eos_token_id), the mask id from config.json's mask_token_id (else `<|mdm_mask|>`), `<|eot_id|>`
 * as end of turn when the vocabulary has it. The template is rendered with @huggingface/jinja, as
 * transformers.js renders it.
 */
export class HfTokenizer implements TextTokenizer {
  readonly vocabSize: number;
  readonly eosId: number;
  readonly maskId: number;
  readonly stopIds: readonly number[];
  /** The chat template's source, or null. */
  readonly chatTemplate: string | null;
  readonly #tok: Tokenizer;
  readonly #files: HfTokenizerFiles;
  readonly #template: Template | null;
  /** The special tokens a chat template sees (bos_token, eos_token, ...). */
  readonly templateTokens: Record<string, string>;
  readonly #name: string;

  /** `name` says where the files came from, in errors (a folder path). */
  constructor(files: HfTokenizerFiles, name = 'tokenizer') {
    this.#name = name;
    this.#files = files;
    const config = files.config ?? {};
    const special = files.specialTokens ?? {};
    try {
      this.#tok = new Tokenizer(files.tokenizer, config);
    } catch (err) {
      throw new CheckpointError(`${name}: tokenizer.json is not a tokenizer this library can load: ${(err as Error).message}`, { cause: err });
    }
    const json = files.tokenizer as { model?: { vocab?: Record<string, number> | [string, number][] }; added_tokens?: { id: number }[] };
    const vocab = json.model?.vocab ?? {};
    const ids = [...(Array.isArray(vocab) ? vocab.map((_, i) => i) : Object.values(vocab)), ...(json.added_tokens ?? []).map((t) => t.id)];
    this.vocabSize = ids.length ? Math.max(...ids) + 1 : 0;
    const idOf = (what: string, token: string | undefined): number | undefined => {
      if (token === undefined) return undefined;
      const id = this.#tok.token_to_id(token);
      if (id === undefined) throw new CheckpointError(`${name}: the ${what} token ${JSON.stringify(token)} is not in tokenizer.json`);
      return id;
    };
    const modelId = (key: string): number | undefined => {
      const v = files.modelConfig?.[key];
      const id = Array.isArray(v) ? v[0] : v;
      return typeof id === 'number' && Number.isInteger(id) ? id : undefined;
    };
    const eos = idOf('EOS', tokenContent(config.eos_token as TokenSpec) ?? tokenContent(special.eos_token as TokenSpec)) ?? modelId('eos_token_id');
    if (eos === undefined) throw new CheckpointError(`${name}: no EOS token (tokenizer_config.json eos_token, special_tokens_map.json or config.json eos_token_id)`);
    const mask = modelId('mask_token_id') ?? this.#tok.token_to_id(MASK_TOKEN);
    if (mask === undefined) throw new CheckpointError(`${name}: no mask token (config.json mask_token_id, or ${MASK_TOKEN} in the vocabulary)`);
    this.eosId = eos;
    this.maskId = mask;
    const eot = this.#tok.token_to_id(END_OF_TURN);
    this.stopIds = eot === undefined ? [eos] : [eos, eot];
    const template = config.chat_template;
    this.chatTemplate = typeof template === 'string' ? template : Array.isArray(template) ? ((template.find((t) => t?.name === 'default')?.template as string | undefined) ?? null) : null;
    try {
      this.#template = this.chatTemplate === null ? null : new Template(this.chatTemplate);
    } catch (err) {
      throw new CheckpointError(`${name}: tokenizer_config.json's chat_template does not parse: ${(err as Error).message}`, { cause: err });
    }
    this.templateTokens = {};
    for (const key of ['bos_token', 'eos_token', 'pad_token', 'unk_token', 'sep_token', 'cls_token', 'mask_token']) {
      const v = tokenContent(config[key] as TokenSpec) ?? tokenContent(special[key] as TokenSpec);
      if (v !== undefined) this.templateTokens[key] = v;
    }
  }

  encode(text: string): Int32Array {
    if (typeof text !== 'string') throw new InvalidArgumentError(`encode needs a string, got ${typeof text}`);
    return Int32Array.from(this.#tok.encode(text, { add_special_tokens: false }).ids);
  }

  decode(ids: ArrayLike<number>, options: { skipSpecialTokens?: boolean } = {}): string {
    return this.#tok.decode(Array.from(ids), { skip_special_tokens: options.skipSpecialTokens ?? false });
  }

  applyChatTemplate(messages: ChatMessage[], options: { addGenerationPrompt?: boolean } = {}): string | null {
    if (!this.#template) return null;
    if (!Array.isArray(messages) || messages.some((m) => typeof m?.role !== 'string' || typeof m.content !== 'string'))
      throw new InvalidArgumentError('messages must be an array of { role, content } strings');
    let text: string;
    try {
      text = this.#template.render({ messages, add_generation_prompt: options.addGenerationPrompt ?? false, ...this.templateTokens });
    } catch (err) {
      throw new CheckpointError(`${this.#name}: the chat template failed to render: ${(err as Error).message}`, { cause: err });
    }
    const limit = TEMPLATE_LIMITS.chars + messages.reduce((a, m) => a + m.content.length, 0);
    if (text.length > limit) throw new CheckpointError(`${this.#name}: the chat template emitted ${text.length} characters for ${messages.length} message(s)`);
    return text;
  }

  files(): Record<string, object> {
    const out: Record<string, object> = { 'tokenizer.json': this.#files.tokenizer };
    if (this.#files.config) out['tokenizer_config.json'] = this.#files.config;
    if (this.#files.specialTokens) out['special_tokens_map.json'] = this.#files.specialTokens;
    return out;
  }
}

async function optionalJson(path: string): Promise<Record<string, unknown> | undefined> {
  if (!existsSync(path)) return undefined;
  const json = await readJsonFile(path);
  if (json === null || typeof json !== 'object' || Array.isArray(json)) throw new CheckpointError(`${path} must hold a JSON object`);
  return json as Record<string, unknown>;
}

/**
 * The tokenizer of a model folder: diffpo's character tokenizer when tokenizer.json is one, else a
 * Hugging Face tokenizer with the folder's tokenizer_config.json, special_tokens_map.json and
 * config.json (each optional).
 */
export async function loadTokenizer(dir: string): Promise<CharTokenizer | HfTokenizer> {
  const path = join(dir, 'tokenizer.json');
  if (!existsSync(path)) throw new CheckpointError(`${dir} has no tokenizer.json`);
  const json = await readJsonFile(path);
  if (json === null || typeof json !== 'object' || Array.isArray(json)) throw new CheckpointError(`${path} must hold a JSON object`);
  if ((json as { model?: { type?: string } }).model?.type === 'WordLevel') {
    try {
      return await CharTokenizer.fromFile(path);
    } catch {
      // a WordLevel tokenizer of another layout: let the general loader take it
    }
  }
  const tokenizer = new HfTokenizer(
    {
      tokenizer: json,
      config: await optionalJson(join(dir, 'tokenizer_config.json')),
      specialTokens: await optionalJson(join(dir, 'special_tokens_map.json')),
      modelConfig: await optionalJson(join(dir, 'config.json')),
    },
    dir,
  );
  if (tokenizer.chatTemplate !== null) await probeChatTemplate(tokenizer.chatTemplate, tokenizer.templateTokens, dir);
  return tokenizer;
}
