import { mkdir, readFile, stat } from 'node:fs/promises';

import { CheckpointError, DiffpoError, InvalidArgumentError } from './errors.js';

type FileError = new (message: string) => DiffpoError;

/**
 * The size of a regular file (symbolic links followed), or a typed error saying what the path is
 * instead: reading a FIFO would block forever, a directory fails with a raw EISDIR.
 */
export async function regularFileSize(path: string, Err: FileError = CheckpointError): Promise<number> {
  if (typeof path !== 'string' || path === '') throw new InvalidArgumentError(`a file path must be a non-empty string, got ${JSON.stringify(path) ?? String(path)}`);
  let s;
  try {
    s = await stat(path);
  } catch (err) {
    throw new Err(`cannot read ${path}: ${(err as Error).message}`);
  }
  if (!s.isFile()) throw new Err(`${path} is not a regular file (${s.isDirectory() ? 'a directory' : s.isFIFO() ? 'a FIFO' : s.isSocket() ? 'a socket' : 'a device'})`);
  return s.size;
}

/** A regular file's text (see regularFileSize), errors typed as `Err`. */
export async function readTextFile(path: string, Err: FileError = CheckpointError): Promise<string> {
  await regularFileSize(path, Err);
  try {
    return await readFile(path, 'utf8');
  } catch (err) {
    throw new Err(`cannot read ${path}: ${(err as Error).message}`);
  }
}

/** A regular file's JSON (see regularFileSize), errors typed as `Err`. */
export async function readJsonFile(path: string, Err: FileError = CheckpointError): Promise<unknown> {
  const text = await readTextFile(path, Err);
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new Err(`${path} is not valid JSON: ${(err as Error).message}`);
  }
}

/** Creates a folder (and its parents), or a typed error saying why not (a file in the way, no permission, ...). */
export async function ensureDir(dir: string, Err: FileError = CheckpointError): Promise<void> {
  try {
    await mkdir(dir, { recursive: true });
  } catch (err) {
    throw new Err(`cannot create the folder ${dir}: ${(err as Error).message}`);
  }
}
