import { writeSync } from 'node:fs';

import native from 'diffpo/native';

import { CollectiveError, InvalidArgumentError, fromNativeError } from '../core/errors.js';

/** A contiguous range [start, end) of a batch's sequences (or prompts): what one process computes. */
export interface SequenceRange {
  start: number;
  end: number;
}

/**
 * The processes of a data-parallel job and the few collectives it needs. Every process holds the same
 * model and draws the same global batch; each computes its share, and these combine the shares. One
 * process is the trivial case (every call a no-op), so trainers run the same code either way.
 */
export interface Collective {
  readonly rank: number;
  readonly size: number;
  /** What carries the collectives: 'single process', or the MPI library's version and soname. */
  readonly engine: string;
  /** Sums `data` over all processes, in place (every process gets the sum). */
  allReduceSum(data: Float32Array | Float64Array): Promise<void>;
  /** Copies root's bytes into every process's `data`. */
  broadcast(data: ArrayBufferView, root?: number): Promise<void>;
  barrier(): Promise<void>;
  /** Ends every process of the job with this exit code (one process's error must not leave the others waiting). */
  abort(code?: number): never;
}

/** Gradients are summed in messages of at most this many bytes (MPI counts are 32-bit; a few large messages beat one per tensor). */
export const ALL_REDUCE_BUCKET_BYTES = 64 * 2 ** 20;

class SingleProcess implements Collective {
  readonly rank = 0;
  readonly size = 1;
  readonly engine = 'single process';
  async allReduceSum(): Promise<void> {}
  async broadcast(): Promise<void> {}
  async barrier(): Promise<void> {}
  abort(code = 1): never {
    process.exit(code);
  }
}

/** One process, no communication: what every trainer uses unless launched under mpirun. */
export const SINGLE_PROCESS: Collective = new SingleProcess();

class MpiCollective implements Collective {
  readonly rank: number;
  readonly size: number;
  readonly engine: string;
  // MPI runs with MPI_THREAD_SERIALIZED: collectives are queued, never concurrent
  #tail: Promise<unknown> = Promise.resolve();

  constructor() {
    let w: ReturnType<typeof native.mpiInit>;
    try {
      w = native.mpiInit();
    } catch (e) {
      throw fromNativeError(e);
    }
    this.rank = w.rank;
    this.size = w.size;
    this.engine = `${w.version.replace(/\s+/g, ' ') || 'MPI'} (${w.library})`;
    const launched = launchedSize();
    // e.g. Open MPI's library under MPICH's launcher: every process would train alone, each thinking it is the job
    if (launched !== null && launched !== w.size)
      throw new CollectiveError(`the launcher started ${launched} processes but ${w.library} sees a job of ${w.size}: the MPI library does not match the launcher (set DIFFPO_MPI_LIBRARY to the launcher's libmpi)`);
    // a clean exit finalizes; a failing one (an uncaught error, exitCode != 0) aborts the whole job.
    // Node emits 'exit' before it prints an uncaught error, so the error is printed here first.
    process.on('uncaughtExceptionMonitor', (err) => writeSync(2, `rank ${this.rank} of ${this.size}: ${(err as Error)?.stack ?? String(err)}\n`));
    process.on('exit', (code) => (code ? native.mpiAbort(code) : native.mpiFinalize()));
  }

  #serial(call: () => Promise<void>): Promise<void> {
    const next = this.#tail.then(call, call).catch((e) => {
      throw fromNativeError(e);
    });
    this.#tail = next.catch(() => undefined);
    return next;
  }

  allReduceSum(data: Float32Array | Float64Array): Promise<void> {
    if (!(data instanceof Float32Array || data instanceof Float64Array)) throw new InvalidArgumentError('allReduceSum needs a Float32Array or Float64Array');
    return this.#serial(() => native.mpiAllReduceSum(data, ALL_REDUCE_BUCKET_BYTES / data.BYTES_PER_ELEMENT));
  }

  broadcast(data: ArrayBufferView, root = 0): Promise<void> {
    if (!ArrayBuffer.isView(data)) throw new InvalidArgumentError('broadcast needs a typed array');
    if (!(Number.isInteger(root) && root >= 0 && root < this.size)) throw new InvalidArgumentError(`broadcast root ${root} is not a rank of this job (size ${this.size})`);
    return this.#serial(() => native.mpiBroadcast(data, root));
  }

  barrier(): Promise<void> {
    return this.#serial(() => native.mpiBarrier());
  }

  abort(code = 1): never {
    return native.mpiAbort(code);
  }
}

