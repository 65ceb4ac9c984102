/** Code indexing: inference of indexing jobs from a repository's files, and a SCIP reader. */
export * from "./infer.ts";
export * from "./python.ts";
export * from "./scip.ts";
export * from "./tree.ts";
export * from "./typescript.ts";
