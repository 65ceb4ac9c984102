/**
 * Waiting on something a step's stop signal must be able to cut short (an image pull, a VM
 * disk build, a container's exit): the work itself goes on, only the wait ends.
 */
import { coerceError, SandboxError } from "../protocol/index.ts";

/** The wait ended because the step was stopped (canceled, timed out, or its sandbox destroyed). */
export class StepAborted extends SandboxError {
  constructor() {
    super("the step was stopped");
  }
}

/** Resolves with `promise`, or rejects with StepAborted as soon as `signal` aborts. */
export function until<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(new StepAborted());
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => reject(new StepAborted());
    signal.addEventListener("abort", onAbort, { once: true });
    promise.then(
      (value) => {
        signal.removeEventListener("abort", onAbort);
        resolve(value);
      },
      (error: unknown) => {
        signal.removeEventListener("abort", onAbort);
        reject(coerceError(error));
      },
    );
  });
}
