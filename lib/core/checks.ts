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

/** `v` as an options or input object, or an InvalidArgumentError naming it (a missing argument is the usual cause). */
export function objectArg<T extends object>(name: string, v: T | undefined | null): T {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) throw new InvalidArgumentError(`${name} must be an object, got ${v === null ? 'null' : Array.isArray(v) ? 'an array' : typeof v}`);
  return v;
}

/** `signal` when it is undefined or an AbortSignal, else an InvalidArgumentError (a look-alike object cannot be listened to). */
export function checkSignal(signal: unknown): AbortSignal | undefined {
  if (signal !== undefined && !(signal instanceof AbortSignal)) throw new InvalidArgumentError(`signal must be an AbortSignal, got ${signal === null ? 'null' : typeof signal}`);
  return signal;
}
