import { InvalidArgumentError } from './errors.js';

/** `v` as a positive integer, or an InvalidArgumentError naming it. */
export function positiveInt(name: string, v: unknown): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v <= 0) throw new InvalidArgumentError(`${name} must be a positive integer, got ${String(v)}`);
  return v;
}

/** `v` as a non-negative integer, or an InvalidArgumentError naming it. */
export function nonNegativeInt(name: string, v: unknown): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0) throw new InvalidArgumentError(`${name} must be a non-negative integer, got ${String(v)}`);
  return v;
}
