/**
 * Arithmetic answers read the way d1's Countdown reward reads them, without `eval`. d1 checks that
 * an answer holds only digits, `+ - * / ( ) .` and whitespace and then runs Python's `eval` on it;
 * this evaluator accepts exactly the Python expressions over those characters that have no `.`, and
 * gives them Python's values:
 * - integers are exact (BigInt), `/` is true division (a float), mixed operations round the integer
 *   to the nearest float, and a division by zero is an error (Python raises, it gives no Infinity);
 * - unary `+` and `-` at any depth (`9--18`, `-(3)`), the usual precedence, left associativity;
 * - a literal with a leading zero (`01`) is a syntax error, while `0` and `00` are zero;
 * - spaces, tabs and form feeds may stand between tokens; newlines only inside parentheses (Python's
 *   implicit line joining); whitespace inside a number splits it into two numbers (an error);
 * - literals of more than 4300 digits are errors, as Python's int-string conversion limit makes them.
 * Deliberate deviations, each scored as an invalid answer where d1 might score otherwise: `**`, `//`
 * and decimal points (Python-only syntax we never emit), and integers that grow past 2^4096 on the
 * way (unreachable from small given numbers; the bound keeps every answer cheap to score).
 * Parsing is iterative (an operator stack), so any nesting depth runs in linear time and never
 * overflows the call stack.
 */

/** A value as Python holds it: an exact integer or a float. */
export type PyNumber = bigint | number;

export interface EvaluatedExpression {
  /** The expression's value: a bigint when only integers were combined, a float after a division. */
  value: PyNumber;
  /** The integer literals in the order they appear. */
  numbers: bigint[];
}

/** Python's str.isspace(): the characters str.strip() removes. */
export const PY_SPACE = '\\t\\n\\v\\f\\r\\x1c-\\x1f \\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000';
const PY_STRIP = new RegExp(`^[${PY_SPACE}]+|[${PY_SPACE}]+$`, 'g');

/** Python's str.strip() (JavaScript's trim() differs: it strips U+FEFF and keeps U+001C..U+001F, U+0085). */
export const pyStrip = (s: string): string => s.replace(PY_STRIP, '');

const MAX_LITERAL_DIGITS = 4300;
const MAX_INT_BITS = 4096n;
const INT_LIMIT = 1n << MAX_INT_BITS;

type Op = '+' | '-' | '*' | '/' | 'neg' | 'pos' | '(';
const PRECEDENCE: Record<Op, number> = { '(': 0, '+': 1, '-': 1, '*': 2, '/': 2, neg: 3, pos: 3 };

/** Python's float(x) for an int: round to nearest, ties to even (Number(bigint) does the same); null on overflow. */
function toFloat(x: PyNumber): number | null {
  const f = Number(x);
  return typeof x === 'bigint' && !Number.isFinite(f) ? null : f;
}

/** One operator of Python's semantics on ints and floats; null where Python raises (or past our integer bound). */
function apply(op: Op, a: PyNumber, b: PyNumber): PyNumber | null {
  if (op === '/') {
    // true division: correctly rounded for integers up to 2^53 (beyond, JavaScript rounds twice)
    const x = toFloat(a),
      y = toFloat(b);
    if (x === null || y === null || y === 0) return null;
    return x / y;
  }
  if (typeof a === 'bigint' && typeof b === 'bigint') {
    const r = op === '+' ? a + b : op === '-' ? a - b : a * b;
    return r >= INT_LIMIT || r <= -INT_LIMIT ? null : r;
  }
  const x = toFloat(a),
    y = toFloat(b);
  if (x === null || y === null) return null;
  return op === '+' ? x + y : op === '-' ? x - y : x * y;
}

/**
 * The value and integer literals of an arithmetic answer, or null for anything Python's `eval` would
 * reject (or that falls under the deviations above). The text is taken as is: strip it first.
 */
export function evaluateExpression(text: string): EvaluatedExpression | null {
  const values: PyNumber[] = [];
  const ops: Op[] = [];
  const numbers: bigint[] = [];
  let depth = 0;
  let expectOperand = true;

  const reduce = (): boolean => {
    const op = ops.pop()!;
    if (op === 'neg' || op === 'pos') {
      const v = values.pop()!;
      values.push(op === 'pos' ? v : -v);
      return true;
    }
    const b = values.pop()!,
      a = values.pop()!;
    const r = apply(op, a, b);
    if (r === null) return false;
    values.push(r);
    return true;
  };

  for (let i = 0; i < text.length; ) {
    const c = text[i]!;
    if (c === ' ' || c === '\t' || c === '\f' || ((c === '\n' || c === '\r') && depth > 0)) {
      i++;
      continue;
    }
    if (c >= '0' && c <= '9') {
      if (!expectOperand) return null; // two numbers in a row: "7 3"
      let j = i;
      while (j < text.length && text[j]! >= '0' && text[j]! <= '9') j++;
      const digits = text.slice(i, j);
      if (digits.length > MAX_LITERAL_DIGITS) return null;
      if (digits.length > 1 && digits[0] === '0' && /[1-9]/.test(digits)) return null; // "01": a syntax error in Python 3
      const n = BigInt(digits);
      numbers.push(n);
      values.push(n);
      expectOperand = false;
      i = j;
      continue;
    }
    i++;
    if (expectOperand) {
      if (c === '(') {
        ops.push('(');
        depth++;
      } else if (c === '-' || c === '+') ops.push(c === '-' ? 'neg' : 'pos');
      else return null;
      continue;
    }
    if (c === ')') {
      if (depth === 0) return null;
      while (ops[ops.length - 1] !== '(') if (!reduce()) return null;
      ops.pop();
      depth--;
      continue;
    }
    if (c !== '+' && c !== '-' && c !== '*' && c !== '/') return null;
    // left associative: reduce everything of equal or higher precedence first
    while (ops.length > 0 && PRECEDENCE[ops[ops.length - 1]!] >= PRECEDENCE[c]) if (!reduce()) return null;
    ops.push(c);
    expectOperand = true;
  }
  if (expectOperand || depth !== 0) return null;
  while (ops.length > 0) if (!reduce()) return null;
  return { value: values[0]!, numbers };
}

/** Python's `abs(value - target) < 1e-5` for an int or float value and a JSON-number target; false where Python raises. */
export function withinTolerance(value: PyNumber, target: number): boolean {
  if (typeof value === 'bigint' && Number.isSafeInteger(target)) return value === BigInt(target); // exact int arithmetic
  const v = toFloat(value);
  return v !== null && Math.abs(v - target) < 1e-5;
}
