// The architecture as a test: lib/ is a stack of layers, each folder one layer, and a file imports only
// from its own folder or a lower layer (type imports included), with no import circles at all.
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';

import { describe, expect, it } from 'vitest';

const LIB = resolve(import.meta.dirname, '..', 'lib');

/** Layer of each folder, bottom up; folders of one rank do not import each other. */
const RANK: Record<string, number> = { core: 0, engine: 1, tasks: 1, decoding: 2, likelihood: 2, training: 3, app: 4, '.': 5 };

function files(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? files(join(dir, e.name)) : e.name.endsWith('.ts') ? [join(dir, e.name)] : []));
}

/** Every module a file imports: static, `export ... from` and dynamic, type-only ones included. */
function imports(file: string): string[] {
  const text = readFileSync(file, 'utf8');
  return [...text.matchAll(/(?:^|\n)\s*(?:import|export)\b[^'";]*?from\s*['"]([^'"]+)['"]|import\(\s*['"]([^'"]+)['"]\s*\)|(?:^|\n)\s*import\s*['"]([^'"]+)['"]|declare module ['"]([^'"]+)['"]/g)].map((m) => (m[1] ?? m[2] ?? m[3] ?? m[4])!);
}

const folder = (file: string) => dirname(relative(LIB, file)).split('/')[0]!;

const graph = new Map<string, string[]>();
for (const f of files(LIB))
  graph.set(
    f,
    imports(f)
      .filter((s) => s.startsWith('.'))
      .map((s) => resolve(dirname(f), s.replace(/\.js$/, '.ts'))),
  );

/** Imports that go up the stack or sideways between folders of one rank. */
function upward(g: Map<string, string[]>): string[] {
  const bad: string[] = [];
  for (const [f, deps] of g)
    for (const d of deps) {
      const [a, b] = [folder(f), folder(d)];
      if (a !== b && RANK[b]! >= RANK[a]!) bad.push(`${relative(LIB, f)} -> ${relative(LIB, d)}`);
    }
  return bad;
}

/** Every import circle, as a path. */
function circles(g: Map<string, string[]>): string[] {
  const state = new Map<string, 'open' | 'done'>();
  const found: string[] = [];
  const visit = (f: string, path: string[]) => {
    if (state.get(f) === 'done') return;
    if (state.get(f) === 'open') return void found.push([...path.slice(path.indexOf(f)), f].map((p) => relative(LIB, p)).join(' -> '));
    state.set(f, 'open');
    for (const d of g.get(f) ?? []) visit(d, [...path, f]);
    state.set(f, 'done');
  };
  for (const f of g.keys()) visit(f, []);
  return found;
}

describe('lib/ layering', () => {
  it('every folder is a known layer', () => {
    for (const f of graph.keys()) expect(RANK[folder(f)], relative(LIB, f)).toBeDefined();
  });

  it('imports go only downward (or within a folder)', () => {
    expect(upward(graph)).toEqual([]);
  });

  it('only the engine talks to the native addon', () => {
    for (const f of graph.keys()) if (imports(f).includes('diffpo/native')) expect(folder(f), relative(LIB, f)).toBe('engine');
  });

  it('has no import circle', () => {
    expect(circles(graph)).toEqual([]);
  });

  it('the checks fail on an upward import, a sideways one and a circle', () => {
    const p = (f: string) => join(LIB, f);
    const bad = new Map([
      [p('core/a.ts'), [p('engine/b.ts')]],
      [p('engine/b.ts'), [p('engine/c.ts'), p('tasks/t.ts')]],
      [p('engine/c.ts'), [p('engine/b.ts')]],
    ]);
    expect(upward(bad)).toEqual(['core/a.ts -> engine/b.ts', 'engine/b.ts -> tasks/t.ts']);
    expect(circles(bad)).toEqual(['engine/b.ts -> engine/c.ts -> engine/b.ts']);
    // the parser sees the import forms the library uses
    expect(imports(join(LIB, 'index.ts'))).toEqual(expect.arrayContaining(['./engine/model.js', './decoding/sampler.js']));
    expect(imports(join(LIB, 'engine', 'model.ts'))).toContain('diffpo/native');
  });
});
