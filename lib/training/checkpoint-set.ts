import { createHash, randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { lstat, mkdir, open, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';

import { CheckpointError } from '../core/errors.js';
import { readJsonFile, ensureDir } from '../core/files.js';
import { CHECKPOINT_MANIFEST, TEMP_FILE } from '../engine/checkpoint.js';

/**
 * A training checkpoint is one unit: the model folder, the optimizer, the trainer state (and a frozen
 * reference) of one step, never a mix of two. The files are written into a staging folder inside the
 * run folder and flushed to disk; then `checkpoint.json` (the manifest: step, staging folder, each
 * file's size and SHA-256) is written atomically; that is the commit point. Then the files are moved
 * into place and the staging folder removed. A crash before the commit leaves the previous set
 * untouched (its manifest still names it); a crash after it is rolled forward by openCheckpoint, which
 * also verifies every file against the manifest, so a mixed or partial set is never loaded.
 */
export const MANIFEST = CHECKPOINT_MANIFEST;
const STAGING_PREFIX = '.staging-';

interface Manifest {
  format: 'diffpo-checkpoint';
  step: number;
  /** The staging folder the files came from, relative to the run folder (gone once they are moved). */
  staging: string;
  files: { path: string; bytes: number; sha256: string }[];
}

async function fsyncPath(path: string): Promise<void> {
  const fh = await open(path, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

async function sha256(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/** Regular files under dir, as paths relative to it (sorted). */
async function filesUnder(dir: string, prefix = ''): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(join(dir, prefix), { withFileTypes: true })) {
    const rel = prefix ? `${prefix}/${e.name}` : e.name;
    if (e.isDirectory()) out.push(...(await filesUnder(dir, rel)));
    else if (e.isFile()) out.push(rel);
  }
  return out.sort();
}

async function readManifest(dir: string): Promise<Manifest | null> {
  const path = join(dir, MANIFEST);
  let text: string;
  try {
    if (!(await lstat(path)).isFile()) throw new CheckpointError(`${path} is not a regular file`);
    text = await readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    if (err instanceof CheckpointError) throw err;
    throw new CheckpointError(`cannot read ${path}: ${(err as Error).message}`, { cause: err });
  }
  let m: Manifest;
  try {
    m = JSON.parse(text);
  } catch (err) {
    throw new CheckpointError(`${path} is not valid JSON: ${(err as Error).message}`, { cause: err });
  }
  const fileOk = (f: Manifest['files'][number]) =>
    typeof f?.path === 'string' && !f.path.split('/').some((p) => p === '' || p === '.' || p === '..') && Number.isInteger(f.bytes) && /^[0-9a-f]{64}$/.test(f.sha256);
  if (m?.format !== 'diffpo-checkpoint' || !Number.isInteger(m.step) || m.step < 0 || typeof m.staging !== 'string' || !m.staging.startsWith(STAGING_PREFIX) || m.staging.includes('/') || !Array.isArray(m.files) || !m.files.every(fileOk))
    throw new CheckpointError(`${path} is not a diffpo checkpoint manifest`);
  return m;
}

/** Moves whatever is still in the manifest's staging folder into place (idempotent), then removes it. */
async function rollForward(dir: string, m: Manifest): Promise<void> {
  const staging = join(dir, m.staging);
  let present: string[];
  try {
    present = await filesUnder(staging);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw err;
  }
  const parents = new Set<string>([dir]);
  for (const rel of present) {
    const target = join(dir, rel);
    await mkdir(dirname(target), { recursive: true });
    await rename(join(staging, rel), target);
    parents.add(dirname(target));
  }
  for (const p of parents) await fsyncPath(p);
  await rm(staging, { recursive: true, force: true });
}

/** Removes staging folders other than `keep` and temp files left by interrupted writes. */
async function removeLeftovers(dir: string, keep?: string): Promise<void> {
  for (const e of await readdir(dir, { withFileTypes: true })) {
    if (e.isDirectory() && e.name.startsWith(STAGING_PREFIX) && e.name !== keep) await rm(join(dir, e.name), { recursive: true, force: true });
    else if (e.isFile() && TEMP_FILE.test(e.name)) await rm(join(dir, e.name), { force: true });
    else if (e.isDirectory() && !e.name.startsWith(STAGING_PREFIX)) {
      for (const f of await readdir(join(dir, e.name), { withFileTypes: true })) if (f.isFile() && TEMP_FILE.test(f.name)) await rm(join(dir, e.name, f.name), { force: true });
    }
  }
}

/**
 * Writes one training checkpoint of `step` into dir as a unit: `write` fills the staging folder it is
 * given (any files, subfolders allowed); see MANIFEST for the protocol.
 */
export async function commitCheckpoint(dir: string, step: number, write: (staging: string) => Promise<void>): Promise<void> {
  await ensureDir(dir);
  const previous = await readManifest(dir);
  if (previous) await rollForward(dir, previous);
  await removeLeftovers(dir);
  const name = `${STAGING_PREFIX}${process.pid}-${randomBytes(4).toString('hex')}`;
  const staging = join(dir, name);
  await mkdir(staging);
  try {
    await write(staging);
    const paths = await filesUnder(staging);
    const files: Manifest['files'] = [];
    for (const path of paths) {
      const full = join(staging, path);
      await fsyncPath(full);
      files.push({ path, bytes: (await lstat(full)).size, sha256: await sha256(full) });
    }
    for (const d of new Set(paths.map((p) => dirname(join(staging, p))))) await fsyncPath(d);
    const manifest: Manifest = { format: 'diffpo-checkpoint', step, staging: name, files };
    const tmp = join(dir, `${MANIFEST}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`);
    await writeFile(tmp, JSON.stringify(manifest, null, 1) + '\n', { flush: true });
    await rename(tmp, join(dir, MANIFEST)); // the commit point
    await fsyncPath(dir);
    await rollForward(dir, manifest);
  } catch (err) {
    // before the commit point the previous set is untouched; after it, openCheckpoint rolls forward
    if ((await readManifest(dir).catch(() => null))?.staging !== name) await rm(staging, { recursive: true, force: true });
    throw err;
  }
}

/**
 * Makes dir's last committed checkpoint whole (finishing an interrupted commit), removes leftovers of
 * interrupted saves, and verifies every file against the manifest; returns its step. Throws a
 * CheckpointError for a folder without a manifest or with a file that does not match it.
 */
export async function openCheckpoint(dir: string): Promise<{ step: number }> {
  const m = await readManifest(dir);
  if (!m) throw new CheckpointError(`${join(dir, MANIFEST)} not found: ${dir} holds no complete training checkpoint`);
  await rollForward(dir, m);
  await removeLeftovers(dir);
  for (const f of m.files) {
    const path = join(dir, f.path);
    let ok = false;
    try {
      ok = (await lstat(path)).size === f.bytes && (await sha256(path)) === f.sha256;
    } catch {
      ok = false;
    }
    if (!ok) throw new CheckpointError(`${path} does not match ${MANIFEST} (step ${m.step}): the checkpoint is incomplete or mixes two saves; it is not loaded`);
  }
  return { step: m.step };
}

/** The trainer state of dir's verified checkpoint (openCheckpoint first), checked against the manifest's step. */
export async function readTrainerState<State extends { step: number }>(dir: string): Promise<State> {
  const { step } = await openCheckpoint(dir);
  const state = (await readJsonFile(join(dir, 'trainer_state.json'))) as State | null;
  if (state?.step !== step) throw new CheckpointError(`cannot resume from ${dir}: trainer_state.json is of step ${state?.step}, the manifest of step ${step}`);
  return state;
}

/** Cuts a JSONL log of per-step records back to the records of steps <= step (after a resume). */
export async function truncateStepLog(path: string, step: number): Promise<void> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw err;
  }
  const kept = text.split('\n').filter((line) => {
    if (!line.trim()) return false;
    try {
      return (JSON.parse(line) as { step?: number }).step! <= step;
    } catch {
      return false; // a line cut by a crash
    }
  });
  const tmp = `${path}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`;
  await writeFile(tmp, kept.map((l) => l + '\n').join(''), { flush: true });
  await rename(tmp, path);
}
