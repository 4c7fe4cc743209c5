/**
 * d1's `<reasoning>`/`<answer>` response format and its training rewards (after Will Brown's GRPO
 * demo, as d1's reward_func.py scores them): every term computed with Python's semantics (code-point
 * lengths, `str.strip`, `re.match` anchored at the start, `$` before a final newline), so that the
 * sums equal d1's bit for bit (test: 3,260 real LLaDA-8B generations).
 */
import { PY_SPACE, pyStrip } from './expression.js';

/** The special tokens d1 removes from a generation before its training rewards see it. */
const STOP_TOKENS = /<\|eot_id\|>|<\|endoftext\|>/g;

/** A decoded completion as d1's rewards see it: LLaDA's end-of-turn and end-of-text tokens removed. */
export const withoutStopTokens = (text: string): string => text.replace(STOP_TOKENS, '');

/** Python's len(): code points, not UTF-16 units. */
const pyLen = (s: string): number => {
  let n = 0;
  for (const _ of s) n++;
  return n;
};

/** Occurrences of sub in s, without overlaps (Python's str.count). */
const pyCount = (s: string, sub: string): number => s.split(sub).length - 1;

/** The text between the last `<answer>` and the next `</answer>` (all of it when absent), stripped. */
export const xmlAnswer = (text: string): string => pyStrip(text.split('<answer>').at(-1)!.split('</answer>')[0]!);

/** d1's xmlcount_reward_func: 0.125 per well-placed tag, less 0.001 per character after the answer. */
export function xmlCountReward(text: string): number {
  let count = 0.0;
  if (pyCount(text, '<reasoning>\n') === 1) count += 0.125;
  if (pyCount(text, '\n</reasoning>\n') === 1) count += 0.125;
  if (pyCount(text, '\n<answer>\n') === 1) {
    count += 0.125;
    count -= pyLen(text.split('\n</answer>\n').at(-1)!) * 0.001;
  }
  if (pyCount(text, '\n</answer>') === 1) {
    count += 0.125;
    count -= (pyLen(text.split('\n</answer>').at(-1)!) - 1) * 0.001;
  }
  return count;
}

/** d1's soft_format_reward_func: 0.5 when the text starts with a reasoning block followed by an answer block. */
const SOFT_FORMAT = new RegExp(`^<reasoning>[\\s\\S]*?</reasoning>[${PY_SPACE}]*<answer>[\\s\\S]*?</answer>`);
export const softFormatReward = (text: string): number => (SOFT_FORMAT.test(text) ? 0.5 : 0);

/** d1's strict_format_reward_func: 0.5 for exactly the format with its newlines (Python's `$` also matches before a final newline). */
export const strictFormatReward = (text: string): number =>
  /^<reasoning>\n[\s\S]*?\n<\/reasoning>\n<answer>\n[\s\S]*?\n<\/answer>\n\n?$/.test(text) ? 0.5 : 0;

/** Python's str.isdigit() for the digits a model writes: decimal digits of any script, superscripts, subscripts and circled digits. */
const PY_DIGITS = /^[\p{Nd}\u00b2\u00b3\u00b9\u2070\u2074-\u2079\u2080-\u2089\u2460-\u2468\u2474-\u247c\u2488-\u2490\u24ea\u24f5-\u24fd\u24ff\u2776-\u277e\u2780-\u2788\u278a-\u2792\u{1f100}-\u{1f10a}]+$/u;

/** d1's int_reward_func: 0.5 when the answer is all digits. */
export const intAnswerReward = (text: string): number => (PY_DIGITS.test(xmlAnswer(text)) ? 0.5 : 0);
