import { appendFile, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

import { ensureDir } from '../core/files.js';
import { truncateStepLog } from './checkpoint-set.js';

/** What a step's callback may add to the step's line of metrics.jsonl (an evaluation, say). */
export type StepExtras = Record<string, unknown> | void;

/**
 * A run's metrics.jsonl, one JSON line per step, shared by the trainers: a fresh run starts it empty,
 * a resumed one drops the lines of steps after its checkpoint (they are run again). Without a folder
 * (no outDir, or a process other than rank 0) it writes nothing.
 */
export class StepLog {
  private constructor(readonly path: string | null) {}

  static async open(dir: string | undefined, step: number): Promise<StepLog> {
    if (!dir) return new StepLog(null);
    await ensureDir(dir);
    const path = join(dir, 'metrics.jsonl');
    if (step === 0) await writeFile(path, '');
    else await truncateStepLog(path, step);
    return new StepLog(path);
  }

  /** Appends a step's record with what its callback added. */
  async append(record: object, extras: StepExtras): Promise<void> {
    if (this.path) await appendFile(this.path, JSON.stringify({ ...record, ...(extras ?? {}) }) + '\n');
  }

  /** The records so far (empty without a folder). */
  async read<T = Record<string, unknown>>(): Promise<T[]> {
    if (!this.path) return [];
    return (await readFile(this.path, 'utf8'))
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as T);
  }
}
