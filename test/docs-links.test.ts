import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';

import { describe, expect, it } from 'vitest';

/** Every Markdown file a reader of the repository meets: the README, docs/, the model cards, data/. */
function markdownFiles(): string[] {
  const out = ['README.md', 'data/README.md'];
  const walk = (dir: string) => {
    for (const name of readdirSync(dir)) {
      const path = join(dir, name);
      if (statSync(path).isDirectory()) walk(path);
      else if (name.endsWith('.md')) out.push(path);
    }
  };
  walk('docs');
  for (const m of readdirSync('models')) if (existsSync(join('models', m, 'README.md'))) out.push(join('models', m, 'README.md'));
  return out;
}

describe('documentation', () => {
  it('every relative link and image resolves to a file in the repository', () => {
    const broken: string[] = [];
    for (const file of markdownFiles()) {
      const text = readFileSync(file, 'utf8').replace(/```[\s\S]*?```/g, ''); // code blocks are commands, not links
      for (const m of text.matchAll(/!?\[[^\]]*\]\(([^)\s]+)\)/g)) {
        const target = m[1]!.split('#')[0]!;
        if (target === '' || /^[a-z]+:/.test(target)) continue;
        if (!existsSync(join(dirname(file), decodeURI(target)))) broken.push(`${file}: ${m[1]}`);
      }
    }
    expect(broken).toEqual([]);
  });
});