/** The job size a launcher announced in the environment (Open MPI's mpirun, MPICH's Hydra, PMIx), or null. */
export function launchedSize(env: NodeJS.ProcessEnv = process.env): number | null {
  const raw = env.OMPI_COMM_WORLD_SIZE ?? env.PMI_SIZE ?? env.PMIX_SIZE;
  const n = Number(raw);
  return raw !== undefined && Number.isInteger(n) && n >= 1 ? n : null;
}

/** Processes of the job on this machine, as the launcher announced them, or null. */
export function launchedLocalSize(env: NodeJS.ProcessEnv = process.env): number | null {
  const n = Number(env.OMPI_COMM_WORLD_LOCAL_SIZE ?? env.MPI_LOCALNRANKS ?? NaN);
  return Number.isInteger(n) && n >= 1 ? n : null;
}

/** This process's index among the job's processes on its machine, as the launcher announced it, or null. */
export function launchedLocalRank(env: NodeJS.ProcessEnv = process.env): number | null {
  const n = Number(env.OMPI_COMM_WORLD_LOCAL_RANK ?? env.MPI_LOCALRANKID ?? NaN);
  return Number.isInteger(n) && n >= 0 ? n : null;
}

/**
 * The CUDA device a process takes: the one asked for, else its local rank among the job's processes
 * on this machine modulo the devices (each process of an 8-GPU node its own GPU), else 0.
 */
export function cudaDevice(requested: number | undefined, devices: number, env: NodeJS.ProcessEnv = process.env): number {
  if (requested !== undefined) {
    if (!Number.isInteger(requested) || requested < 0 || requested >= devices) throw new InvalidArgumentError(`device must be an integer in [0, ${devices}) (the CUDA devices here), got ${String(requested)}`);
    return requested;
  }
  return (launchedLocalRank(env) ?? 0) % Math.max(1, devices);
}

let world: Collective | null = null;

/**
 * The job this process belongs to: under `mpirun -np N` (N > 1) an MPI world of N processes, loaded
 * from the system's libmpi on first call; otherwise SINGLE_PROCESS, with no MPI loaded at all.
 * DIFFPO_MPI=0 forces a single process, DIFFPO_MPI=1 forces MPI.
 */
export function worldFromEnvironment(): Collective {
  if (world) return world;
  const force = process.env.DIFFPO_MPI;
  if (force !== undefined && force !== '0' && force !== '1') throw new InvalidArgumentError(`DIFFPO_MPI must be 0 or 1, got ${JSON.stringify(force)}`);
  const size = launchedSize();
  world = force === '1' || (force !== '0' && size !== null && size > 1) ? new MpiCollective() : SINGLE_PROCESS;
  return world;
}

/** This process's share of n items: contiguous, sizes differing by at most one, in rank order. */
export function shardRange(n: number, w: Collective): SequenceRange {
  return { start: Math.floor((w.rank * n) / w.size), end: Math.floor(((w.rank + 1) * n) / w.size) };
}

type Gatherable = Float32Array | Float64Array | Int32Array | Uint8Array;

/**
 * The global array of `rows` rows of `rowSize` elements each, from every process's rows of `range`
 * (`local` holds exactly those). Done as a sum of zero-padded copies, which is exact: each element
 * has one non-zero contribution (integers travel as float64, exact below 2^53).
 */
export async function gatherRows<T extends Gatherable>(w: Collective, local: T, range: SequenceRange, rows: number, rowSize: number): Promise<T> {
  if (local.length !== (range.end - range.start) * rowSize) throw new InvalidArgumentError(`gatherRows: ${local.length} elements for ${range.end - range.start} rows of ${rowSize}`);
  if (w.size === 1) return local;
  const float32 = local instanceof Float32Array;
  const sum = float32 ? new Float32Array(rows * rowSize) : new Float64Array(rows * rowSize);
  sum.set(local, range.start * rowSize);
  await w.allReduceSum(sum);
  if (float32) return sum as T;
  const out = new (local.constructor as new (n: number) => T)(rows * rowSize);
  out.set(sum);
  return out;
}
