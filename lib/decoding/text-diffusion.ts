import { InvalidArgumentError } from '../core/errors.js';
import { DiffusionLM, type LoadOptions } from '../engine/model.js';
import type { ChatMessage } from '../tasks/task.js';
import { checkTokenizerFits, completionText, loadTokenizer, type TextTokenizer } from '../tasks/tokenizer.js';
import { generate, type GenerateOptions } from './sampler.js';

/** A prompt: a text (a user turn through the chat template, or as it is), or a conversation. */
export type TextPrompt = string | ChatMessage[];

export interface TextGenerateOptions extends Omit<GenerateOptions, 'genLength' | 'blockLength' | 'firstSequence'> {
  /** Tokens to generate per prompt. Default 128. */
  genLength?: number;
  /** Semi-autoregressive block length. Default 32 when it divides genLength (LLaDA's and d1's), else genLength. */
  blockLength?: number;
  /**
   * Whether a text prompt becomes one user turn of the chat template (with the assistant's
   * generation prompt). Default true when the tokenizer has a template; conversations always go through it.
   */
  chat?: boolean;
}

export interface TextGeneration {
  /** The completion up to its first end-of-text or end-of-turn token, without special tokens. */
  text: string;
  /** Every generated token decoded, special tokens included (what d1's evaluation parses). */
  rawText: string;
  /** The generated ids (genLength). */
  tokens: Int32Array;
  /** Forwards this prompt took part in. */
  nfe: number;
  /** Whether maxNfe cut decoding short. */
  hitBudget: boolean;
}

const isChat = (p: unknown): p is ChatMessage[] => Array.isArray(p) && p.length > 0 && typeof p[0] === 'object' && p[0] !== null && !Array.isArray(p[0]);

/**
 * Text in, text out, as transformers.js' pipelines: a model folder's weights (BF16-resident when the
 * checkpoint is BF16), tokenizer and chat template in one object.
 *
 * ```js
 * const lm = await TextDiffusion.fromPretrained('LLaDA-8B-Instruct');
 * const [a, b] = await lm.generate(['What is 7 * 6?', 'Name a prime.'], { genLength: 64, cache: 'dual' });
 * console.log(a.text, a.nfe);
 * lm.dispose();
 * ```
 */
export class TextDiffusion {
  private constructor(
    readonly model: DiffusionLM,
    readonly tokenizer: TextTokenizer,
  ) {}

  /** Loads a model folder (config.json, weights, tokenizer.json and, for a chat model, tokenizer_config.json); dtype defaults to 'auto'. */
  static async fromPretrained(dir: string, options: LoadOptions = {}): Promise<TextDiffusion> {
    const tokenizer = await loadTokenizer(dir);
    const model = await DiffusionLM.fromPretrained(dir, { dtype: 'auto', ...options });
    try {
      checkTokenizerFits(tokenizer, model.config);
    } catch (err) {
      model.dispose();
      throw err;
    }
    return new TextDiffusion(model, tokenizer);
  }

  /** Wraps a model and a tokenizer (checked against each other). */
  static from(model: DiffusionLM, tokenizer: TextTokenizer): TextDiffusion {
    checkTokenizerFits(tokenizer, model.config);
    return new TextDiffusion(model, tokenizer);
  }

  /** The ids of a prompt as generate() encodes it. */
  encodePrompt(prompt: TextPrompt, options: { chat?: boolean } = {}): Int32Array {
    if (isChat(prompt)) {
      const text = this.tokenizer.applyChatTemplate(prompt, { addGenerationPrompt: true });
      if (text === null) throw new InvalidArgumentError('a conversation needs a chat template, and this tokenizer has none: give a text prompt');
      return this.tokenizer.encode(text);
    }
    if (typeof prompt !== 'string') throw new InvalidArgumentError(`a prompt must be a string or an array of { role, content } messages, got ${JSON.stringify(prompt)}`);
    const templated = (options.chat ?? true) ? this.tokenizer.applyChatTemplate([{ role: 'user', content: prompt }], { addGenerationPrompt: true }) : null;
    return this.tokenizer.encode(templated ?? prompt);
  }

  /** Completes one prompt, or a batch in one decode (prompts of any lengths). */
  generate(prompt: TextPrompt, options?: TextGenerateOptions): Promise<TextGeneration>;
  generate(prompts: TextPrompt[], options?: TextGenerateOptions): Promise<TextGeneration[]>;
  async generate(input: TextPrompt | TextPrompt[], options: TextGenerateOptions = {}): Promise<TextGeneration | TextGeneration[]> {
    const single = typeof input === 'string' || isChat(input);
    const prompts = single ? [input as TextPrompt] : (input as TextPrompt[]);
    if (!Array.isArray(prompts) || prompts.length === 0) throw new InvalidArgumentError('generate needs a prompt or a non-empty array of prompts');
    const { chat, genLength = 128, blockLength, ...rest } = options;
    const ids = prompts.map((p) => this.encodePrompt(p, { chat }));
    const r = await generate(this.model, ids, { ...rest, genLength, blockLength: blockLength ?? (genLength % 32 === 0 ? 32 : genLength) });
    const out = prompts.map((_, b): TextGeneration => {
      const tokens = r.tokens.slice(b * genLength, (b + 1) * genLength);
      return { text: completionText(this.tokenizer, tokens), rawText: this.tokenizer.decode(tokens), tokens, nfe: r.nfe[b]!, hitBudget: r.hitBudget[b] === 1 };
    });
    return single ? out[0]! : out;
  }

  /** Frees the model's native memory. */
  dispose(): void {
    this.model.dispose();
  }
}
