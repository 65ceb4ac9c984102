/** A minimal QMP client (QEMU's JSON control protocol) over the socket QEMU connected to. */
import type { Socket } from "node:net";
import { SandboxError } from "../../protocol/index.ts";

interface Pending {
  resolve: (value: unknown) => void;
  reject: (error: Error) => void;
}

export class QmpClient {
  private readonly socket: Socket;
  private buffer = "";
  private readonly pending: Pending[] = [];
  private greeted: Promise<void>;
  private closed: Error | undefined;
  private readonly eventWaiters: { name: string; resolve: () => void }[] = [];

  constructor(socket: Socket) {
    this.socket = socket;
    let greet: () => void = () => undefined;
    this.greeted = new Promise((resolve) => (greet = resolve));
    socket.setEncoding("utf8");
    socket.on("data", (text: string) => {
      this.buffer += text;
      let newline: number;
      while ((newline = this.buffer.indexOf("\n")) >= 0) {
        const line = this.buffer.slice(0, newline).trim();
        this.buffer = this.buffer.slice(newline + 1);
        if (!line) continue;
        let message: { QMP?: unknown; return?: unknown; error?: { desc?: string }; event?: string };
        try {
          message = JSON.parse(line) as typeof message;
        } catch {
          continue;
        }
        if (message.QMP) greet();
        else if ("return" in message) this.pending.shift()?.resolve(message.return);
        else if (message.error) this.pending.shift()?.reject(new SandboxError(`QEMU: ${message.error.desc ?? "error"}`));
        else if (message.event) {
          for (const waiter of this.eventWaiters.filter((each) => each.name === message.event)) {
            this.eventWaiters.splice(this.eventWaiters.indexOf(waiter), 1);
            waiter.resolve();
          }
        }
      }
    });
    const fail = (): void => {
      this.closed ??= new SandboxError("QEMU's control socket closed");
      for (const waiter of this.pending.splice(0)) waiter.reject(this.closed);
    };
    socket.on("close", fail);
    socket.on("error", fail);
  }

  async start(): Promise<void> {
    await this.greeted;
    await this.execute("qmp_capabilities");
  }

  execute(command: string, args?: object): Promise<unknown> {
    if (this.closed) return Promise.reject(this.closed);
    return new Promise((resolve, reject) => {
      this.pending.push({ resolve, reject });
      this.socket.write(`${JSON.stringify(args ? { execute: command, arguments: args } : { execute: command })}\n`);
    });
  }

  /** Resolves once the guest runs: at once, or at the RESUME event (an incoming migration finished). */
  async running(): Promise<void> {
    const resumed = new Promise<void>((resolve) => this.eventWaiters.push({ name: "RESUME", resolve }));
    const status = (await this.execute("query-status")) as { status?: string };
    if (status.status !== "running") await resumed;
  }

  close(): void {
    this.socket.destroy();
  }
}
