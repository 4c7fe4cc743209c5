/**
 * A small byte-level BPE tokenizer.json trained on a corpus, in the layout of GPT-2's and LLaDA's
 * (ByteLevel pre-tokenizer and decoder, every byte a token, merges learned greedily), with added
 * tokens at fixed ids. It stands in for LLaDA-8B-Instruct's own 4 MB tokenizer.json, which cannot be
 * shipped: a folder written by `diffpo init` carries LLaDA's 269 special tokens at their real ids, so
 * the loader, the chat template and the tasks run as they would on the real folder.
 */

/** GPT-2's byte-to-character map: printable bytes map to themselves, the rest to code points from 256. */
function bytesToUnicode(): string[] {
  const keep = (b: number) => (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
  const out: string[] = [];
  let extra = 0;
  for (let b = 0; b < 256; b++) out.push(String.fromCodePoint(keep(b) ? b : 256 + extra++));
  return out;
}

/** GPT-2's pre-tokenization pattern (the ByteLevel pre-tokenizer's use_regex). */
const WORDS = /'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+/gu;

export interface AddedTokenSpec {
  id: number;
  content: string;
  special?: boolean;
}

/**
 * tokenizer.json of a byte-level BPE with `merges` merges learned on `corpus` (the most frequent
 * adjacent pair first, ties to the pair seen first) and `addedTokens` at their ids.
 */
export function trainByteLevelBpe(corpus: string, merges: number, addedTokens: AddedTokenSpec[] = []): object {
  const byteChar = bytesToUnicode();
  const vocab = new Map<string, number>(byteChar.map((c, i) => [c, i]));
  const encoder = new TextEncoder();
  // each distinct word as its symbols, with its count
  const counts = new Map<string, number>();
  for (const w of corpus.match(WORDS) ?? []) {
    const mapped = Array.from(encoder.encode(w), (b) => byteChar[b]!).join('');
    counts.set(mapped, (counts.get(mapped) ?? 0) + 1);
  }
  const words = [...counts].map(([w, n]) => ({ symbols: [...w], n }));
  const learned: [string, string][] = [];
  for (let m = 0; m < merges; m++) {
    const pairs = new Map<string, number>();
    for (const { symbols, n } of words)
      for (let i = 0; i + 1 < symbols.length; i++) {
        const key = symbols[i] + '\u0000' + symbols[i + 1];
        pairs.set(key, (pairs.get(key) ?? 0) + n);
      }
    let best = '';
    let bestN = 1; // a pair seen once is not worth a token
    for (const [k, n] of pairs) if (n > bestN) [best, bestN] = [k, n];
    if (!best) break;
    const [a, b] = best.split('\u0000') as [string, string];
    learned.push([a, b]);
    vocab.set(a + b, vocab.size);
    for (const w of words) {
      const s: string[] = [];
      for (let i = 0; i < w.symbols.length; i++)
        if (i + 1 < w.symbols.length && w.symbols[i] === a && w.symbols[i + 1] === b) s.push(a + b), i++;
        else s.push(w.symbols[i]!);
      w.symbols = s;
    }
  }
  const top = Math.max(...vocab.values());
  for (const t of addedTokens) if (t.id <= top) throw new RangeError(`added token ${t.content} at id ${t.id} collides with the BPE vocabulary (ids 0-${top})`);
  const byteLevel = { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true };
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: addedTokens.map((t) => ({ id: t.id, content: t.content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: t.special ?? true })),
    normalizer: null,
    pre_tokenizer: byteLevel,
    post_processor: null,
    decoder: byteLevel,
    model: {
      type: 'BPE',
      dropout: null,
      unk_token: null,
      continuing_subword_prefix: null,
      end_of_word_suffix: null,
      fuse_unk: false,
      byte_fallback: false,
      vocab: Object.fromEntries(vocab),
      merges: learned.map(([a, b]) => `${a} ${b}`),
    },
  };
}
