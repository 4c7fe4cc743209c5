import { describe, expect, it } from 'vitest';

import { formatSeconds, Progress } from 'diffpo';

const sink = (isTTY: boolean) => {
  const out: string[] = [];
  return { out, stream: { isTTY, write: (s: string) => void out.push(s) } as unknown as NodeJS.WriteStream };
};

describe('Progress', () => {
  it('redraws a bar in place on a TTY and ends its line', () => {
    const { out, stream } = sink(true);
    const p = new Progress(4, 10, stream);
    p.update(1, 'loss 1.0');
    p.update(4, 'loss 0.5');
    p.done();
    expect(out[0]).toMatch(/^\r\[#{5}\.{15}\] 1\/4  loss 1\.0  \d+s ETA \d+s\x1b\[K$/);
    expect(out[1]).toMatch(/^\r\[#{20}\] 4\/4  loss 0\.5  \d+s\x1b\[K$/); // no ETA at the end
    expect(out[2]).toBe('\n');
  });

  it('writes plain lines every N steps, the last step and forced ones otherwise', () => {
    const { out, stream } = sink(false);
    const p = new Progress(25, 10, stream);
    for (let s = 1; s <= 25; s++) p.update(s, `s${s}`, 0, s === 3);
    p.done();
    expect(out.map((l) => l.split('  ')[0])).toEqual(['step 3/25', 'step 10/25', 'step 20/25', 'step 25/25']);
    expect(out.every((l) => l.endsWith('\n'))).toBe(true);
  });

  it('formats durations', () => {
    expect([formatSeconds(5.4), formatSeconds(125), formatSeconds(3725)]).toEqual(['5s', '2m05s', '1h02m']);
  });
});
