import { existsSync } from 'node:fs';
import { join } from 'node:path';

import { Tokenizer } from '@huggingface/tokenizers';

import { CheckpointError, InvalidArgumentError } from '../core/errors.js';
import { readJsonFile } from '../core/files.js';

/** The characters every task format uses; one shared vocabulary for all tasks. */
export const TASK_ALPHABET = '0123456789+-*/()=;#,>:. \nSCA';

export const SPECIAL_TOKENS = { eos: '<|eos|>', mask: '<|mdm_mask|>' } as const;

/**
 * A character-level tokenizer: one id per character, then EOS (also the padding) and the mask token
 * as the last two ids of a vocabulary of `vocabSize` (unused ids in between are reserved). Saved as a
 * Hugging Face `tokenizer.json` (a WordLevel model over single characters with a per-character split).
 */
export class CharTokenizer {
  readonly chars: string;
  readonly vocabSize: number;
  readonly eosId: number;
  readonly maskId: number;
  readonly #ids = new Map<string, number>();

  constructor(chars: string = TASK_ALPHABET, vocabSize = 64) {
    if (new Set(chars).size !== chars.length) throw new InvalidArgumentError('tokenizer characters must be distinct');
    if (vocabSize < chars.length + 2) throw new InvalidArgumentError(`vocabSize ${vocabSize} is too small for ${chars.length} characters and 2 special tokens`);
    this.chars = chars;
    this.vocabSize = vocabSize;
    this.eosId = vocabSize - 2;
    this.maskId = vocabSize - 1;
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

/** What the library needs of a tokenizer. */
export interface TextTokenizer {
  readonly vocabSize: number;
  encode(text: string): Int32Array;
  decode(ids: ArrayLike<number>): string;
}

/**
 * Any Hugging Face tokenizer.json (BPE, WordPiece, ...; e.g. LLaDA's byte-level BPE), through the
 * maintained pure-JS @huggingface/tokenizers. Special tokens such as LLaDA's <|mdm_mask|> encode to
 * their single ids.
 */
export class HfTokenizer implements TextTokenizer {
  readonly vocabSize: number;
  readonly #tok: Tokenizer;

  constructor(tokenizerJson: object, tokenizerConfig: object = {}) {
    this.#tok = new Tokenizer(tokenizerJson, tokenizerConfig);
    const json = tokenizerJson as { model?: { vocab?: Record<string, number> | [string, number][] }; added_tokens?: { id: number }[] };
    const vocab = json.model?.vocab ?? {};
    const ids = [...(Array.isArray(vocab) ? vocab.map((_, i) => i) : Object.values(vocab)), ...(json.added_tokens ?? []).map((t) => t.id)];
    this.vocabSize = ids.length ? Math.max(...ids) + 1 : 0;
  }

  encode(text: string): Int32Array {
    return Int32Array.from(this.#tok.encode(text, { add_special_tokens: false }).ids);
  }

  decode(ids: ArrayLike<number>): string {
    return this.#tok.decode(Array.from(ids), { skip_special_tokens: false });
  }
}

/**
 * The tokenizer of a checkpoint directory: diffpo's character tokenizer when tokenizer.json is one,
 * else a Hugging Face tokenizer (with tokenizer_config.json when present).
 */
export async function loadTokenizer(dir: string): Promise<CharTokenizer | HfTokenizer> {
  const path = join(dir, 'tokenizer.json');
  const json = ((await readJsonFile(path)) ?? {}) as { model?: { type?: string } };
  if (json.model?.type === 'WordLevel') {
    try {
      return await CharTokenizer.fromFile(path);
    } catch {
      // a WordLevel tokenizer of another layout: let the general loader take it
    }
  }
  const configPath = join(dir, 'tokenizer_config.json');
  const config = existsSync(configPath) ? ((await readJsonFile(configPath)) ?? {}) : {}; // optional
  try {
    return new HfTokenizer(json, config);
  } catch (err) {
    throw new CheckpointError(`${path} is not a tokenizer this library can load: ${(err as Error).message}`, { cause: err });
  }
}
