/**
 * A safe evaluator for answers made of integers, + - * / and parentheses (never eval): a recursive
 * descent parser with the usual precedence. Returns the value and the integers it used, or null for
 * anything that does not parse; division by zero gives a non-finite value.
 */
export function evaluateExpression(text: string): { value: number; numbers: number[] } | null {
  const s = text.replace(/\s+/g, '');
  let i = 0;
  const numbers: number[] = [];
  const peek = () => s[i];
  function expr(): number | null {
    let v = term();
    while (v !== null && (peek() === '+' || peek() === '-')) {
      const op = s[i++];
      const r = term();
      if (r === null) return null;
      v = op === '+' ? v + r : v - r;
    }
    return v;
  }
  function term(): number | null {
    let v = factor();
    while (v !== null && (peek() === '*' || peek() === '/')) {
      const op = s[i++];
      const r = factor();
      if (r === null) return null;
      v = op === '*' ? v * r : v / r;
    }
    return v;
  }
  function factor(): number | null {
    if (peek() === '(') {
      i++;
      const v = expr();
      if (v === null || peek() !== ')') return null;
      i++;
      return v;
    }
    const m = /^\d+/.exec(s.slice(i));
    if (!m) return null;
    i += m[0].length;
    const n = Number(m[0]);
    numbers.push(n);
    return n;
  }
  if (s === '') return null;
  const value = expr();
  if (value === null || i !== s.length) return null;
  return { value, numbers };
}
