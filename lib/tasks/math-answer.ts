/**
 * MATH answers as d1 reads them (docs/rewards.md): the last `\boxed{...}` of a text, and the
 * equivalence of Hendrycks et al.'s MATH evaluation (a string normalisation, then equality). Written
 * to give d1's verdict on every input, including its failure modes: where d1's Python raises inside
 * the normalisation, its `is_equiv` falls back to comparing the raw strings, and so does this.
 */
import { pyStrip } from './expression.js';

/** Where d1's normalisation would raise (an IndexError, ValueError or AssertionError in Python). */
class PythonRaise extends Error {}

/**
 * The last `\boxed{...}` (or `\fbox{...}`) of a text with its balanced braces, or null; when the text
 * holds `\boxed ` (boxed with a space), everything after its last occurrence up to a `$`.
 */
export function lastBoxedOnlyString(text: string): string | null {
  if (text.includes('\\boxed ')) return '\\boxed ' + text.split('\\boxed ').at(-1)!.split('$')[0]!;
  let idx = text.lastIndexOf('\\boxed');
  if (idx < 0) idx = text.lastIndexOf('\\fbox');
  if (idx < 0) return null;
  let open = 0;
  for (let i = idx; i < text.length; i++) {
    if (text[i] === '{') open++;
    if (text[i] === '}') {
      open--;
      if (open === 0) return text.slice(idx, i + 1);
    }
  }
  return null;
}

/** The content of `\boxed{...}` (or of `\boxed ...`), or null where d1's `remove_boxed` raises (including on null). */
export function removeBoxed(s: string | null): string | null {
  if (s === null) return null;
  if (s.includes('\\boxed ')) return s.startsWith('\\boxed ') ? s.slice('\\boxed '.length) : null;
  return s.startsWith('\\boxed{') && s.endsWith('}') ? s.slice('\\boxed{'.length, -1) : null;
}

/** The boxed answer of a text: removeBoxed(lastBoxedOnlyString(text)). */
export const boxedAnswer = (text: string): string | null => removeBoxed(lastBoxedOnlyString(text));

function fixFracs(s: string): string {
  const parts = s.split('\\frac');
  let out = parts[0]!;
  for (const sub of parts.slice(1)) {
    out += '\\frac';
    if (sub.length === 0) throw new PythonRaise(); // substr[0] of an empty string
    if (sub[0] === '{') {
      out += sub;
      continue;
    }
    if (sub.length < 2) return s;
    const [a, b] = [sub[0]!, sub[1]!];
    const post = sub.slice(2);
    out += b !== '{' ? `{${a}}{${b}}${post}` : `{${a}}${b}${post}`;
  }
  return out;
}

/** Python's int() of a string after spaces were removed: an optional sign, digits with single underscores between. */
function pyInt(s: string): bigint {
  const m = /^[\t\n\v\f\r]*([+-]?)(\d+(?:_\d+)*)[\t\n\v\f\r]*$/.exec(s);
  if (!m) throw new PythonRaise();
  const v = BigInt(m[2]!.replaceAll('_', ''));
  return m[1] === '-' ? -v : v;
}

function fixASlashB(s: string): string {
  const parts = s.split('/');
  if (parts.length !== 2) return s;
  const a = pyInt(parts[0]!);
  const b = pyInt(parts[1]!);
  return s === `${a}/${b}` ? `\\frac{${a}}{${b}}` : s;
}

function removeRightUnits(s: string): string {
  if (!s.includes('\\text{ ')) return s;
  const parts = s.split('\\text{ ');
  if (parts.length !== 2) throw new PythonRaise();
  return parts[0]!;
}

function fixSqrt(s: string): string {
  if (!s.includes('\\sqrt')) return s;
  const parts = s.split('\\sqrt');
  let out = parts[0]!;
  for (const sub of parts.slice(1)) {
    if (sub.length === 0) throw new PythonRaise();
    out += sub[0] !== '{' ? `\\sqrt{${sub[0]}}${sub.slice(1)}` : `\\sqrt${sub}`;
  }
  return out;
}

/** Hendrycks et al.'s `strip_string`: the normal form two MATH answers are compared in. Throws PythonRaise where Python raises. */
function stripString(input: string): string {
  let s = input.replaceAll('\n', '').replaceAll('\\!', '').replaceAll('\\\\', '\\');
  s = s.replaceAll('tfrac', 'frac').replaceAll('dfrac', 'frac');
  s = s.replaceAll('\\left', '').replaceAll('\\right', '');
  s = s.replaceAll('^{\\circ}', '').replaceAll('^\\circ', '');
  s = s.replaceAll('\\$', '');
  s = removeRightUnits(s);
  s = s.replaceAll('\\%', '');
  s = s.replaceAll(' .', ' 0.').replaceAll('{.', '{0.');
  if (s.length === 0) return s;
  if (s[0] === '.') s = '0' + s;
  const eq = s.split('=');
  if (eq.length === 2 && eq[0]!.length <= 2) s = eq[1]!;
  s = fixSqrt(s);
  s = s.replaceAll(' ', '');
  s = fixFracs(s);
  if (s === '0.5') s = '\\frac{1}{2}';
  return fixASlashB(s);
}

/** d1's `is_equiv`: equal after normalisation; where the normalisation raises, equal as raw strings. */
export function isEquivMath(a: string | null, b: string | null): boolean {
  if (a === null || b === null) return a === b;
  try {
    return stripString(a) === stripString(b);
  } catch (err) {
    if (err instanceof PythonRaise) return a === b;
    throw err;
  }
}

/** The first `<answer>...</answer>` of a text, stripped as Python strips, or null. */
export function firstAnswerTag(text: string): string | null {
  const m = /<answer>([\s\S]*?)<\/answer>/.exec(text);
  return m ? pyStrip(m[1]!) : null;
}
