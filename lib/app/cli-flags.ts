import { parseArgs } from 'node:util';

import { InvalidArgumentError } from '../core/errors.js';
import type { OptionSpecs } from '../core/options.js';
import type { Difficulty } from '../tasks/task.js';

/** One command-line flag: its value type, default, help, and the option it sets. */
export interface Flag {
  name: string;
  type: 'string' | 'number' | 'int' | 'boolean' | 'numbers';
  help: string;
  default?: string | number | boolean | number[];
  choices?: readonly string[];
  /** The option key the value is stored under (default: the flag name in camelCase). */
  key?: string;
  /** A placeholder for the value in the help (default from the type). */
  meta?: string;
  /** A boolean flag that sets its option to false (`--no-x` for an option on by default). */
  negates?: boolean;
}

export type FlagValues = Record<string, string | number | boolean | number[] | undefined>;

/** The arguments that are not flags, for a command that takes them (report's run folders). */
export const positionalArgs = new WeakMap<FlagValues, readonly string[]>();

/** The keys of the flags given on the command line (the rest hold their defaults), for commands whose defaults depend on another flag. */
export const givenFlags = new WeakMap<FlagValues, ReadonlySet<string>>();

const kebab = (key: string) => key.replace(/[A-Z]/g, (c) => '-' + c.toLowerCase());
const camel = (flag: string) => flag.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());

/**
 * Flags generated from a trainer's documented defaults: one per option with `flag !== false`, named in
 * kebab-case, typed by its default, with its doc as help. `overrides` changes a default for the
 * command (with the reason appended), `rename` gives a flag another name.
 */
export function flagsFromSpecs(specs: OptionSpecs, overrides: Record<string, { default: number | string; why: string }> = {}, rename: Record<string, string> = {}): Flag[] {
  return Object.entries(specs)
    .filter(([, s]) => s.flag !== false)
    .map(([key, s]) => {
      const o = overrides[key];
      const value = (o?.default ?? s.default) as string | number | boolean | number[];
      const type: Flag['type'] = Array.isArray(value) ? 'numbers' : typeof value === 'boolean' ? 'boolean' : typeof value === 'string' ? 'string' : s.integer ? 'int' : 'number';
      const help = o ? `${s.doc}; here ${o.default}: ${o.why}` : s.doc;
      // an option on by default is turned off by --no-<name>
      if (value === true) return { name: `no-${rename[key] ?? kebab(key)}`, key, type, negates: true, help: `turns off: ${help}` };
      return { name: rename[key] ?? kebab(key), key, type, default: value, choices: s.choices, help };
    });
}

/** Parses a command's arguments against its flags: unknown flags, bad numbers and bad choices are errors naming the flag. */
export function parseFlags(command: string, flags: Flag[], args: string[], allowPositionals = false): FlagValues {
  // a negative number is a value, not a flag: `--threshold -1` reads as `--threshold=-1`
  const valued = new Set(flags.filter((f) => f.type !== 'boolean').map((f) => `--${f.name}`));
  const joined: string[] = [];
  for (let i = 0; i < args.length; i++)
    if (valued.has(args[i]!) && /^-(\d|\.\d|Infinity)/.test(args[i + 1] ?? '')) joined.push(`${args[i]}=${args[++i]}`);
    else joined.push(args[i]!);
  let values: Record<string, string | boolean | undefined>, positionals: string[];
  try {
    ({ values, positionals } = parseArgs({
      args: joined,
      options: Object.fromEntries(flags.map((f) => [f.name, { type: f.type === 'boolean' ? 'boolean' : 'string' }] as const)),
      strict: true,
      allowPositionals,
    }));
  } catch (err) {
    const m = /Unknown option '([^']+)'|Unexpected argument '([^']+)'|Option '([^']+)[^']*' argument missing/.exec((err as Error).message);
    const what = m?.[1] ?? m?.[2] ?? m?.[3];
    if (m?.[3]) throw new InvalidArgumentError(`${command}: ${m[3]} needs a value (see diffpo ${command} --help)`);
    throw new InvalidArgumentError(`${command}: unknown ${m?.[2] ? 'argument' : 'flag'} ${what ?? (err as Error).message} (see diffpo ${command} --help)`);
  }
  const out: FlagValues = {};
  const given = new Set<string>();
  givenFlags.set(out, given);
  positionalArgs.set(out, positionals);
  for (const f of flags) {
    const key = f.key ?? camel(f.name);
    const raw = values[f.name];
    if (raw === undefined) {
      out[key] = f.negates ? undefined : f.default;
      continue;
    }
    given.add(key);
    if (f.type === 'boolean') out[key] = f.negates ? !raw : (raw as boolean);
    else if (f.type === 'string') {
      if (f.choices && !f.choices.includes(raw as string)) throw new InvalidArgumentError(`--${f.name}: '${raw}' is not one of ${f.choices.join(', ')}`);
      out[key] = raw as string;
    } else if (f.type === 'numbers') {
      out[key] = (raw as string).split(',').map((part) => parseNumber(f, part, raw as string));
    } else out[key] = parseNumber(f, raw as string, raw as string);
  }
  return out;
}

function parseNumber(f: Flag, part: string, raw: string): number {
  const text = part.trim();
  const n = Number(text);
  const what = f.type === 'numbers' ? 'a comma-separated list of numbers' : 'a number';
  if (text === '' || !Number.isFinite(n)) throw new InvalidArgumentError(`--${f.name}: '${raw}' is not ${what}`);
  if (f.type === 'int' && !Number.isInteger(n)) throw new InvalidArgumentError(`--${f.name}: '${raw}' is not an integer`);
  return n;
}

/** A command's help: usage line, summary, and one line per flag with its default. */
export function flagsHelp(usage: string, summary: string, flags: Flag[]): string {
  const lines = flags.map((f) => {
    const meta = f.type === 'boolean' ? '' : ` ${f.meta ?? (f.choices ? f.choices.join('|') : f.type === 'string' ? 'TEXT' : f.type === 'numbers' ? 'N,N,...' : 'N')}`;
    const shown = Array.isArray(f.default) ? (f.default.length ? f.default.join(',') : undefined) : f.default;
    const def = shown !== undefined && f.type !== 'boolean' ? ` (default ${shown})` : '';
    return `  --${f.name}${meta}${def}\n      ${f.help}`;
  });
  return `usage: ${usage}\n\n${summary}\n\nflags:\n${lines.join('\n')}\n  --help\n      this text\n`;
}

/** --difficulty "8" or "4-12". */
export function parseDifficulty(text: string | undefined): Difficulty | undefined {
  if (text === undefined) return undefined;
  const m = /^(\d+)(?:-(\d+))?$/.exec(text.trim());
  if (!m) throw new InvalidArgumentError(`--difficulty: '${text}' is not N or MIN-MAX`);
  return m[2] === undefined ? Number(m[1]) : [Number(m[1]), Number(m[2])];
}
