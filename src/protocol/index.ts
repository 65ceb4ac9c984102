/**
 * Airlock's protocol: the zod schemas that are the single source of the wire format, and the
 * types inferred from them. No Node imports here: the web UI bundles this package too.
 *
 * Glossary (these exact words name types, tables, routes and docs):
 * - job: one unit of work on one repository at one commit: a workspace spec plus ordered steps.
 * - step: one command list run in one image, inside the job's sandbox, on the shared workspace.
 * - queue: a named line of jobs; an executor serves one or more queues.
 * - executor: a process that pulls jobs and runs them; it has a name, fresh at each start.
 * - attempt: one try of a job by one executor; it owns a lease kept alive by heartbeats and a
 *   job token valid only for that attempt.
 * - runtime: a way to build sandboxes (shell, bwrap, docker, gvisor, microvm).
 * - isolation: the strength a runtime gives: none < namespace < container < gvisor < vm.
 * - sandbox: what a runtime builds for one job; it runs the steps and is destroyed after.
 * - log entry: the output of one step (or of workspace preparation), appended by byte offset.
 * - artifact: a file a job produces (the `diff`, or a declared output path).
 */
export * from "./batch-template.ts";
export * from "./diff-stat.ts";
export * from "./egress.ts";
export * from "./errors.ts";
export * from "./executor-api.ts";
export * from "./job.ts";
export * from "./job-events.ts";
export * from "./indexing.ts";
export * from "./job-spec.ts";
export * from "./job-secrets.ts";
export * from "./paths.ts";
export * from "./queue-history.ts";
export * from "./spec-input.ts";
export * from "./units.ts";
export * from "./user-api.ts";
export * from "./version.ts";
