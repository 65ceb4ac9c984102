/**
 * Removes job directories on a worker thread, with `rmSync` (one native call per directory tree).
 *
 * Why not `fs.promises.rm`: it walks the tree in JavaScript, a dozen async calls (and their
 * thread-pool hand-offs) for even an empty job dir, which measured about 0.35 ms of CPU per job
 * against 0.14 ms for `rmSync`; and why not `rmSync` on the executor's loop: a checkout of 50,000
 * files would block it for seconds. The worker runs one removal at a time, in order; each caller
 * gets its own answer. The worker does not keep the process alive.
 *
 * States: NOT STARTED -(first remove)-> RUNNING -(close)-> CLOSED. A worker that dies (it should
 * not) fails the removals in flight and is started again by the next one.
 */
import { Worker } from "node:worker_threads";

const WORKER_SOURCE = `
const { parentPort } = require("node:worker_threads");
const { rmSync } = require("node:fs");
parentPort.on("message", ({ id, path }) => {
  try {
    rmSync(path, { recursive: true, force: true, maxRetries: 2 });
    parentPort.postMessage({ id });
  } catch (error) {
    parentPort.postMessage({ id, error: String(error && error.message || error) });
  }
});
`;

interface Waiting {
  resolve: () => void;
  reject: (error: Error) => void;
}

export class DirRemover {
  private worker: Worker | undefined;
  private readonly waiting = new Map<number, Waiting>();
  private next = 0;
  private closed = false;

  /** Removes `path` and everything under it; a missing path is no error. */
  remove(path: string): Promise<void> {
    if (this.closed) return Promise.reject(new Error("the job dir remover is closed"));
    const worker = this.start();
    const id = (this.next += 1);
    return new Promise((resolve, reject) => {
      this.waiting.set(id, { resolve, reject });
      worker.ref();
      worker.postMessage({ id, path });
    });
  }

  private start(): Worker {
    if (this.worker) return this.worker;
    const worker = new Worker(WORKER_SOURCE, { eval: true });
    worker.unref();
    worker.on("message", (message: { id: number; error?: string }) => {
      const waiting = this.waiting.get(message.id);
      this.waiting.delete(message.id);
      if (this.waiting.size === 0) worker.unref();
      if (message.error === undefined) waiting?.resolve();
      else waiting?.reject(new Error(message.error));
    });
    const fail = (error: Error): void => {
      if (this.worker === worker) this.worker = undefined;
      for (const waiting of this.waiting.values()) waiting.reject(error);
      this.waiting.clear();
    };
    worker.on("error", fail);
    worker.on("exit", (code) => fail(new Error(`the job dir remover exited (${code})`)));
    this.worker = worker;
    return worker;
  }

  async close(): Promise<void> {
    this.closed = true;
    const worker = this.worker;
    this.worker = undefined;
    await worker?.terminate();
  }
}
