/**
 * Documented defaults, TRL-style: every option of a trainer is declared once, with its default value
 * and why it is that value; the trainer reads the values, the CLI generates its flags and help from
 * the same declarations.
 */
export interface OptionSpec<T> {
  readonly default: T;
  /** What the option does and why the default is what it is (one or two sentences). */
  readonly doc: string;
  /** For string options: the allowed values. */
  readonly choices?: readonly string[];
  /** For number options: whether only integers are valid. */
  readonly integer?: boolean;
  /** False when the option has no CLI flag (arrays, functions, objects). */
  readonly flag?: boolean;
}

export type OptionSpecs = Record<string, OptionSpec<unknown>>;

/** The plain default values of a set of declarations. */
export type DefaultsOf<S extends OptionSpecs> = { -readonly [K in keyof S]: S[K]['default'] };

export function option<T>(value: T, doc: string, extra: { choices?: readonly string[]; integer?: boolean; flag?: boolean } = {}): OptionSpec<T> {
  return { default: value, doc, ...extra };
}

export function defaultsOf<S extends OptionSpecs>(specs: S): DefaultsOf<S> {
  return Object.fromEntries(Object.entries(specs).map(([k, s]) => [k, s.default])) as DefaultsOf<S>;
}

/** `options` over the defaults, where an option given as undefined keeps its default. */
export function withDefaults<D extends object, O extends object>(defaults: D, options: O): D & O {
  const given = Object.fromEntries(Object.entries(options).filter(([, v]) => v !== undefined));
  return { ...defaults, ...given } as D & O;
}
