import { spawnSync } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { describe, expect, it } from 'vitest';

import { Rng, writeLladaFolder } from 'diffpo';

/**
 * A generated corpus of malformed real-layout folders, loaded in a child process as the text API
 * loads them: broken tokenizer.json files, tokenizer_config.json files whose chat template throws,
 * loops, recurses or emits megabytes, odd special tokens, and shard indexes with missing, repeated,
 * overlapping or escaping shards. Every case must load or fail with a DiffpoError; no child may crash
 * or hang. (Adapter folders join this corpus with LoRA.)
 */
describe('a corpus of malformed real-layout folders', () => {
  it('150 broken LLaDA-layout folders: 0 crashes, 0 hangs, only typed errors', async () => {
    const root = mkdtempSync(join(tmpdir(), 'diffpo-folders-'));
    const good = join(root, 'good');
    await writeLladaFolder(good, { layers: 1, width: 128, shards: 3, merges: 200, threads: 1 });
    const read = (f: string) => readFileSync(join(good, f), 'utf8');
    const tokenizer = JSON.parse(read('tokenizer.json')) as Record<string, unknown> & { model: Record<string, unknown>; added_tokens: Record<string, unknown>[] };
    const tconfig = JSON.parse(read('tokenizer_config.json')) as Record<string, unknown>;
    const index = JSON.parse(read('model.safetensors.index.json')) as { weight_map: Record<string, string> };
    const rng = new Rng(77);
    const pick = <T>(xs: readonly T[]): T => xs[rng.int(xs.length)]!;
    const odd = [null, -1, 0, 2 ** 53, 'x', [], {}, true, 1.5];
    const templates = [
      "{{ raise_exception('no system messages') }}",
      '{% for m in messages %}{{ m.content',
      '{% for i in range(100000000) %}{{ i }}{% endfor %}',
      "{% for i in range(1000000) %}{{ 'xxxxxxxxxxxxxxxxxxxx' }}{% endfor %}",
      '{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}',
      '{{ messages[10].content }}',
      '{{ undefined_thing.field }}',
      '{% for m in messages %}{% for c in m.content * 100000 %}{{ c }}{% endfor %}{% endfor %}',
      "{{ 'x' * 1000000000 }}",
      '',
      42,
      ['not', 'a', 'template'],
    ] as const;
    const kinds: Record<string, (d: string) => void> = {
      tokenizerText: (d) => writeFileSync(join(d, 'tokenizer.json'), read('tokenizer.json').slice(0, rng.int(read('tokenizer.json').length))),
      tokenizerField: (d) => {
        const t = structuredClone(tokenizer);
        const where = pick(['model', 'top', 'added'] as const);
        if (where === 'model') t.model[pick(['type', 'vocab', 'merges', 'unk_token', 'byte_fallback'])] = pick([...odd, 'Unigram', 'WordPiece', ['a b'], { a: 1 }]);
        else if (where === 'top') t[pick(['pre_tokenizer', 'decoder', 'normalizer', 'post_processor', 'added_tokens'])] = pick([...odd, { type: 'Nope' }, { type: 'Split' }]);
        else t.added_tokens[rng.int(t.added_tokens.length)]![pick(['id', 'content', 'special'])] = pick([...odd, 10 ** 9, -5]);
        writeFileSync(join(d, 'tokenizer.json'), JSON.stringify(t));
      },
      template: (d) => writeFileSync(join(d, 'tokenizer_config.json'), JSON.stringify({ ...tconfig, chat_template: pick(templates) })),
      specialToken: (d) => writeFileSync(join(d, 'tokenizer_config.json'), JSON.stringify({ ...tconfig, [pick(['eos_token', 'bos_token', 'pad_token'])]: pick([...odd, '<|nope|>', { content: 7 }]) })),
      specialMap: (d) => writeFileSync(join(d, 'special_tokens_map.json'), pick(['{', '[]', '{"eos_token": {"content": 5}}', 'null'])),
      maskId: (d) => {
        const c = JSON.parse(read('config.json')) as Record<string, unknown>;
        writeFileSync(join(d, 'config.json'), JSON.stringify({ ...c, mask_token_id: pick([...odd, 126463, 126464, 5]) }));
      },
      index: (d) => {
        const ix = structuredClone(index);
        const names = Object.keys(ix.weight_map);
        const shards = [...new Set(Object.values(ix.weight_map))];
        const how = pick(['missing', 'repeated', 'overlap', 'escape', 'text', 'odd'] as const);
        if (how === 'missing') rmSync(join(d, pick(shards)));
        else if (how === 'repeated') {
          const name = pick(names); // a tensor placed in a shard that does not hold it
          ix.weight_map[name] = pick(shards.filter((s) => s !== ix.weight_map[name]));
        }
        else if (how === 'overlap') {
          rmSync(join(d, shards[1]!)); // a shard's file replaced by another's
          symlinkSync(join(good, shards[0]!), join(d, shards[1]!));
        }
        else if (how === 'escape') ix.weight_map[pick(names)] = pick(['../x.safetensors', '/etc/passwd', '.', '']);
        else if (how === 'odd') (ix as Record<string, unknown>).weight_map = pick(odd);
        writeFileSync(join(d, 'model.safetensors.index.json'), how === 'text' ? JSON.stringify(ix).slice(0, rng.int(200)) : JSON.stringify(ix));
      },
      swapped: (d) => {
        const f = pick(['tokenizer.json', 'tokenizer_config.json', 'model.safetensors.index.json']);
        rmSync(join(d, f));
        if (rng.random() < 0.5) mkdirSync(join(d, f));
      },
    };
    const cases = join(root, 'cases');
    const list = Object.keys(kinds);
    const n = 150;
    for (let i = 0; i < n; i++) {
      const kind = list[i % list.length]!;
      const d = join(cases, `${String(i).padStart(3, '0')}-${kind}`);
      // the small files copied, the weight shards linked (150 copies of 64 MB would fill a disk); no
      // case writes into a shard, so the good folder stays good
      mkdirSync(d, { recursive: true });
      for (const f of readdirSync(good)) {
        if (f.endsWith('.safetensors')) symlinkSync(join(good, f), join(d, f));
        else cpSync(join(good, f), join(d, f));
      }
      kinds[kind]!(d);
    }
    const child = fileURLToPath(new URL('./fixtures/load-folder-corpus.mjs', import.meta.url));
    const r = spawnSync(process.execPath, [child, cases], { encoding: 'utf8', timeout: 240_000, maxBuffer: 16 * 2 ** 20 });
    expect(r.signal, `a child crashed or hung: ${r.stderr.slice(-2000)}`).toBeNull();
    expect(r.status, r.stderr).toBe(0);
    const outcomes = r.stdout.trim().split('\n').map((l) => JSON.parse(l) as { case: string; result: string; error?: string });
    expect(outcomes).toHaveLength(n);
    expect(outcomes.filter((o) => o.result === 'untyped')).toEqual([]);
    // every template of the list is refused, as is every broken index
    for (const o of outcomes) if (/-(template|index)$/.test(o.case) && o.result === 'loaded') expect.fail(`${o.case} loaded`);
    expect(outcomes.filter((o) => o.result === 'typed').length).toBeGreaterThan(100);
    rmSync(root, { recursive: true, force: true });
  }, 300_000);
});
