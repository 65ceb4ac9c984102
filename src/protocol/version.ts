/**
 * Versions. `AIRLOCK_VERSION` is the release (package.json's "version"; a test keeps them equal).
 * `PROTOCOL_VERSION` is the executor protocol: the `/.executors/*` routes and their bodies. It is
 * raised only when a change would break an executor or coordinator of the previous protocol, so
 * releases can differ while the protocol stays the same. A coordinator serves executors of
 * protocols MIN_EXECUTOR_PROTOCOL..PROTOCOL_VERSION: upgrading coordinators first never strands
 * the executors still running the previous release.
 */
export const AIRLOCK_VERSION = "0.1.0";

// Typed `number` so that code comparing them still reads right once they differ.
export const PROTOCOL_VERSION: number = 2;

/** The oldest executor protocol this coordinator still serves. */
export const MIN_EXECUTOR_PROTOCOL: number = 1;

/** "1", or "1 to 2": the executor protocols a coordinator of this build serves. */
export function servedProtocols(): string {
  return MIN_EXECUTOR_PROTOCOL === PROTOCOL_VERSION ? `${PROTOCOL_VERSION}` : `${MIN_EXECUTOR_PROTOCOL} to ${PROTOCOL_VERSION}`;
}

/**
 * Why a coordinator of this build cannot serve an executor of `executorProtocol`, or undefined
 * when it can. Names both sides' versions and which side to upgrade.
 */
export function protocolMismatch(executor: { executorName: string; version: string; protocolVersion: number }): string | undefined {
  const ours = `this coordinator (Airlock ${AIRLOCK_VERSION}) speaks executor protocol ${servedProtocols()}`;
  const theirs = `executor "${executor.executorName}" (Airlock ${executor.version}) speaks executor protocol ${executor.protocolVersion}`;
  if (executor.protocolVersion > PROTOCOL_VERSION) return `${theirs}, but ${ours}: upgrade the coordinators first, then the executors`;
  if (executor.protocolVersion < MIN_EXECUTOR_PROTOCOL) return `${theirs}, but ${ours}: upgrade this executor`;
  return undefined;
}
