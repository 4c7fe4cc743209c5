/**
 * Progress of a long command on stderr: a bar with the step, rate and ETA redrawn in place on a TTY,
 * and plain lines (every `every` steps, and the last) otherwise, so logs stay readable.
 */
export class Progress {
  readonly #t0 = performance.now();
  readonly #tty: boolean;
  #drawn = false;

  constructor(
    readonly total: number,
    readonly every = 10,
    readonly stream: NodeJS.WriteStream = process.stderr,
    /** What is counted, in the plain lines ('step 10/150', 'items 500/2500'). */
    readonly unit = 'step',
  ) {
    this.#tty = !!stream.isTTY;
  }

  /** Seconds since the progress started. */
  get seconds(): number {
    return (performance.now() - this.#t0) / 1000;
  }

  /** Reports that `step` of `total` steps is done; `text` is the step's metrics; `force` prints a plain line anyway. */
  update(step: number, text: string, first = 0, force = false): void {
    const s = this.seconds;
    const rate = (step - first) / Math.max(s, 1e-9);
    const eta = rate > 0 ? (this.total - step) / rate : NaN;
    const time = `${formatSeconds(s)}${step < this.total && Number.isFinite(eta) ? ` ETA ${formatSeconds(eta)}` : ''}`;
    if (this.#tty) {
      const width = 20,
        filled = Math.round((width * step) / this.total);
      this.stream.write(`\r[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${step}/${this.total}  ${text}  ${time}\x1b[K`);
      this.#drawn = true;
    } else if (force || step % this.every === 0 || step === this.total) this.stream.write(`${this.unit} ${step}/${this.total}  ${text}  ${time}\n`);
  }

  /** Ends the bar's line (on a TTY). */
  done(): void {
    if (this.#drawn) this.stream.write('\n');
    this.#drawn = false;
  }
}

/** An evaluate() onProgress that draws `label`'s items done on stderr (a line every `every` items off a TTY); call done() after. */
export function itemProgress(label: string, every = 500): { onProgress: (done: number, total: number) => void; done: () => void } {
  let bar: Progress | null = null;
  return {
    onProgress: (done, total) => {
      bar ??= new Progress(total, every, process.stderr, 'items');
      bar.update(done, label);
    },
    done: () => bar?.done(),
  };
}

export function formatSeconds(s: number): string {
  if (s < 60) return `${s.toFixed(0)}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(Math.floor(s % 60)).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}
