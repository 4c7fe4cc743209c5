/**
 * Every error the library throws is a DiffpoError with a stable `code`, so callers can branch on
 * `err.code` (or `instanceof`) rather than on message text.
 */
export class DiffpoError extends Error {
  readonly code: string;
  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = new.target.name;
  }
}

/** A value passed to the API is out of range, of the wrong type or inconsistent with another. */
export class InvalidArgumentError extends DiffpoError {
  constructor(message: string) {
    super('ERR_INVALID_ARGUMENT', message);
  }
}

/** A model configuration asks for something the model does not implement. */
export class ConfigError extends DiffpoError {
  /** The offending config.json key. */
  readonly key: string;
  constructor(key: string, message: string) {
    super('ERR_CONFIG', message);
    this.key = key;
  }
}

/** A checkpoint file is missing, truncated or malformed. */
export class CheckpointError extends DiffpoError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('ERR_CHECKPOINT', message, options);
  }
}

/** A loss or gradient came out NaN or infinite; nothing was accumulated or updated. */
export class NonFiniteError extends DiffpoError {
  constructor(message: string) {
    super('ERR_NON_FINITE', message);
  }
}

/** The operation was cancelled through its AbortSignal. */
export class AbortError extends DiffpoError {
  constructor(message = 'the operation was aborted') {
    super('ABORT_ERR', message);
  }
}

/** The model was disposed. */
export class DisposedError extends DiffpoError {
  constructor() {
    super('ERR_DISPOSED', 'the model was disposed');
  }
}

/** The requested backend cannot run here (no CUDA flavour installed, no driver, no device). */
export class BackendUnavailableError extends DiffpoError {
  constructor(message: string) {
    super('ERR_NO_CUDA', message);
  }
}

/** A collective (MPI) could not be set up or failed; the message names what. */
export class CollectiveError extends DiffpoError {
  constructor(message: string) {
    super('ERR_MPI', message);
  }
}

/** Maps an error thrown by the native addon (a plain Error with a `code`) onto the classes above. */
export function fromNativeError(err: unknown): DiffpoError {
  if (err instanceof DiffpoError) return err;
  const e = err as { code?: string; message?: string; key?: string };
  const message = e?.message ?? String(err);
  switch (e?.code) {
    case 'ERR_INVALID_ARGUMENT':
      return new InvalidArgumentError(message);
    case 'ERR_CONFIG':
      return new ConfigError(e.key ?? 'config', message);
    case 'ERR_CHECKPOINT':
      return new CheckpointError(message);
    case 'ERR_NON_FINITE':
      return new NonFiniteError(message);
    case 'ABORT_ERR':
      return new AbortError(message);
    case 'ERR_DISPOSED':
      return new DisposedError();
    case 'ERR_NO_CUDA':
      return new BackendUnavailableError(message);
    case 'ERR_MPI':
      return new CollectiveError(message);
    default:
      return new DiffpoError(e?.code ?? 'ERR_NATIVE', message, { cause: err });
  }
}
